//! The scripts' KEYS/ARGV layout, called the way the EVALSHA fallback calls
//! them, and what they leave in Redis: one hash per account, one field per
//! lease and tombstone, with the right expiry; and accounts written in the
//! old JSON string layout still read and are converted.

use std::time::Instant;

use redis::{Commands, Script};
use serde_json::Value;

use crate::support::{shared_url, unique_prefix};

const SOURCE: &str = include_str!("../../src/store/redis/streamguard.lua");

/// What the store sends with EVALSHA for one operation.
fn script(op: &str) -> Script {
    Script::new(&format!("{SOURCE}\nreturn {op}(KEYS, ARGV)\n"))
}

const T0: i64 = 1_800_000_000_000;

/// ARGV[1..3]: now; the policy (default limit, lease ttl ms, on-limit,
/// tombstone ttl ms, max tombstones); no plans.
fn common(now: i64) -> Vec<String> {
    [
        now.to_string(),
        "2|90000|reject|900000|100".into(),
        String::new(),
    ]
    .to_vec()
}

/// The expires_at of a renewal's lease, answered as stored: its first field.
fn renewed_until(beat: &Value) -> i64 {
    let lease = beat["lease"].as_str().expect("a renewed lease");
    lease.split('|').next().unwrap().parse().unwrap()
}

fn call(con: &mut redis::Connection, op: &str, key: &str, now: i64, args: &[&str]) -> Value {
    let script = script(op);
    let mut inv = script.key(key);
    for a in common(now) {
        inv.arg(a);
    }
    for a in args {
        inv.arg(*a);
    }
    let raw: String = inv.invoke(con).unwrap();
    serde_json::from_str(&raw).unwrap()
}

fn connection() -> redis::Connection {
    redis::Client::open(shared_url())
        .unwrap()
        .get_connection()
        .unwrap()
}

/// Asserts the key's PTTL is `expected` ms minus at most the time since
/// `set_at` (when the script that set it ran): no fixed window to miss.
fn assert_pttl(con: &mut redis::Connection, key: &str, expected: i64, set_at: Instant) {
    let pttl: i64 = con.pttl(key).unwrap();
    let elapsed = i64::try_from(set_at.elapsed().as_millis()).unwrap();
    assert!(
        (expected - elapsed - 1..=expected).contains(&pttl),
        "pttl {pttl}, expected {expected} less at most {elapsed} ms"
    );
}

#[test]
fn start_takes_id_device_content_then_terminate_list() {
    let mut con = connection();
    let key = format!("{}:{{alice}}", unique_prefix("layout"));
    let granted = call(&mut con, "start", &key, T0, &["tv", "tv-device", "movie"]);
    assert_eq!(granted["outcome"], "granted");
    assert_eq!(granted["stream"]["device_id"], "tv-device");
    assert_eq!(granted["stream"]["content_id"], "movie");
    assert_eq!(granted["stream"]["expires_at"], T0 + 90_000);

    let set_at = Instant::now();
    let phone = call(
        &mut con,
        "start",
        &key,
        T0 + 1,
        &["phone", "", "", "", "", "", "", "tv"],
    );
    assert_eq!(phone["outcome"], "granted");
    assert_eq!(phone["evicted"], serde_json::json!(["tv"]));
    assert!(
        phone["stream"].get("device_id").is_none(),
        "'' means no device"
    );

    let kind: String = redis::cmd("TYPE").arg(&key).query(&mut con).unwrap();
    assert_eq!(kind, "hash");
    let fields: std::collections::HashMap<String, String> = con.hgetall(&key).unwrap();
    assert_eq!(fields["l:phone"], format!("{}|{}|1||", T0 + 90_001, T0 + 1));
    assert_eq!(fields["t:tv"], format!("0|evicted|{}", T0 + 1));
    assert!(!fields.contains_key("l:tv"));
    assert_eq!(
        (&fields["n"], &fields["tn"], &fields["q"], &fields["to"]),
        (
            &"1".to_owned(),
            &"1".to_owned(),
            &"2".to_owned(),
            &"1".to_owned()
        )
    );
    assert_eq!(fields["x"], (T0 + 90_001).to_string());
    assert_eq!(fields["tx"], (T0 + 1).to_string());
    // Heartbeats before phone's lease end (T0 + 90.001 s) may renew it up
    // to T0 + 180.001 s without touching the expiry; plus 900 s of
    // retention, from now (T0 + 1).
    assert_pttl(&mut con, &key, 1_080_000, set_at);
}

#[test]
fn a_heartbeat_rewrites_only_its_own_lease_while_nothing_is_due() {
    let mut con = connection();
    let key = format!("{}:{{dave}}", unique_prefix("layout"));
    let set_at = Instant::now();
    call(&mut con, "start", &key, T0, &["a", "", ""]);
    call(&mut con, "start", &key, T0 + 10, &["b", "", ""]);
    let before: std::collections::HashMap<String, String> = con.hgetall(&key).unwrap();
    let beat = call(&mut con, "heartbeat", &key, T0 + 30_000, &["b"]);
    assert_eq!(beat["outcome"], "renewed");
    // The lease as stored, only its expires_at (the first field) new.
    assert_eq!(beat["lease"], format!("{}|{}|1||", T0 + 120_000, T0 + 10));
    let after: std::collections::HashMap<String, String> = con.hgetall(&key).unwrap();
    let changed: Vec<&String> = after
        .keys()
        .filter(|f| before.get(*f) != after.get(*f))
        .collect();
    assert_eq!(changed, vec!["l:b"], "{before:?} -> {after:?}");
    assert_eq!(after["x"], (T0 + 90_000).to_string(), "a lower bound stays");
    // As set by a's start at T0: x (a's end) + 90 s + 900 s; neither b's
    // start (its retention ends earlier) nor the heartbeat touched it.
    assert_pttl(&mut con, &key, 1_080_000, set_at);

    // Past a's end the heartbeat does the expiry work: a becomes a tombstone.
    let late = call(&mut con, "heartbeat", &key, T0 + 100_000, &["b"]);
    assert_eq!(
        (late["outcome"].as_str(), late["expired"].as_i64()),
        (Some("renewed"), Some(1))
    );
    let settled: std::collections::HashMap<String, String> = con.hgetall(&key).unwrap();
    assert_eq!(settled["t:a"], format!("0|expired|{}", T0 + 90_000));
    assert_eq!(settled["n"], "1");
    assert_eq!(settled["x"], (T0 + 190_000).to_string());
}

#[test]
fn heartbeat_end_view_and_set_limit_layouts() {
    let mut con = connection();
    let key = format!("{}:{{bob}}", unique_prefix("layout"));

    assert_eq!(
        call(&mut con, "heartbeat", &key, T0, &["s"])["outcome"],
        "unknown"
    );
    assert!(
        !con.exists::<_, bool>(&key).unwrap(),
        "reads of unknown accounts write nothing"
    );

    call(&mut con, "start", &key, T0, &["s", "", ""]);
    let beat = call(&mut con, "heartbeat", &key, T0 + 60_000, &["s"]);
    assert_eq!(beat["outcome"], "renewed");
    assert_eq!(renewed_until(&beat), T0 + 150_000);

    let limited = call(&mut con, "set_limit", &key, T0 + 1, &["0"]);
    assert_eq!(limited["revoked"], serde_json::json!(["s"]));
    let pttl: i64 = con.pttl(&key).unwrap();
    assert_eq!(pttl, -1, "an account with a limit override never expires");

    let shown = call(&mut con, "view", &key, T0 + 2, &[]);
    assert_eq!(
        (shown["limit"].as_i64(), shown["source"].as_str()),
        (Some(0), Some("override"))
    );

    let stopped = call(&mut con, "finish", &key, T0 + 3, &["s", "stopped"]);
    assert_eq!(stopped["ended"], false, "already revoked");
    assert_eq!(
        call(&mut con, "heartbeat", &key, T0 + 4, &["s"])["reason"],
        "revoked"
    );
    let pttl: i64 = con.pttl(&key).unwrap();
    assert_eq!(pttl, -1, "a heartbeat leaves an override's key persistent");

    call(&mut con, "set_limit", &key, T0 + 5, &[""]);
    let cleared = call(&mut con, "view", &key, T0 + 6, &[]);
    assert_eq!(
        (cleared["limit"].as_i64(), cleared["source"].as_str()),
        (Some(2), Some("default"))
    );
    assert!(
        con.pttl::<_, i64>(&key).unwrap() > 0,
        "without an override the key expires again"
    );
}

#[test]
fn the_server_clock_is_used_when_no_time_is_given() {
    let mut con = connection();
    let key = format!("{}:{{carol}}", unique_prefix("layout"));
    let (secs, _micros): (i64, i64) = redis::cmd("TIME").query(&mut con).unwrap();
    let script = script("start");
    let mut inv = script.key(&key);
    let mut args = common(0);
    args[0] = String::new();
    for a in args {
        inv.arg(a);
    }
    inv.arg("s").arg("").arg("");
    let raw: String = inv.invoke(&mut con).unwrap();
    let reply: Value = serde_json::from_str(&raw).unwrap();
    let started = reply["stream"]["started_at"].as_i64().unwrap();
    assert!(
        (started - secs * 1000).abs() < 5_000,
        "started_at {started} vs server {secs}s"
    );
}

/// The JSON string the scripts wrote before the hash layout (cjson writes
/// an empty list as `{}`).
fn old_layout() -> String {
    serde_json::json!({
        "live": [
            {"id": "tv", "device_id": "tv-1", "started_at": T0, "expires_at": T0 + 90_000, "seq": 0},
            {"id": "phone", "content_id": "m", "started_at": T0 + 5, "expires_at": T0 + 90_005, "seq": 1}
        ],
        "ended": [{"id": "old", "reason": "stopped", "ended_at": T0 - 10}],
        "plan": 4,
        "next_seq": 2
    })
    .to_string()
}

#[test]
fn an_account_in_the_old_json_layout_is_read_then_converted() {
    let mut con = connection();
    let key = format!("{}:{{erin}}", unique_prefix("migrate"));
    let _: () = con.set(&key, old_layout()).unwrap();

    let shown = call(&mut con, "view", &key, T0 + 1_000, &[]);
    assert_eq!(
        (shown["limit"].as_i64(), shown["source"].as_str()),
        (Some(4), Some("claim"))
    );
    assert_eq!(shown["live"][0]["device_id"], "tv-1");
    assert_eq!(shown["live"][1]["content_id"], "m");
    let kind: String = redis::cmd("TYPE").arg(&key).query(&mut con).unwrap();
    assert_eq!(kind, "string", "a read converts nothing");

    assert_eq!(
        call(&mut con, "heartbeat", &key, T0 + 2_000, &["old"])["reason"],
        "stopped"
    );
    let kind: String = redis::cmd("TYPE").arg(&key).query(&mut con).unwrap();
    assert_eq!(kind, "hash", "the first decision writes the hash layout");
    let beat = call(&mut con, "heartbeat", &key, T0 + 3_000, &["tv"]);
    assert_eq!(renewed_until(&beat), T0 + 93_000);
    let granted = call(&mut con, "start", &key, T0 + 4_000, &["laptop", "", ""]);
    assert_eq!(
        (
            granted["stream"]["seq"].as_i64(),
            granted["active"].as_i64()
        ),
        (Some(2), Some(3)),
        "the grant counter and the leases came over"
    );
}

#[test]
fn an_empty_old_account_with_cjson_empty_tables_converts() {
    let mut con = connection();
    let key = format!("{}:{{frank}}", unique_prefix("migrate"));
    let _: () = con
        .set(&key, r#"{"live":{},"ended":{},"limit":1,"next_seq":7}"#)
        .unwrap();
    let granted = call(&mut con, "start", &key, T0, &["s", "", ""]);
    assert_eq!(
        (granted["outcome"].as_str(), granted["limit"].as_i64()),
        (Some("granted"), Some(1))
    );
    assert_eq!(
        call(&mut con, "start", &key, T0, &["t", "", ""])["outcome"],
        "limit_reached"
    );
}
