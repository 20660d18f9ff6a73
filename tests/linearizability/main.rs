//! Linearizability of concurrent histories, on every backend: concurrent
//! clients run random starts (plain, on a device — replacing what it plays —
//! and with `terminate` lists), heartbeats, stops, admin revokes, limit
//! changes and listings on a few accounts; every operation's invocation and
//! answer are timed, and each account's history must be explainable by some
//! order of the operations, each taking effect between its call and its
//! answer, under the pure rules (`streamguard::domain::Account`).
//!
//! Shared stores (Redis, Redis Cluster, DynamoDB) are driven through two
//! store instances; clients alternate between them. `STREAMGUARD_LIN_ROUNDS`
//! sets the number of rounds for longer runs (`scripts/linearizability`),
//! `STREAMGUARD_LIN_SEED` replays a run's inputs.

mod backends;
mod checker;
#[cfg(feature = "dynamodb")]
#[path = "../common/dynamodb.rs"]
mod emulator;
mod history;
mod nonatomic;
#[allow(dead_code)]
#[path = "../common/walk.rs"]
mod walk;
mod workload;

use std::sync::Arc;

use streamguard::domain::OnLimit;

use workload::{Backend, Stats, Time, Workload};

async fn assert_linearizable(backend: Backend, rounds: usize) -> Stats {
    check_with(backend, Workload::new(rounds)).await
}

async fn check_with(backend: Backend, w: Workload) -> Stats {
    match workload::check(&backend, w).await {
        Ok(stats) => {
            eprintln!(
                "{} ({} instance(s), seed {}): {} rounds, {} histories, {} operations \
                 ({} failed) {:?}; largest search {} configurations, at most {} possible \
                 states between rounds; {:.1?}",
                backend.name,
                backend.stores.len(),
                w.seed,
                stats.rounds,
                stats.histories,
                stats.ops,
                stats.failed_ops,
                stats.by_kind,
                stats.max_explored,
                stats.max_frontier,
                stats.elapsed
            );
            assert_eq!(stats.failed_ops, 0, "the store failed during the test");
            stats
        }
        Err(report) => panic!("seed {}\n{report}", w.seed),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_reject() {
    assert_linearizable(backends::memory(OnLimit::Reject).await, 300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_evict_oldest() {
    assert_linearizable(backends::memory(OnLimit::EvictOldest).await, 300).await;
}

#[cfg(feature = "file")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn file_evict_oldest() {
    assert_linearizable(backends::file(OnLimit::EvictOldest).await, 100).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_two_instances() {
    let b = backends::redis(
        "redis",
        "STREAMGUARD_TEST_REDIS_URL",
        OnLimit::Reject,
        false,
    )
    .await;
    assert_linearizable(b, 150).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cluster_two_instances_server_clock() {
    let b = backends::redis(
        "redis cluster (server clock)",
        "STREAMGUARD_TEST_REDIS_CLUSTER_URL",
        OnLimit::EvictOldest,
        true,
    )
    .await;
    assert_linearizable(b, 150).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cluster_two_instances() {
    let b = backends::redis(
        "redis cluster",
        "STREAMGUARD_TEST_REDIS_CLUSTER_URL",
        OnLimit::Reject,
        false,
    )
    .await;
    assert_linearizable(b, 100).await;
}

#[cfg(feature = "dynamodb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_two_instances() {
    // The emulator serves ~150 requests/s: few rounds unless asked for more.
    //
    // This checker found that the DynamoDB store lost the plan a refused
    // start (or an idempotent retry) records, because it wrote only grants
    // (seed 1795885959269131541: after `clear limit` the store applied a
    // stale plan of 0 and revoked the live stream where the rules apply the
    // recorded plan of 3). Fixed; the case below keeps it fixed.
    check_with(
        backends::dynamodb(OnLimit::EvictOldest).await,
        Workload::new(50),
    )
    .await;
}

/// The bug the checker found, on its own: a refused start records the
/// caller's plan (the rules say so, and every store must keep it).
#[cfg(feature = "dynamodb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_keeps_the_plan_of_a_refused_start() {
    use streamguard::domain::{Limit, StartDecision, StartRequest, StreamId};
    let b = backends::dynamodb(OnLimit::Reject).await;
    let (store, user) = (&b.stores[0], &b.users[0]);
    let sid = |s: &str| StreamId::parse(s).unwrap();
    store
        .set_limit(user, Some(Limit::new(1).unwrap()))
        .await
        .unwrap();
    assert!(matches!(
        store
            .start(user, StartRequest::new(sid("a")))
            .await
            .unwrap(),
        StartDecision::Granted(_)
    ));
    let claim = StartRequest {
        limit_claim: Some(Limit::new(0).unwrap()),
        ..StartRequest::new(sid("b"))
    };
    assert!(matches!(
        store.start(user, claim).await.unwrap(),
        StartDecision::LimitReached { .. }
    ));
    assert_eq!(
        store.set_limit(user, None).await.unwrap(),
        vec![sid("a")],
        "with the override gone, the recorded plan of 0 applies"
    );
}

/// The checker is worth something only if it fails on a store that is not
/// atomic: a read, a yield, a write.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_non_atomic_store_is_caught() {
    let clock = backends::start_clock();
    let policy = backends::policy(2, OnLimit::Reject, std::time::Duration::from_secs(90));
    let store = nonatomic::ReadYieldWrite::new(policy.clone(), Arc::new(clock.clone()));
    let backend = Backend {
        name: "read-yield-write (planted bug)",
        stores: vec![Arc::new(store)],
        time: Time::Manual(clock),
        policy,
        users: backends::users(3),
        plan_edits: true,
        _keep: Box::new(()),
    };
    let w = Workload::new(300);
    let report = workload::check(&backend, w)
        .await
        .expect_err("the checker must find the lost updates of a non-atomic store");
    eprintln!("{report}");
    assert!(report.contains("is not linearizable"), "{report}");
    // "(N of M operations, K with their answers; …": K answers make the case.
    let shown: usize = report
        .split(" operations, ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("the report says how many answers it kept");
    // One answer can be enough: the state before the round is part of the
    // counterexample (a lost update in an earlier round that its answers
    // happened not to show).
    assert!(
        (1..=8).contains(&shown),
        "a minimised counterexample rests on a handful of answers, got {shown}:\n{report}"
    );
}
