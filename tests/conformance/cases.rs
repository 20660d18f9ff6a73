//! The store contract. Every backend must pass every case here.

use std::time::Duration;

use streamguard::domain::{
    DeviceId, EndReason, HeartbeatDecision, Limit, LimitSource, OnLimit, StartDecision,
    StartRequest, StreamId, UserId,
};

use crate::harness::{Make, policy};
pub use crate::plan_cases::*;
pub use crate::secret_cases::*;

/// A user id unique to this test run, so backends that share a server
/// (Redis, DynamoDB) isolate tests by key.
pub fn user(name: &str) -> UserId {
    use std::sync::atomic::{AtomicU64, Ordering};
    static RUN: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let run = RUN.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    UserId::parse(&format!("{name}-{run:x}-{n}")).unwrap()
}

fn sid(s: &str) -> StreamId {
    StreamId::parse(s).unwrap()
}

fn req(s: &str) -> StartRequest {
    StartRequest::new(sid(s))
}

fn on_device(s: &str, device: &str) -> StartRequest {
    StartRequest {
        device_id: Some(DeviceId::parse(device).unwrap()),
        ..req(s)
    }
}

fn granted(d: StartDecision) -> streamguard::domain::Admission {
    match d {
        StartDecision::Granted(g) => g,
        other => panic!("expected a grant, got {other:?}"),
    }
}

async fn live_ids(h: &crate::harness::Harness, u: &UserId) -> Vec<String> {
    let view = h.store.view(u).await.unwrap();
    view.live.iter().map(|s| s.id.to_string()).collect()
}

pub async fn grants_up_to_the_limit_then_refuses(make: Make) {
    let h = make(policy(3, OnLimit::Reject)).await;
    let u = user("full");
    for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
        let g = granted(h.store.start(&u, req(id)).await.unwrap());
        assert_eq!(g.active, i + 1);
        assert_eq!(g.limit.get(), 3);
    }
    match h.store.start(&u, req("d")).await.unwrap() {
        StartDecision::LimitReached(refusal) => {
            assert_eq!(refusal.first().limit.get(), 3);
            let ids: Vec<_> = refusal
                .first()
                .live
                .iter()
                .map(|s| s.id.to_string())
                .collect();
            assert_eq!(ids, ["a", "b", "c"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(live_ids(&h, &u).await, ["a", "b", "c"]);
}

pub async fn concurrent_starts_grant_exactly_the_limit(make: Make) {
    let h = make(policy(3, OnLimit::Reject)).await;
    let u = user("race");
    let store = h.store.clone();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let (store, u) = (store.clone(), u.clone());
            tokio::spawn(async move { store.start(&u, req(&format!("s{i}"))).await.unwrap() })
        })
        .collect();
    let mut grants = 0;
    for task in tasks {
        match task.await.unwrap() {
            StartDecision::Granted(_) => grants += 1,
            StartDecision::LimitReached { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(grants, 3);
    assert_eq!(live_ids(&h, &u).await.len(), 3);
}

pub async fn concurrent_evictions_keep_the_limit(make: Make) {
    let h = make(policy(2, OnLimit::EvictOldest)).await;
    let u = user("evict-race");
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let (store, u) = (h.store.clone(), u.clone());
            tokio::spawn(async move { store.start(&u, req(&format!("s{i}"))).await.unwrap() })
        })
        .collect();
    let mut evicted = 0;
    for task in tasks {
        evicted += granted(task.await.unwrap()).evicted.len();
    }
    assert_eq!(
        evicted, 98,
        "every grant past the second evicts exactly one"
    );
    assert_eq!(live_ids(&h, &u).await.len(), 2);
}

pub async fn heartbeat_renews_until_the_lease_runs_out(make: Make) {
    let h = make(policy(1, OnLimit::Reject)).await;
    let u = user("beat");
    granted(h.store.start(&u, req("a")).await.unwrap());
    h.advance(Duration::from_secs(80));
    let renewed = match h.store.heartbeat(&u, &sid("a")).await.unwrap() {
        HeartbeatDecision::Renewed(lease) => lease,
        other => panic!("{other:?}"),
    };
    h.advance(Duration::from_secs(80));
    assert!(matches!(
        h.store.heartbeat(&u, &sid("a")).await.unwrap(),
        HeartbeatDecision::Renewed(l) if l.expires_at > renewed.expires_at
    ));
    h.advance(Duration::from_secs(90));
    assert_eq!(
        h.store.heartbeat(&u, &sid("a")).await.unwrap(),
        HeartbeatDecision::Ended(EndReason::Expired)
    );
    assert!(
        live_ids(&h, &u).await.is_empty(),
        "an expired lease holds no slot"
    );
    granted(h.store.start(&u, req("b")).await.unwrap());
}

pub async fn evict_oldest_ends_the_oldest(make: Make) {
    let h = make(policy(2, OnLimit::EvictOldest)).await;
    let u = user("evict");
    granted(h.store.start(&u, req("a")).await.unwrap());
    h.advance(Duration::from_millis(1));
    granted(h.store.start(&u, req("b")).await.unwrap());
    let g = granted(h.store.start(&u, req("c")).await.unwrap());
    assert_eq!(g.evicted, [sid("a")]);
    assert_eq!(g.active, 2);
    assert_eq!(
        h.store.heartbeat(&u, &sid("a")).await.unwrap(),
        HeartbeatDecision::Ended(EndReason::Evicted)
    );
    assert_eq!(live_ids(&h, &u).await, ["b", "c"]);
}

pub async fn a_device_replaces_its_own_stream(make: Make) {
    let h = make(policy(2, OnLimit::Reject)).await;
    let u = user("device");
    granted(h.store.start(&u, on_device("ep1", "tv")).await.unwrap());
    granted(
        h.store
            .start(&u, on_device("other", "phone"))
            .await
            .unwrap(),
    );
    let g = granted(h.store.start(&u, on_device("ep2", "tv")).await.unwrap());
    assert_eq!(g.replaced, [sid("ep1")]);
    assert!(g.evicted.is_empty());
    assert_eq!(g.active, 2);
    assert_eq!(
        h.store.heartbeat(&u, &sid("ep1")).await.unwrap(),
        HeartbeatDecision::Ended(EndReason::Replaced)
    );
}

pub async fn terminate_ends_named_streams_in_the_same_step(make: Make) {
    let h = make(policy(2, OnLimit::Reject)).await;
    let u = user("terminate");
    granted(h.store.start(&u, req("tv")).await.unwrap());
    granted(h.store.start(&u, req("tablet")).await.unwrap());
    let start = StartRequest {
        terminate: vec![sid("tv"), sid("unknown")],
        ..req("phone")
    };
    let g = granted(h.store.start(&u, start).await.unwrap());
    assert_eq!(g.evicted, [sid("tv")]);
    assert_eq!(live_ids(&h, &u).await, ["tablet", "phone"]);
    assert_eq!(
        h.store.heartbeat(&u, &sid("tv")).await.unwrap(),
        HeartbeatDecision::Ended(EndReason::Evicted)
    );
}

pub async fn a_retry_of_a_live_stream_changes_nothing(make: Make) {
    let h = make(policy(2, OnLimit::Reject)).await;
    let u = user("retry");
    let first = granted(h.store.start(&u, on_device("a", "tv")).await.unwrap());
    granted(h.store.start(&u, req("b")).await.unwrap());
    h.advance(Duration::from_secs(1));
    let retry = StartRequest {
        terminate: vec![sid("b")],
        ..on_device("a", "tv")
    };
    match h.store.start(&u, retry).await.unwrap() {
        StartDecision::AlreadyLive { stream, active, .. } => {
            assert_eq!(stream.started_at, first.stream.started_at);
            assert_eq!(active, 2);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(live_ids(&h, &u).await, ["a", "b"]);
}

pub async fn stopping_twice_is_harmless(make: Make) {
    let h = make(policy(1, OnLimit::Reject)).await;
    let u = user("stop");
    granted(h.store.start(&u, req("a")).await.unwrap());
    assert!(
        h.store
            .end(&u, &sid("a"), EndReason::Stopped)
            .await
            .unwrap()
    );
    assert!(
        !h.store
            .end(&u, &sid("a"), EndReason::Stopped)
            .await
            .unwrap()
    );
    assert!(
        !h.store
            .end(&u, &sid("never"), EndReason::Stopped)
            .await
            .unwrap()
    );
    assert_eq!(
        h.store.heartbeat(&u, &sid("a")).await.unwrap(),
        HeartbeatDecision::Ended(EndReason::Stopped)
    );
    granted(h.store.start(&u, req("b")).await.unwrap());
}

pub async fn an_ended_id_can_start_again(make: Make) {
    let h = make(policy(1, OnLimit::Reject)).await;
    let u = user("restart");
    let first = granted(h.store.start(&u, req("a")).await.unwrap());
    h.store
        .end(&u, &sid("a"), EndReason::Revoked)
        .await
        .unwrap();
    h.advance(Duration::from_secs(1));
    let again = granted(h.store.start(&u, req("a")).await.unwrap());
    assert!(
        again.stream.started_at > first.stream.started_at,
        "a new lease, not the old one"
    );
    assert!(matches!(
        h.store.heartbeat(&u, &sid("a")).await.unwrap(),
        HeartbeatDecision::Renewed(_)
    ));
}

pub async fn accounts_are_isolated(make: Make) {
    let h = make(policy(1, OnLimit::Reject)).await;
    let (alice, bob) = (user("alice"), user("bob"));
    granted(h.store.start(&alice, req("shared-id")).await.unwrap());
    granted(h.store.start(&bob, req("other")).await.unwrap());
    assert_eq!(
        h.store.heartbeat(&bob, &sid("shared-id")).await.unwrap(),
        HeartbeatDecision::Unknown
    );
    assert!(
        !h.store
            .end(&bob, &sid("shared-id"), EndReason::Stopped)
            .await
            .unwrap()
    );
    assert_eq!(live_ids(&h, &alice).await, ["shared-id"]);
    h.store
        .set_limit(&bob, Some(Limit::new(0).unwrap()))
        .await
        .unwrap();
    assert_eq!(h.store.view(&alice).await.unwrap().limit.get(), 1);
}

pub async fn a_limit_override_applies_and_clears(make: Make) {
    let h = make(policy(1, OnLimit::Reject)).await;
    let u = user("override");
    assert!(
        h.store
            .set_limit(&u, Some(Limit::new(2).unwrap()))
            .await
            .unwrap()
            .is_empty()
    );
    let view = h.store.view(&u).await.unwrap();
    assert_eq!((view.limit.get(), view.source), (2, LimitSource::Override));
    granted(h.store.start(&u, req("a")).await.unwrap());
    granted(h.store.start(&u, req("b")).await.unwrap());
    assert!(matches!(
        h.store.start(&u, req("c")).await.unwrap(),
        StartDecision::LimitReached(r) if r.first().limit.get() == 2
    ));
    let revoked = h.store.set_limit(&u, None).await.unwrap();
    assert_eq!(
        revoked,
        [sid("b")],
        "back to 1: the newest goes under reject"
    );
    let view = h.store.view(&u).await.unwrap();
    assert_eq!((view.limit.get(), view.source), (1, LimitSource::Default));
    assert_eq!(
        h.store.heartbeat(&u, &sid("b")).await.unwrap(),
        HeartbeatDecision::Ended(EndReason::Revoked)
    );
}

pub async fn limit_zero_blocks_the_account(make: Make) {
    let h = make(policy(3, OnLimit::EvictOldest)).await;
    let u = user("blocked");
    granted(h.store.start(&u, req("a")).await.unwrap());
    let revoked = h
        .store
        .set_limit(&u, Some(Limit::new(0).unwrap()))
        .await
        .unwrap();
    assert_eq!(revoked, [sid("a")]);
    assert!(matches!(
        h.store.start(&u, req("b")).await.unwrap(),
        StartDecision::LimitReached(r) if r.first().limit.get() == 0 && r.first().live.is_empty()
    ));
}

pub async fn tombstones_outlive_ten_leases_then_go(make: Make) {
    let h = make(policy(3, OnLimit::Reject)).await;
    let u = user("tombstone");
    granted(h.store.start(&u, req("a")).await.unwrap());
    h.store
        .end(&u, &sid("a"), EndReason::Stopped)
        .await
        .unwrap();
    h.advance(Duration::from_secs(899));
    assert_eq!(
        h.store.heartbeat(&u, &sid("a")).await.unwrap(),
        HeartbeatDecision::Ended(EndReason::Stopped)
    );
    h.advance(Duration::from_secs(1));
    assert_eq!(
        h.store.heartbeat(&u, &sid("a")).await.unwrap(),
        HeartbeatDecision::Unknown
    );
}

pub async fn an_unknown_account_reads_as_empty(make: Make) {
    let h = make(policy(3, OnLimit::Reject)).await;
    let u = user("nobody");
    let view = h.store.view(&u).await.unwrap();
    assert!(view.live.is_empty());
    assert_eq!((view.limit.get(), view.source), (3, LimitSource::Default));
    h.store.ping().await.unwrap();
}

pub async fn a_plan_limit_sits_between_override_and_default(make: Make) {
    let h = make(policy(1, OnLimit::Reject)).await;
    let u = user("plan");
    let with_plan = |id: &str, n: u32| StartRequest {
        limit_claim: Some(Limit::new(n).unwrap()),
        ..req(id)
    };
    granted(h.store.start(&u, with_plan("a", 2)).await.unwrap());
    let view = h.store.view(&u).await.unwrap();
    assert_eq!((view.limit.get(), view.source), (2, LimitSource::Claim));
    // A start without a claim (header mode) keeps the recorded plan.
    granted(h.store.start(&u, req("b")).await.unwrap());
    assert!(matches!(
        h.store.start(&u, with_plan("c", 2)).await.unwrap(),
        StartDecision::LimitReached(r) if r.first().limit.get() == 2
    ));
    // The override wins over the claim, both ways.
    h.store
        .set_limit(&u, Some(Limit::new(3).unwrap()))
        .await
        .unwrap();
    granted(h.store.start(&u, with_plan("c", 2)).await.unwrap());
    let view = h.store.view(&u).await.unwrap();
    assert_eq!((view.limit.get(), view.source), (3, LimitSource::Override));
    // Cleared, the plan is back in force: its excess is revoked at once,
    // and a heartbeat never renews past it.
    let revoked = h.store.set_limit(&u, None).await.unwrap();
    assert_eq!(revoked, [sid("c")]);
    assert_eq!(
        h.store.heartbeat(&u, &sid("c")).await.unwrap(),
        HeartbeatDecision::Ended(EndReason::Revoked)
    );
    assert!(matches!(
        h.store.heartbeat(&u, &sid("a")).await.unwrap(),
        HeartbeatDecision::Renewed(_)
    ));
    // A downgraded plan holds from the next start on.
    assert!(matches!(
        h.store.start(&u, with_plan("d", 1)).await.unwrap(),
        StartDecision::LimitReached(r) if r.first().limit.get() == 1
    ));
    assert_eq!(h.store.view(&u).await.unwrap().live.len(), 1);
}

pub async fn a_live_stream_id_belongs_to_its_device(make: Make) {
    let h = make(policy(3, OnLimit::Reject)).await;
    let u = user("owner");
    let first = granted(h.store.start(&u, on_device("s", "tv")).await.unwrap());
    for other in [on_device("s", "phone"), req("s")] {
        assert_eq!(
            h.store.start(&u, other).await.unwrap(),
            StartDecision::StreamIdConflict
        );
    }
    let view = h.store.view(&u).await.unwrap();
    assert_eq!(view.live, [first.stream], "nothing changed");
    assert!(matches!(
        h.store.start(&u, on_device("s", "tv")).await.unwrap(),
        StartDecision::AlreadyLive { .. }
    ));
}

/// 100 concurrent starts on one account of limit 3, each bounded by the
/// default `--store-timeout` (250 ms) as the HTTP layer bounds it: every
/// one gets an answer (201 or 409), none a 503.
pub async fn a_hot_account_gets_answers_within_the_store_timeout(make: Make) {
    let _alone = crate::harness::heavy_or_timed().await;
    let h = make(policy(3, OnLimit::Reject)).await;
    let u = user("hot");
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let (store, u) = (h.store.clone(), u.clone());
            tokio::spawn(async move {
                let start = store.start(&u, req(&format!("s{i}")));
                tokio::time::timeout(Duration::from_millis(250), start).await
            })
        })
        .collect();
    let (mut granted, mut refused, mut timed_out) = (0, 0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(Ok(StartDecision::Granted(_))) => granted += 1,
            Ok(Ok(StartDecision::LimitReached { .. })) => refused += 1,
            Ok(other) => panic!("{other:?}"),
            Err(_) => timed_out += 1,
        }
    }
    assert_eq!((granted, refused, timed_out), (3, 97, 0));
}

/// A stream id of 128 characters (the longest allowed), distinct per `n`.
fn long_id(n: usize) -> StreamId {
    sid(&format!("{n:0>128}"))
}

/// Runs `f` on 0..n, `width` at a time.
async fn in_parallel<F, Fut, T>(n: usize, width: usize, f: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let mut out = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(width) {
        let tasks: Vec<_> = chunk.iter().map(|&i| tokio::spawn(f(i))).collect();
        for task in tasks {
            out.push(task.await.unwrap());
        }
    }
    out
}

/// The large end of the range: limit 1000, 1000 live streams with
/// 128-character ids. Start, heartbeat, list, evict, and (for stores that
/// other instances share) the same account from a new instance.
pub async fn a_large_account_with_long_ids_works_at_the_limit(make: Make) {
    const N: usize = 1000;
    let _alone = crate::harness::heavy_or_timed().await;
    let started = std::time::Instant::now();
    let h = make(policy(N as u32, OnLimit::EvictOldest)).await;
    let u = user("large");
    // 40 at a time: stores that group what queues on one account get to,
    // and no start waits behind hundreds of others (a start on a Redis
    // account of 1000 streams costs Redis about a millisecond, several on
    // a busy machine, and redis-rs gives an answer 2 s).
    let grants = in_parallel(N, 40, |i| {
        let (store, u) = (h.store.clone(), u.clone());
        async move {
            granted(
                store
                    .start(&u, StartRequest::new(long_id(i)))
                    .await
                    .unwrap(),
            )
        }
    })
    .await;
    assert!(
        grants
            .iter()
            .all(|g| g.evicted.is_empty() && g.limit.get() == 1000)
    );
    assert_eq!(grants.iter().map(|g| g.active).max(), Some(N));

    // Heartbeats of every tenth stream (a heartbeat's cost does not depend
    // on the account; all 1000 would only cost the emulator's time).
    h.advance(Duration::from_secs(30));
    let renewed = in_parallel(N / 10, 32, |i| {
        let (store, u) = (h.store.clone(), u.clone());
        async move { store.heartbeat(&u, &long_id(i * 10)).await.unwrap() }
    })
    .await;
    for (i, decision) in renewed.iter().enumerate() {
        let HeartbeatDecision::Renewed(lease) = decision else {
            panic!("stream {} not renewed: {decision:?}", i * 10)
        };
        assert_eq!(lease.id, long_id(i * 10));
        assert_eq!(
            lease.expires_at,
            grants[i * 10].stream.expires_at + Duration::from_secs(30)
        );
    }
    let view = h.store.view(&u).await.unwrap();
    assert_eq!(view.live.len(), N);
    let oldest = view.live[0].id.clone();
    assert!(
        view.live
            .windows(2)
            .all(|w| (w[0].started_at, w[0].seq) < (w[1].started_at, w[1].seq)),
        "listed oldest first"
    );

    let newcomer = sid(&format!("{:z>128}", "new"));
    let grant = granted(
        h.store
            .start(&u, StartRequest::new(newcomer.clone()))
            .await
            .unwrap(),
    );
    assert_eq!((grant.evicted, grant.active), (vec![oldest.clone()], N));
    assert_eq!(
        h.store.heartbeat(&u, &oldest).await.unwrap(),
        HeartbeatDecision::Ended(EndReason::Evicted)
    );

    if let Some(reopen) = &h.reopen {
        let again = reopen().await;
        let view = again.view(&u).await.unwrap();
        assert_eq!(view.live.len(), N);
        assert_eq!(view.live.last().unwrap().id, newcomer);
        assert!(matches!(
            again.heartbeat(&u, &long_id(N - 1)).await.unwrap(),
            HeartbeatDecision::Renewed(_)
        ));
    }
    println!("large account case: {:?}", started.elapsed());
}
