//! At connect the store checks that Redis keeps every key: no eviction,
//! an append-only file. Three outcomes: safe, unsafe (a warning, or with
//! `--redis-strict` a refusal naming the fix), and unchecked (CONFIG is
//! disabled, as on managed Redis).

use std::process::Command;

use streamguard::domain::Policy;
use streamguard::store::{Durability, RedisStore, RedisTarget, RedisTime, StoreError, StoreUrl};

use crate::support::OwnRedis;

fn target(redis: &OwnRedis) -> RedisTarget {
    let StoreUrl::Redis(target) = redis.url().parse().unwrap() else {
        unreachable!()
    };
    target
}

async fn open(redis: &OwnRedis, strict: bool) -> Result<Durability, StoreError> {
    let store =
        RedisStore::open_checked(&target(redis), Policy::default(), RedisTime::Server, strict)
            .await?;
    Ok(store.durability().clone())
}

fn config_set(redis: &OwnRedis, name: &str, value: &str) {
    redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query::<()>(&mut redis.connection())
        .unwrap();
}

#[tokio::test]
async fn a_redis_that_may_forget_is_named_and_refused_when_strict() {
    let redis = OwnRedis::start(); // appendonly no
    config_set(&redis, "maxmemory-policy", "allkeys-lru");

    let Durability::Unsafe(problems) = open(&redis, false).await.unwrap() else {
        panic!("eviction and no AOF are unsafe")
    };
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].contains("maxmemory-policy noeviction"),
        "{problems:?}"
    );
    assert!(problems[1].contains("appendonly yes"), "{problems:?}");

    let refused = open(&redis, true).await.unwrap_err();
    assert!(matches!(refused, StoreError::Config(_)), "{refused}");
    let message = refused.to_string();
    assert!(message.contains("--redis-strict"), "{message}");
    assert!(message.contains("allkeys-lru"), "{message}");
    assert!(message.contains("appendonly yes"), "{message}");

    // Fixed as the message says, strict mode starts.
    config_set(&redis, "maxmemory-policy", "noeviction");
    config_set(&redis, "appendonly", "yes");
    assert_eq!(open(&redis, true).await.unwrap(), Durability::Safe);
    assert_eq!(open(&redis, false).await.unwrap(), Durability::Safe);
}

#[tokio::test]
async fn without_config_it_says_it_could_not_check() {
    let redis = OwnRedis::start_with(&["--rename-command", "CONFIG", ""]);
    let Durability::Unchecked(why) = open(&redis, false).await.unwrap() else {
        panic!("CONFIG is disabled")
    };
    assert!(why.to_lowercase().contains("unknown command"), "{why}");
    let refused = open(&redis, true).await.unwrap_err();
    assert!(refused.to_string().contains("could not check"), "{refused}");
}

#[test]
fn the_redis_strict_flag_refuses_to_start_on_an_unsafe_redis() {
    let redis = OwnRedis::start(); // appendonly no
    let out = Command::new(env!("CARGO_BIN_EXE_streamguard"))
        .args(["--listen", "127.0.0.1:0", "--store", &redis.url()])
        .env("STREAMGUARD_REDIS_STRICT", "true")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("appendonly yes"), "{said}");
}

#[test]
fn init_connects_and_checks_a_redis_and_fails_on_one_it_cannot_reach() {
    let init = |store: &str| {
        Command::new(env!("CARGO_BIN_EXE_streamguard"))
            .args(["init", "--store", store])
            .output()
            .unwrap()
    };
    let redis = OwnRedis::start(); // appendonly no
    let ready = init(&redis.url());
    let said = String::from_utf8_lossy(&ready.stdout);
    assert!(ready.status.success(), "{said}");
    assert!(
        said.contains("appendonly yes"),
        "the settings are checked: {said}"
    );
    let port = redis.url().rsplit(':').next().unwrap().to_owned();
    drop(redis);
    let unreachable = init(&format!("redis://127.0.0.1:{port}"));
    assert!(!unreachable.status.success());
}

#[test]
fn init_with_redis_strict_refuses_an_unsafe_redis_and_accepts_a_safe_one() {
    let init = |store: &str| {
        Command::new(env!("CARGO_BIN_EXE_streamguard"))
            .args(["init", "--store", store, "--redis-strict"])
            .output()
            .unwrap()
    };
    let redis = OwnRedis::start(); // appendonly no
    let refused = init(&redis.url());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&refused.stdout),
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(!refused.status.success(), "{said}");
    assert!(said.contains("appendonly yes"), "{said}");

    config_set(&redis, "appendonly", "yes");
    let ready = init(&redis.url());
    let said = String::from_utf8_lossy(&ready.stdout);
    assert!(ready.status.success(), "{said}");
}
