//! Redis going away and coming back, and the cost of a decision in round trips.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{OwnRedis, unique_prefix};

async fn status(http: &reqwest::Client, request: reqwest::RequestBuilder) -> u16 {
    let _ = http;
    request.send().await.unwrap().status().as_u16()
}

/// Sends `request()` until it answers one of `codes`, for at most 5 s.
async fn eventually(
    http: &reqwest::Client,
    codes: &[u16],
    request: impl Fn() -> reqwest::RequestBuilder,
) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let seen = status(http, request()).await;
        if codes.contains(&seen) {
            return;
        }
        assert!(Instant::now() < deadline, "answered {seen}, not {codes:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_redis_gives_fast_503s_and_service_resumes_when_it_returns() {
    let mut redis = OwnRedis::start();
    let store = format!("{}?prefix={}", redis.url(), unique_prefix("failover"));
    let sg = crate::server::Server::start(&["--store", &store, "--store-timeout", "250ms"], &[]);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let start = |id: &str| {
        http.post(sg.url("/streams"))
            .header("x-id", "u")
            .json(&json!({ "stream_id": id }))
    };

    // With a 250 ms store timeout, a loaded machine may answer one of the
    // healthy calls 503: they only have to succeed within a few seconds (a
    // start that timed out after all may then be found live: 200).
    eventually(&http, &[201, 200], || start("before")).await;
    eventually(&http, &[200], || http.get(sg.url("/readyz"))).await;

    redis.kill();
    let asked = Instant::now();
    let reply = start("during").send().await.unwrap();
    assert_eq!(reply.status(), 503);
    assert_eq!(reply.headers()["retry-after"], "1");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "took {:?}",
        asked.elapsed()
    );
    assert_eq!(status(&http, http.get(sg.url("/readyz"))).await, 503);

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let code = status(&http, start("after")).await;
        // 200: an earlier try timed out here but reached Redis after all.
        if code == 201 || code == 200 {
            break;
        }
        assert_eq!(code, 503, "only 503 while reconnecting");
        assert!(Instant::now() < deadline, "no recovery without a restart");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eventually(&http, &[200], || http.get(sg.url("/readyz"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_decision_is_exactly_one_fcall() {
    let redis = OwnRedis::start();
    let store = format!("{}?prefix={}", redis.url(), unique_prefix("round-trips"));
    let sg = crate::server::Server::start(&["--store", &store], &[]);
    let http = reqwest::Client::new();
    let decide = |n: usize| {
        let http = http.clone();
        let sg_url = |p: &str| sg.url(p);
        let (start, beat, stop, list) = (
            sg_url("/streams"),
            sg_url(&format!("/streams/s{n}/heartbeat")),
            sg_url(&format!("/streams/s{n}")),
            sg_url("/streams"),
        );
        async move {
            let body = json!({ "stream_id": format!("s{n}") });
            http.post(start)
                .header("x-id", "rt")
                .json(&body)
                .send()
                .await
                .unwrap();
            http.post(beat).header("x-id", "rt").send().await.unwrap();
            http.delete(stop).header("x-id", "rt").send().await.unwrap();
            http.get(list).header("x-id", "rt").send().await.unwrap();
        }
    };
    decide(0).await; // loads the scripts
    let mut con = redis.connection();
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query::<()>(&mut con)
        .unwrap();
    for n in 1..=25 {
        decide(n).await;
    }
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut con)
        .unwrap();
    let calls = |cmd: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{cmd}:calls=")))
            .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
    };
    assert_eq!(calls("fcall"), 100, "{stats}");
    assert_only_script_calls(&stats, "fcall");
}

/// Commands the scripts run inside Redis also appear in commandstats.
pub fn assert_only_script_calls(stats: &str, call: &str) {
    let outside_scripts: Vec<&str> = stats
        .lines()
        .filter(|l| l.starts_with("cmdstat_"))
        .filter(|l| {
            let name = l.trim_start_matches("cmdstat_").split(':').next().unwrap();
            let inside = matches!(
                name,
                "hgetall" | "hmget" | "hset" | "hdel" | "del" | "pexpire" | "persist" | "time"
            );
            name != call && !inside && !matches!(name, "config|resetstat" | "info")
        })
        .collect();
    assert!(
        outside_scripts.is_empty(),
        "commands besides the scripts: {outside_scripts:?}"
    );
}

#[tokio::test]
async fn the_evalsha_fallback_is_one_evalsha_per_decision_too() {
    use streamguard::domain::{EndReason, Policy, StartRequest, StreamId, UserId};
    use streamguard::store::{RedisStore, RedisTime, ScriptCalls, StoreUrl, StreamStore};

    let redis = OwnRedis::start();
    let url = format!("{}?prefix={}", redis.url(), unique_prefix("evalsha"));
    let StoreUrl::Redis(target) = url.parse().unwrap() else {
        unreachable!()
    };
    let store = RedisStore::open_with(
        &target,
        Policy::default(),
        RedisTime::Server,
        ScriptCalls::Evalsha,
    )
    .await
    .unwrap();
    assert_eq!(store.script_calls(), ScriptCalls::Evalsha);
    let user = UserId::parse("rt").unwrap();
    let decide = |n: usize| {
        let store = store.clone();
        let user = user.clone();
        async move {
            let id = StreamId::parse(&format!("s{n}")).unwrap();
            store
                .start(&user, StartRequest::new(id.clone()))
                .await
                .unwrap();
            store.heartbeat(&user, &id).await.unwrap();
            store.end(&user, &id, EndReason::Stopped).await.unwrap();
            store.view(&user).await.unwrap();
        }
    };
    decide(0).await; // loads the scripts
    let mut con = redis.connection();
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query::<()>(&mut con)
        .unwrap();
    for n in 1..=25 {
        decide(n).await;
    }
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut con)
        .unwrap();
    let evalsha = stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .map_or(0, |rest| {
            rest.split(',').next().unwrap().parse::<u64>().unwrap()
        });
    assert_eq!(evalsha, 100, "{stats}");
    assert_only_script_calls(&stats, "evalsha");
}
