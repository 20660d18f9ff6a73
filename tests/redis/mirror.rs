//! The Lua scripts against the Rust rules they mirror: the shared random
//! walk (`tests/common/walk.rs`), step by step, must give the same
//! decisions and the same views; through `FCALL` and through the `EVALSHA`
//! fallback, on an account that starts out in the old JSON string layout,
//! and with drawn plans files, tags, secrets, resumes and plan changes.

use std::sync::Arc;
use std::time::Duration;

use streamguard::domain::{
    Account, Limit, ManualClock, OnLimit, PlanBook, Policy, Timestamp, UserId,
};
use streamguard::store::{RedisStore, RedisTime, ScriptCalls, StoreUrl, StreamStore};

use crate::support::{shared_url, unique_prefix};
use crate::walk::{self, Mix, Outcome, Walk};

/// Where the walk begins.
#[derive(Clone, Copy, PartialEq)]
enum Begin {
    /// From an empty account.
    Empty,
    /// The first 200 steps run on the model alone; the model is then
    /// written as the old layout's JSON string, and the walk goes on.
    OldLayout,
}

async fn walk(mix: Mix, on_limit: OnLimit, seed: u64, calls: ScriptCalls, begin: Begin) {
    let mut walk = Walk::new(seed, mix);
    let policy = Policy {
        default_limit: Limit::new(2).unwrap(),
        lease_ttl: Duration::from_secs(30),
        on_limit,
        plans: mix
            .attributes
            .then(|| Arc::new(PlanBook::new(walk.plans()))),
    };
    let clock = ManualClock::new(Timestamp::from_millis(1_800_000_000_000));
    let prefix = unique_prefix("mirror");
    let url = format!("{}?prefix={prefix}", shared_url());
    let StoreUrl::Redis(target) = url.parse().unwrap() else {
        unreachable!()
    };
    let redis = RedisStore::open_with(
        &target,
        policy.clone(),
        RedisTime::Clock(Arc::new(clock.clone())),
        calls,
    )
    .await
    .unwrap();
    assert_eq!(redis.script_calls(), calls, "Redis 7 takes the library");
    let user = UserId::parse("walker").unwrap();
    let mut model = Account::default();
    let on_redis_from = match begin {
        Begin::Empty => 0,
        Begin::OldLayout => 200,
    };
    let mut outcomes = std::collections::HashMap::new();
    for step in 0..if mix.attributes { 800 } else { 600 } {
        if step == on_redis_from && begin == Begin::OldLayout {
            let mut con = redis::Client::open(shared_url())
                .unwrap()
                .get_connection()
                .unwrap();
            let json = serde_json::to_string(&model).unwrap();
            redis::cmd("SET")
                .arg(format!("{prefix}:{{walker}}"))
                .arg(json)
                .query::<()>(&mut con)
                .unwrap();
        }
        clock.advance(walk.clock_step(Duration::from_secs(12)));
        let now = streamguard::domain::Clock::now(&clock);
        let op = walk.op();
        let context = format!("seed {seed}, step {step}: {op}");
        let expected = walk::apply(&mut model, &op, now, &policy);
        if let Outcome::Start(d) = &expected {
            let kind = format!("{d:?}")
                .split(['(', ' '])
                .next()
                .unwrap()
                .to_owned();
            *outcomes.entry(kind).or_insert(0) += 1;
        }
        if step >= on_redis_from {
            let answer = walk::run(redis.as_ref(), &user, &op).await.unwrap();
            assert_eq!(answer, expected, "{context}");
        }
        if model.is_idle() {
            // Every store forgets an idle account at once, grant counter
            // and plan included.
            model = Account::default();
        }
        if step >= on_redis_from {
            assert_eq!(
                redis.view(&user).await.unwrap(),
                model.view(now, &policy),
                "{context}"
            );
        }
    }
    // The walk must reach every outcome, or it proves little.
    // (A retry with the same attributes and secret is rare with them.)
    let kinds = if mix.attributes {
        [
            "Granted",
            "LimitReached",
            "MissingAttribute",
            "StreamIdConflict",
        ]
    } else {
        ["Granted", "LimitReached", "AlreadyLive", "StreamIdConflict"]
    };
    for outcome in kinds {
        assert!(
            outcomes.get(outcome).copied().unwrap_or(0) > 3,
            "seed {seed}: {outcome} seen {outcomes:?}"
        );
    }
}

#[tokio::test]
async fn the_scripts_decide_like_the_rust_rules_under_reject() {
    for seed in [1, 2, 3] {
        walk(
            Mix::LIMITS,
            OnLimit::Reject,
            0x5EED_0000 + seed,
            ScriptCalls::Auto,
            Begin::Empty,
        )
        .await;
    }
}

#[tokio::test]
async fn the_scripts_decide_like_the_rust_rules_under_evict_oldest() {
    for seed in [1, 2, 3] {
        walk(
            Mix::LIMITS,
            OnLimit::EvictOldest,
            0xE51C_0000 + seed,
            ScriptCalls::Auto,
            Begin::Empty,
        )
        .await;
    }
}

#[tokio::test]
async fn the_evalsha_fallback_decides_like_the_rust_rules() {
    walk(
        Mix::LIMITS,
        OnLimit::Reject,
        0xEA1_0001,
        ScriptCalls::Evalsha,
        Begin::Empty,
    )
    .await;
    walk(
        Mix::PLANS,
        OnLimit::EvictOldest,
        0xEA1_0002,
        ScriptCalls::Evalsha,
        Begin::Empty,
    )
    .await;
}

#[tokio::test]
async fn an_account_in_the_old_layout_goes_on_deciding_like_the_rust_rules() {
    for seed in [1, 2, 3] {
        walk(
            Mix::LIMITS,
            OnLimit::Reject,
            0x01D_0000 + seed,
            ScriptCalls::Auto,
            Begin::OldLayout,
        )
        .await;
        walk(
            Mix::LIMITS,
            OnLimit::EvictOldest,
            0x01D_1000 + seed,
            ScriptCalls::Auto,
            Begin::OldLayout,
        )
        .await;
    }
}

#[tokio::test]
async fn the_scripts_decide_plans_and_rules_like_the_rust_rules() {
    for seed in [1, 2, 3] {
        for on_limit in [OnLimit::Reject, OnLimit::EvictOldest] {
            walk(
                Mix::PLANS,
                on_limit,
                0x9A1_0000 + seed,
                ScriptCalls::Auto,
                Begin::Empty,
            )
            .await;
        }
    }
}
