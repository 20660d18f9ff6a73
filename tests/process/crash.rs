//! Every state change of the `file:` store survives `kill -9` with the
//! reason a heartbeat reports, and a lease that ran out before the crash
//! stays ended after the restart.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::server::Server;
use crate::{ADMIN, client, live, serve};

fn kill_9(mut server: Server) {
    server.child.kill().unwrap(); // SIGKILL: no flush, no goodbye
    server.child.wait().unwrap();
}

async fn start(s: &Server, user: &str, body: Value) -> Value {
    let reply = client()
        .post(s.url("/streams"))
        .header("x-id", user)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 201, "start {body} for {user}");
    reply.json().await.unwrap()
}

/// The status of a heartbeat and, on 410, the reason.
async fn heartbeat(s: &Server, user: &str, id: &str) -> (u16, Option<String>) {
    let reply = client()
        .post(s.url(&format!("/streams/{id}/heartbeat")))
        .header("x-id", user)
        .send()
        .await
        .unwrap();
    let status = reply.status().as_u16();
    let body: Value = reply.json().await.unwrap();
    (status, body["reason"].as_str().map(str::to_owned))
}

fn ended(reason: &str) -> (u16, Option<String>) {
    (410, Some(reason.to_owned()))
}

#[tokio::test]
async fn evictions_terminations_replacements_and_revocations_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(
        dir.path(),
        &["--default-limit", "2", "--on-limit", "evict-oldest"],
        &[],
    );

    // Eviction: the third start on a limit of 2 ends the oldest.
    start(&server, "evict", json!({"stream_id": "a"})).await;
    start(&server, "evict", json!({"stream_id": "b"})).await;
    let third = start(&server, "evict", json!({"stream_id": "c"})).await;
    assert_eq!(third["evicted"], json!(["a"]));
    // Terminate: "watch here, stop the TV".
    start(&server, "term", json!({"stream_id": "tv"})).await;
    let phone = start(
        &server,
        "term",
        json!({"stream_id": "phone", "terminate": ["tv"]}),
    )
    .await;
    assert_eq!(phone["evicted"], json!(["tv"]));
    // Replacement: the next episode on the same device.
    start(
        &server,
        "dev",
        json!({"stream_id": "ep1", "device_id": "tv"}),
    )
    .await;
    let next = start(
        &server,
        "dev",
        json!({"stream_id": "ep2", "device_id": "tv"}),
    )
    .await;
    assert_eq!(next["replaced"], json!(["ep1"]));
    // Revocation by an administrator.
    start(&server, "rev", json!({"stream_id": "x"})).await;
    start(&server, "rev", json!({"stream_id": "y"})).await;
    let revoke = client()
        .delete(server.url("/admin/users/rev/streams/x"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), 204);

    kill_9(server);
    let server = serve(
        dir.path(),
        &["--default-limit", "2", "--on-limit", "evict-oldest"],
        &[],
    );

    assert_eq!(heartbeat(&server, "evict", "a").await, ended("evicted"));
    assert_eq!(heartbeat(&server, "term", "tv").await, ended("evicted"));
    assert_eq!(heartbeat(&server, "dev", "ep1").await, ended("replaced"));
    assert_eq!(heartbeat(&server, "rev", "x").await, ended("revoked"));
    assert_eq!(live(&server, "evict").await, ["b", "c"]);
    assert_eq!(live(&server, "term").await, ["phone"]);
    assert_eq!(live(&server, "dev").await, ["ep2"]);
    assert_eq!(live(&server, "rev").await, ["y"]);
    for (user, id) in [
        ("evict", "c"),
        ("term", "phone"),
        ("dev", "ep2"),
        ("rev", "y"),
    ] {
        assert_eq!(heartbeat(&server, user, id).await.0, 200, "{user}/{id}");
    }
}

/// The known gap, closed: heartbeats are written behind, so the restore
/// knows which leases had run out before the crash.
///
/// The subject is real expiry across a real crash, so this test waits in
/// real time, polling with a deadline. Two things besides the restore
/// write an expiry to disk and would hide the gap: any later decision on
/// the same account (so the two streams belong to two accounts, and the
/// forgotten one is only ever read), and the sweeper, which runs every
/// lease from the start. With a 6 s lease the sweeps fall at 6 s and 12 s;
/// the forgotten lease starts at 1.5 s, runs out at 7.5 s, is past the
/// synced time by 9.5 s at the latest (the 2 s write-behind bound), and the
/// crash comes 3 s after it was seen to run out: between 10.5 s and 11 s,
/// before the second sweep.
#[tokio::test]
async fn a_lease_that_ran_out_before_kill_9_stays_expired() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &["--lease-ttl", "6s"], &[]);
    let began = Instant::now();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    start(&server, "forgetful", json!({"stream_id": "forgotten"})).await;
    start(&server, "keen", json!({"stream_id": "watched"})).await;

    // Keep `watched` alive by heartbeats, well inside its lease, until
    // `forgotten` has run out, then for 3 s more, so that the disk knows.
    let mut ran_out_at = None;
    loop {
        assert_eq!(heartbeat(&server, "keen", "watched").await.0, 200);
        let now = Instant::now();
        match ran_out_at {
            None if live(&server, "forgetful").await.is_empty() => ran_out_at = Some(now),
            Some(at) if now - at > Duration::from_millis(3_000) => break,
            _ => {}
        }
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "the lease never ran out"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // `watched`'s deadline on disk is now a renewal's: its grant's deadline
    // (7.5 s) is past the synced time.

    kill_9(server);
    let server = serve(dir.path(), &["--lease-ttl", "6s"], &[]);
    assert_eq!(
        heartbeat(&server, "forgetful", "forgotten").await,
        ended("expired"),
        "a lease that ran out before the crash must not come back"
    );
    assert_eq!(
        heartbeat(&server, "keen", "watched").await.0,
        200,
        "a lease renewed until the crash comes back"
    );
    assert_eq!(live(&server, "keen").await, ["watched"]);
}

/// Renewals go to an append-only log that the writer prunes behind the
/// sweeper (DESIGN.md, "file:"). With a 3 s lease (the shortest) the
/// sweeps fall every 3 s: `left`, heartbeated for its first second only,
/// runs out at about 4 s and is buried by the sweep at 6 s, which lets its
/// log entries go; `watched`, heartbeated throughout, has its older
/// entries pruned too. A `kill -9` after 12 s must bring `watched` back
/// live and keep `left` ended, with none of `left`'s entries in the log.
#[tokio::test]
async fn a_pruned_renewal_log_restores_what_lives_and_what_ran_out() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &["--lease-ttl", "3s"], &[]);
    start(&server, "keen", json!({"stream_id": "watched"})).await;
    start(&server, "quitter", json!({"stream_id": "left"})).await;
    let began = Instant::now();
    while began.elapsed() < Duration::from_secs(12) {
        assert_eq!(heartbeat(&server, "keen", "watched").await.0, 200);
        if began.elapsed() < Duration::from_secs(1) {
            assert_eq!(heartbeat(&server, "quitter", "left").await.0, 200);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(live(&server, "quitter").await.is_empty());
    kill_9(server);

    let db = rusqlite::Connection::open(dir.path().join("streamguard.sqlite3")).unwrap();
    let logged = |stream: &str| -> i64 {
        db.query_row(
            "SELECT count(*) FROM renewal_log WHERE stream_id = ?1",
            [stream],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert_eq!(logged("left"), 0, "a buried lease's renewals are pruned");
    assert!(logged("watched") > 0, "a live lease's latest renewals stay");
    drop(db);

    let server = serve(dir.path(), &["--lease-ttl", "3s"], &[]);
    assert_eq!(heartbeat(&server, "keen", "watched").await.0, 200);
    assert_eq!(
        heartbeat(&server, "quitter", "left").await,
        ended("expired")
    );
}
