//! The Lua scripts against the Rust rules they mirror: the same random walk
//! of operations, step by step, must give the same decisions; through
//! `FCALL` and through the `EVALSHA` fallback, and on an account that
//! starts out in the old JSON string layout.

use std::sync::Arc;
use std::time::Duration;

use streamguard::domain::{
    Account, DeviceId, EndReason, Limit, ManualClock, OnLimit, Policy, StartRequest, StreamId,
    Timestamp, UserId,
};
use streamguard::store::{RedisStore, RedisTime, ScriptCalls, StoreUrl, StreamStore};

use crate::support::{shared_url, unique_prefix};

/// A tiny deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Where the walk begins.
#[derive(Clone, Copy, PartialEq)]
enum Begin {
    /// From an empty account.
    Empty,
    /// The first 200 steps run on the model alone; the model is then
    /// written as the old layout's JSON string, and the walk goes on.
    OldLayout,
}

async fn walk(on_limit: OnLimit, seed: u64, calls: ScriptCalls, begin: Begin) {
    let policy = Policy {
        default_limit: Limit::new(2).unwrap(),
        lease_ttl: Duration::from_secs(30),
        on_limit,
        plans: None,
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
    let mut rng = Rng(seed);
    let sid = |n: u64| StreamId::parse(&format!("s{n}")).unwrap();

    let on_redis_from = match begin {
        Begin::Empty => 0,
        Begin::OldLayout => 200,
    };
    for step in 0..600 {
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
        clock.advance(Duration::from_millis(rng.below(12_000)));
        let now = streamguard::domain::Clock::now(&clock);
        let id = sid(rng.below(6));
        let context = format!("seed {seed}, step {step}");
        if step < on_redis_from {
            model_only(&mut model, &mut rng, id, now, &policy);
            if model.is_idle() {
                model = Account::default();
            }
            continue;
        }
        match rng.below(10) {
            0..=3 => {
                let req = StartRequest {
                    device_id: (rng.below(2) == 0)
                        .then(|| DeviceId::parse(&format!("d{}", rng.below(3))).unwrap()),
                    terminate: (0..rng.below(3)).map(|_| sid(rng.below(6))).collect(),
                    limit_claim: (rng.below(4) == 0)
                        .then(|| streamguard::domain::Limit::new(rng.below(5) as u32).unwrap()),
                    ..StartRequest::new(id)
                };
                let expected = model.start(req.clone(), now, &policy);
                assert_eq!(
                    redis.start(&user, req).await.unwrap(),
                    expected,
                    "{context}"
                );
            }
            4..=5 => {
                let expected = model.heartbeat(&id, now, &policy);
                assert_eq!(
                    redis.heartbeat(&user, &id).await.unwrap(),
                    expected,
                    "{context}"
                );
            }
            6 => {
                let reason = if rng.below(2) == 0 {
                    EndReason::Stopped
                } else {
                    EndReason::Revoked
                };
                let expected = model.end(&id, reason, now, &policy);
                assert_eq!(
                    redis.end(&user, &id, reason).await.unwrap(),
                    expected,
                    "{context}"
                );
            }
            7 => {
                let limit = match rng.below(5) {
                    4 => None,
                    n => Some(Limit::new(n as u32).unwrap()),
                };
                let expected = model.set_limit(limit, now, &policy);
                assert_eq!(
                    redis.set_limit(&user, limit).await.unwrap(),
                    expected,
                    "{context}"
                );
            }
            _ => {}
        }
        if model.is_idle() {
            // Every store forgets an idle account at once, grant counter
            // and plan included.
            model = Account::default();
        }
        assert_eq!(
            redis.view(&user).await.unwrap(),
            model.view(now, &policy),
            "{context}"
        );
    }
}

/// A step of the walk on the model alone (the same draws as on Redis).
fn model_only(model: &mut Account, rng: &mut Rng, id: StreamId, now: Timestamp, policy: &Policy) {
    let sid = |n: u64| StreamId::parse(&format!("s{n}")).unwrap();
    match rng.below(10) {
        0..=3 => {
            let req = StartRequest {
                device_id: (rng.below(2) == 0)
                    .then(|| DeviceId::parse(&format!("d{}", rng.below(3))).unwrap()),
                terminate: (0..rng.below(3)).map(|_| sid(rng.below(6))).collect(),
                limit_claim: (rng.below(4) == 0).then(|| Limit::new(rng.below(5) as u32).unwrap()),
                ..StartRequest::new(id)
            };
            model.start(req, now, policy);
        }
        4..=5 => {
            model.heartbeat(&id, now, policy);
        }
        6 => {
            model.end(&id, EndReason::Stopped, now, policy);
        }
        7 => {
            let limit = match rng.below(5) {
                4 => None,
                n => Some(Limit::new(n as u32).unwrap()),
            };
            model.set_limit(limit, now, policy);
        }
        _ => {}
    }
}

#[tokio::test]
async fn the_scripts_decide_like_the_rust_rules_under_reject() {
    for seed in [1, 2, 3] {
        walk(
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
        OnLimit::Reject,
        0xEA1_0001,
        ScriptCalls::Evalsha,
        Begin::Empty,
    )
    .await;
    walk(
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
            OnLimit::Reject,
            0x01D_0000 + seed,
            ScriptCalls::Auto,
            Begin::OldLayout,
        )
        .await;
        walk(
            OnLimit::EvictOldest,
            0x01D_1000 + seed,
            ScriptCalls::Auto,
            Begin::OldLayout,
        )
        .await;
    }
}

/// Plans for the rules walk: every rule form, with maxima small enough that
/// the walk meets every refusal; the second file tightens and loosens them,
/// as an operator's edit would.
const PLANS: [&str; 2] = [
    r#"
default = "standard"
[plans.standard]
limit = 3
rules = [ { name = "same-title", per = "content_id", max = 1 } ]
[plans.premium]
limit = 4
rules = [
  { name = "same-title", per = "content_id", max = 2 },
  { name = "uhd", match = { quality = ["uhd"] }, max = 1 },
  { name = "group", match = { channel = ["dmax", "tlc"], quality = ["hd", "uhd"] }, max = 1 },
  { name = "per-channel", per = "channel", max = 1, required = true },
]
[plans.basic]
limit = 1
"#,
    r#"
default = "premium"
[plans.standard]
limit = 2
[plans.premium]
limit = 3
rules = [ { name = "per-quality", per = "quality", max = 1 } ]
"#,
];

/// The walk with plans and tags: starts with content, tags, claimed plans,
/// terminate lists and devices; heartbeats, stops, admin limits and plans,
/// and plans file edits. Every decision and every view must match.
async fn walk_plans(on_limit: OnLimit, seed: u64) {
    use streamguard::domain::{ContentId, PlanBook, PlanName, Tags};
    let files: Vec<_> = PLANS
        .iter()
        .map(|f| streamguard::plans::parse(f).unwrap())
        .collect();
    let book = Arc::new(PlanBook::new(files[0].clone()));
    let policy = Policy {
        default_limit: Limit::new(2).unwrap(),
        lease_ttl: Duration::from_secs(30),
        on_limit,
        plans: Some(book.clone()),
    };
    let clock = ManualClock::new(Timestamp::from_millis(1_800_000_000_000));
    let prefix = unique_prefix("mirror-plans");
    let url = format!("{}?prefix={prefix}", shared_url());
    let StoreUrl::Redis(target) = url.parse().unwrap() else {
        unreachable!()
    };
    let redis = RedisStore::open(
        &target,
        policy.clone(),
        RedisTime::Clock(Arc::new(clock.clone())),
    )
    .await
    .unwrap();
    let user = UserId::parse("walker").unwrap();
    let mut model = Account::default();
    let mut rng = Rng(seed);
    let sid = |n: u64| StreamId::parse(&format!("s{n}")).unwrap();
    let plan =
        |n: u64| PlanName::parse(["standard", "premium", "basic", "gone"][n as usize]).unwrap();
    // No secret, or one of two players' secrets.
    let key = |rng: &mut Rng| match rng.below(3) {
        0 => None,
        n => Some(
            streamguard::domain::SecretHash::of(&format!("player-{n}-secret-0123456789")).unwrap(),
        ),
    };
    let mut outcomes = std::collections::HashMap::new();
    for step in 0..800 {
        clock.advance(Duration::from_millis(rng.below(12_000)));
        let now = streamguard::domain::Clock::now(&clock);
        let id = sid(rng.below(7));
        let context = format!("seed {seed}, step {step}");
        match rng.below(12) {
            0..=4 => {
                let mut tags: Vec<(&str, &str)> = Vec::new();
                if rng.below(4) > 0 {
                    tags.push(("channel", ["dmax", "tlc", "ard"][rng.below(3) as usize]));
                }
                if rng.below(2) == 0 {
                    tags.push(("quality", ["uhd", "hd"][rng.below(2) as usize]));
                }
                let req = StartRequest {
                    device_id: (rng.below(3) == 0)
                        .then(|| DeviceId::parse(&format!("d{}", rng.below(3))).unwrap()),
                    content_id: (rng.below(4) > 0)
                        .then(|| ContentId::parse(&format!("m{}", rng.below(3))).unwrap()),
                    tags: Tags::from_pairs(tags).unwrap(),
                    secret: key(&mut rng),
                    terminate: (0..rng.below(2)).map(|_| sid(rng.below(7))).collect(),
                    plan: (rng.below(5) == 0).then(|| plan(rng.below(3))),
                    ..StartRequest::new(id)
                };
                if rng.below(4) == 0 {
                    // A heartbeat that found nothing, resumed from its grant.
                    let resume = StartRequest {
                        terminate: Vec::new(),
                        ..req
                    };
                    let expected = model.resume(resume.clone(), now, &policy);
                    assert_eq!(
                        redis.resume(&user, resume).await.unwrap(),
                        expected,
                        "{context}"
                    );
                    continue;
                }
                let expected = model.start(req.clone(), now, &policy);
                let kind = format!("{expected:?}")
                    .split(['(', ' '])
                    .next()
                    .unwrap()
                    .to_owned();
                *outcomes.entry(kind).or_insert(0) += 1;
                assert_eq!(
                    redis.start(&user, req).await.unwrap(),
                    expected,
                    "{context}"
                );
            }
            5..=6 => {
                let presented = key(&mut rng);
                let expected = model.heartbeat_with(&id, presented.as_ref(), now, &policy);
                assert_eq!(
                    redis
                        .heartbeat_with(&user, &id, presented.as_ref())
                        .await
                        .unwrap(),
                    expected,
                    "{context}"
                );
            }
            7 => {
                let expected = model.end(&id, EndReason::Stopped, now, &policy);
                assert_eq!(
                    redis.end(&user, &id, EndReason::Stopped).await.unwrap(),
                    expected,
                    "{context}"
                );
            }
            8 => {
                let limit = (rng.below(3) == 0).then(|| Limit::new(rng.below(5) as u32).unwrap());
                let expected = model.set_limit(limit, now, &policy);
                assert_eq!(
                    redis.set_limit(&user, limit).await.unwrap(),
                    expected,
                    "{context}"
                );
            }
            9 => {
                // "gone" is a plan no file defines: passed over, as after an edit.
                let assigned = (rng.below(3) > 0).then(|| plan(rng.below(4)));
                let expected = model.set_plan(assigned.clone(), now, &policy);
                assert_eq!(
                    redis.set_plan(&user, assigned).await.unwrap(),
                    expected,
                    "{context}"
                );
            }
            10 => book.replace(files[rng.below(2) as usize].clone()),
            _ => {}
        }
        if model.is_idle() {
            model = Account::default();
        }
        assert_eq!(
            redis.view(&user).await.unwrap(),
            model.view(now, &policy),
            "{context}"
        );
    }
    // The walk must reach every outcome, or it proves little.
    for outcome in [
        "Granted",
        "LimitReached",
        "MissingAttribute",
        "StreamIdConflict",
    ] {
        assert!(
            outcomes.get(outcome).copied().unwrap_or(0) > 3,
            "seed {seed}: {outcome} seen {outcomes:?}"
        );
    }
}

#[tokio::test]
async fn the_scripts_decide_plans_and_rules_like_the_rust_rules() {
    for seed in [1, 2, 3] {
        walk_plans(OnLimit::Reject, 0x9A1_0000 + seed).await;
        walk_plans(OnLimit::EvictOldest, 0x9A1_1000 + seed).await;
    }
}
