//! What only the `file:` store promises: acknowledged state survives a
//! restart, each live stream comes back with a fresh lease.
#![cfg(feature = "file")]

use std::sync::Arc;
use std::time::Duration;

use streamguard::domain::{
    EndReason, HeartbeatDecision, Limit, OnLimit, StartDecision, StartRequest, StreamId,
};
use streamguard::store::{self, StoreUrl};

use crate::cases::user;
use crate::harness::{policy, start_clock};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_store_restores_streams_overrides_and_tombstones() {
    let dir = tempfile::tempdir().unwrap();
    let url = StoreUrl::File(dir.path().to_path_buf());
    let p = policy(2, OnLimit::Reject);
    let clock = start_clock();
    let (u, capped) = (user("durable"), user("capped"));
    let sid = |s: &str| StreamId::parse(s).unwrap();

    let store = store::connect(&url, p.clone(), Arc::new(clock.clone()))
        .await
        .unwrap();
    for id in ["a", "b"] {
        store.start(&u, StartRequest::new(sid(id))).await.unwrap();
    }
    store.end(&u, &sid("a"), EndReason::Stopped).await.unwrap();
    store.start(&u, StartRequest::new(sid("c"))).await.unwrap();
    store
        .set_limit(&capped, Some(Limit::new(7).unwrap()))
        .await
        .unwrap();
    store.close().await.unwrap();
    drop(store);

    clock.advance(Duration::from_secs(600));
    let store = store::connect(&url, p.clone(), Arc::new(clock.clone()))
        .await
        .unwrap();
    let view = store.view(&u).await.unwrap();
    let ids: Vec<_> = view.live.iter().map(|s| s.id.to_string()).collect();
    assert_eq!(
        ids,
        ["b", "c"],
        "live streams come back, long past their old lease"
    );
    assert!(matches!(
        store.start(&u, StartRequest::new(sid("d"))).await.unwrap(),
        StartDecision::LimitReached { .. }
    ));
    assert_eq!(
        store.heartbeat(&u, &sid("a")).await.unwrap(),
        HeartbeatDecision::Ended(EndReason::Stopped)
    );
    assert_eq!(store.view(&capped).await.unwrap().limit.get(), 7);

    clock.advance(Duration::from_secs(90));
    assert!(
        store.view(&u).await.unwrap().live.is_empty(),
        "restored leases still expire"
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_second_process_cannot_open_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let url = StoreUrl::File(dir.path().to_path_buf());
    let p = policy(2, OnLimit::Reject);
    let first = store::connect(&url, p.clone(), Arc::new(start_clock()))
        .await
        .unwrap();
    let second = store::connect(&url, p.clone(), Arc::new(start_clock())).await;
    let message = second.err().expect("the directory is locked").to_string();
    assert!(message.contains("in use"), "{message}");
    first.close().await.unwrap();
}

#[tokio::test]
async fn init_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let url = StoreUrl::File(dir.path().join("new"));
    store::init(&url, store::StoreOptions::default())
        .await
        .unwrap();
    store::init(&url, store::StoreOptions::default())
        .await
        .unwrap();
    assert!(dir.path().join("new").is_dir());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_that_ran_out_before_shutdown_stays_ended_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = StoreUrl::File(dir.path().to_path_buf());
    let p = policy(1, OnLimit::Reject);
    let clock = start_clock();
    let u = user("ran-out");
    let sid = StreamId::parse("gone").unwrap();

    let store = store::connect(&url, p.clone(), Arc::new(clock.clone()))
        .await
        .unwrap();
    store
        .start(&u, StartRequest::new(sid.clone()))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(91));
    store.close().await.unwrap();
    drop(store);

    let store = store::connect(&url, p.clone(), Arc::new(clock.clone()))
        .await
        .unwrap();
    assert_eq!(
        store.heartbeat(&u, &sid).await.unwrap(),
        HeartbeatDecision::Ended(EndReason::Expired),
        "the shutdown recorded the expiry; the restart does not revive it"
    );
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_a_lower_default_limit_revokes_the_excess() {
    let dir = tempfile::tempdir().unwrap();
    let url = StoreUrl::File(dir.path().to_path_buf());
    let clock = start_clock();
    let u = user("downgraded");
    let sid = |s: &str| StreamId::parse(s).unwrap();

    let store = store::connect(
        &url,
        policy(3, OnLimit::EvictOldest),
        Arc::new(clock.clone()),
    )
    .await
    .unwrap();
    for id in ["a", "b", "c"] {
        store.start(&u, StartRequest::new(sid(id))).await.unwrap();
        clock.advance(Duration::from_millis(1));
    }
    store.close().await.unwrap();
    drop(store);

    let store = store::connect(
        &url,
        policy(2, OnLimit::EvictOldest),
        Arc::new(clock.clone()),
    )
    .await
    .unwrap();
    let ids: Vec<_> = store
        .view(&u)
        .await
        .unwrap()
        .live
        .iter()
        .map(|s| s.id.to_string())
        .collect();
    assert_eq!(ids, ["b", "c"], "the oldest gives way under evict-oldest");
    assert_eq!(
        store.heartbeat(&u, &sid("a")).await.unwrap(),
        HeartbeatDecision::Ended(EndReason::Revoked)
    );
    store.close().await.unwrap();
}
