//! Several streamguard instances on one Redis: one exact limit, whatever
//! their own clocks say.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use streamguard::domain::{
    HeartbeatDecision, Limit, ManualClock, OnLimit, Policy, StartDecision, StartRequest, StreamId,
    Timestamp, UserId,
};
use streamguard::store::{self, StoreUrl};

use crate::support::{shared_url, unique_prefix};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_grant_exactly_the_limit() {
    let store = format!("{}?prefix={}", shared_url(), unique_prefix("two-processes"));
    // The subject is the race, not the timeout: a generous one, so a busy
    // machine cannot turn a decision into a 503.
    let args = [
        "--store",
        store.as_str(),
        "--default-limit",
        "3",
        "--store-timeout",
        "10s",
    ];
    let servers = [
        crate::server::Server::start(&args, &[]),
        crate::server::Server::start(&args, &[]),
    ];
    let http = reqwest::Client::new();

    let starts: Vec<_> = (0..100)
        .map(|i| {
            let url = servers[i % 2].url("/streams");
            let http = http.clone();
            tokio::spawn(async move {
                let reply = http
                    .post(url)
                    .header("x-id", "shared-family")
                    .json(&json!({ "stream_id": format!("s{i}") }))
                    .send()
                    .await
                    .unwrap();
                reply.status().as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for start in starts {
        statuses.push(start.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|&&s| s == 201).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|&&s| s == 409).count(), 97);

    for server in &servers {
        let list: serde_json::Value = http
            .get(server.url("/streams"))
            .header("x-id", "shared-family")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(list["active"], 3, "both instances see the same streams");
    }
}

#[tokio::test]
async fn skewed_instance_clocks_do_not_change_decisions() {
    let url: StoreUrl = format!("{}?prefix={}", shared_url(), unique_prefix("skew"))
        .parse()
        .unwrap();
    let policy = Policy {
        default_limit: Limit::new(1).unwrap(),
        lease_ttl: Duration::from_secs(90),
        on_limit: OnLimit::Reject,
        plans: None,
    };
    let real = streamguard::domain::Clock::now(&streamguard::domain::SystemClock).as_millis();
    let ahead = ManualClock::new(Timestamp::from_millis(real + 10 * 60_000));
    let behind = ManualClock::new(Timestamp::from_millis(real - 10 * 60_000));
    let a = store::connect(&url, policy.clone(), Arc::new(ahead))
        .await
        .unwrap();
    let b = store::connect(&url, policy, Arc::new(behind))
        .await
        .unwrap();
    let user = UserId::parse("skewed").unwrap();
    let sid = |s: &str| StreamId::parse(s).unwrap();

    let StartDecision::Granted(grant) = a.start(&user, StartRequest::new(sid("s"))).await.unwrap()
    else {
        panic!("the first start is granted")
    };
    let started = grant.stream.started_at.as_millis();
    assert!(
        (started - real).abs() < 5_000,
        "time comes from Redis, not from the instance"
    );

    assert!(matches!(
        b.start(&user, StartRequest::new(sid("t"))).await.unwrap(),
        StartDecision::LimitReached { .. }
    ));
    let HeartbeatDecision::Renewed(renewed) = b.heartbeat(&user, &sid("s")).await.unwrap() else {
        panic!("the lease is live for the other instance too")
    };
    assert!((renewed.expires_at.as_millis() - (real + 90_000)).abs() < 5_000);
}

#[tokio::test]
async fn a_lowered_default_limit_holds_for_accounts_already_over_it() {
    let url: StoreUrl = format!("{}?prefix={}", shared_url(), unique_prefix("lowered"))
        .parse()
        .unwrap();
    let with_limit = |n| Policy {
        default_limit: Limit::new(n).unwrap(),
        lease_ttl: Duration::from_secs(90),
        on_limit: OnLimit::Reject,
        plans: None,
    };
    let clock = Arc::new(streamguard::domain::SystemClock);
    let before = store::connect(&url, with_limit(3), clock.clone())
        .await
        .unwrap();
    let after = store::connect(&url, with_limit(2), clock).await.unwrap();
    let user = UserId::parse("downgraded").unwrap();
    let sid = |s: &str| StreamId::parse(s).unwrap();
    for id in ["a", "b", "c"] {
        before
            .start(&user, StartRequest::new(sid(id)))
            .await
            .unwrap();
    }
    assert_eq!(after.view(&user).await.unwrap().live.len(), 2);
    assert_eq!(
        after.heartbeat(&user, &sid("c")).await.unwrap(),
        HeartbeatDecision::Ended(streamguard::domain::EndReason::Revoked),
        "the newest stream gives way under reject"
    );
}
