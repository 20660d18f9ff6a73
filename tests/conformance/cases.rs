//! The store contract. Every backend must pass every case here.

use std::time::Duration;

use streamguard::domain::{
    DeviceId, EndReason, HeartbeatDecision, Limit, LimitSource, OnLimit, StartDecision,
    StartRequest, StreamId, UserId,
};

use crate::harness::{Make, policy};

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

fn granted(d: StartDecision) -> streamguard::domain::Grant {
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
        StartDecision::LimitReached { limit, live } => {
            assert_eq!(limit.get(), 3);
            let ids: Vec<_> = live.iter().map(|s| s.id.to_string()).collect();
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
        StartDecision::LimitReached { limit, .. } if limit.get() == 2
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
        StartDecision::LimitReached { limit, live } if limit.get() == 0 && live.is_empty()
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
        plan: Some(Limit::new(n).unwrap()),
        ..req(id)
    };
    granted(h.store.start(&u, with_plan("a", 2)).await.unwrap());
    let view = h.store.view(&u).await.unwrap();
    assert_eq!((view.limit.get(), view.source), (2, LimitSource::Claim));
    // A start without a claim (header mode) keeps the recorded plan.
    granted(h.store.start(&u, req("b")).await.unwrap());
    assert!(matches!(
        h.store.start(&u, with_plan("c", 2)).await.unwrap(),
        StartDecision::LimitReached { limit, .. } if limit.get() == 2
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
        StartDecision::LimitReached { limit, .. } if limit.get() == 1
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
