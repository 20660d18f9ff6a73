//! Flood limits, checked in the handlers right after the identity is known
//! and before any store call: a rate per stream (heartbeats and stops of one
//! stream) and a rate per account (every request that acts for it).
//!
//! The handlers call [`Throttle::check_account`] or
//! [`Throttle::check_stream`] with the account the identity extractor found,
//! so the same check applies whatever proves the identity (`X-ID`, a JWT's
//! `sub`). The store counts first, where it keeps paces with its accounts
//! (`StreamStore::pace`: the `memory` and `file:` stores, for the accounts
//! and live streams they hold), so a heartbeat's limits are found by the
//! lookup that finds its account. What no store keeps (remote stores,
//! unknown accounts and streams) is counted here, in maps keyed by a keyed
//! hash of the ids, so a check allocates nothing; idle keys are dropped by
//! [`Throttle::forget_idle`], which the service runs every few seconds, so
//! those maps follow the active keys only.

use std::hash::{BuildHasher, RandomState};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::Clock;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::ApiError;
use crate::domain::{Paced, Rate, Rates, StreamId, UserId, Verdict};

/// Default requests per second for one stream. A player heartbeats every
/// `lease_ttl / 3` (30 s by default); retries after errors stay far below.
pub const DEFAULT_PER_STREAM: u32 = 10;
/// Default requests per second for one account: a burst of 200 (a hundred
/// starts racing for the last slot, say) reaches the store.
pub const DEFAULT_PER_ACCOUNT: u32 = 200;

/// How often idle keys are dropped.
pub const FORGET_IDLE_EVERY: Duration = Duration::from_secs(10);

/// Wrong admin tokens accepted in a burst before every admin request is
/// answered 429; then one more a second.
pub const ADMIN_FAILURE_BURST: u32 = 20;

pub struct Throttle {
    /// The limits, for the stores that count them with their accounts.
    rates: Rates,
    per_stream: Option<DefaultKeyedRateLimiter<u64>>,
    per_account: Option<DefaultKeyedRateLimiter<u64>>,
    /// Failed admin authentications, all clients together.
    admin_failures: DefaultDirectRateLimiter,
    /// While set and ahead, admin requests are refused unchecked.
    admin_blocked_until: Mutex<Option<Instant>>,
    /// Keyed with a per-process secret, so a client cannot choose ids whose
    /// keys collide with another account's.
    keys: RandomState,
}

/// `n` requests a second, with a burst of `n`; 0 turns the scope off.
fn limiter(per_second: u32) -> Option<DefaultKeyedRateLimiter<u64>> {
    NonZeroU32::new(per_second).map(|n| RateLimiter::dashmap(Quota::per_second(n)))
}

impl Throttle {
    pub fn new(per_stream: u32, per_account: u32) -> Self {
        Self {
            rates: Rates {
                stream: Rate::per_second(per_stream),
                account: Rate::per_second(per_account),
            },
            per_stream: limiter(per_stream),
            per_account: limiter(per_account),
            admin_failures: RateLimiter::direct(
                Quota::per_second(NonZeroU32::MIN)
                    .allow_burst(NonZeroU32::new(ADMIN_FAILURE_BURST).expect("not 0")),
            ),
            admin_blocked_until: Mutex::new(None),
            keys: RandomState::new(),
        }
    }

    /// Before an admin token is compared: refused while failures are over
    /// their budget, whatever the token, so that a guess learns nothing
    /// until the budget refills (the operator waits as long).
    pub fn check_admin(&self) -> Result<(), ApiError> {
        let until = *self
            .admin_blocked_until
            .lock()
            .expect("admin throttle lock");
        match until.map(|u| u.saturating_duration_since(Instant::now())) {
            Some(wait) if !wait.is_zero() => {
                crate::telemetry::throttled("admin");
                Err(throttled(wait))
            }
            _ => Ok(()),
        }
    }

    /// Counts a wrong admin token; once over the budget, refuses with 429
    /// and blocks admin requests until the budget has room again.
    pub fn admin_failed(&self) -> Result<(), ApiError> {
        let limiter = &self.admin_failures;
        limiter.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(limiter.clock().now());
            *self
                .admin_blocked_until
                .lock()
                .expect("admin throttle lock") = Some(Instant::now() + wait);
            crate::telemetry::throttled("admin");
            tracing::warn!("wrong admin tokens over their budget: admin requests answer 429");
            throttled(wait)
        })
    }

    /// A request that acts for `user`; `kept` counts it where the store
    /// keeps paces (`|rates| store.pace(user, None, rates)`).
    pub fn check_account(
        &self,
        user: &UserId,
        kept: impl FnOnce(Rates) -> Paced,
    ) -> Result<(), ApiError> {
        if self.rates.account.is_none() {
            return Ok(());
        }
        self.account_verdict(user, kept(self.rates).account)
    }

    /// A request about one stream of `user`: counts for the stream and for
    /// the account; `kept` as for [`Throttle::check_account`], with the
    /// stream.
    pub fn check_stream(
        &self,
        user: &UserId,
        id: &StreamId,
        kept: impl FnOnce(Rates) -> Paced,
    ) -> Result<(), ApiError> {
        if self.rates == Rates::default() {
            return Ok(());
        }
        let paced = kept(self.rates);
        match paced.stream {
            Verdict::Pass => {}
            Verdict::Wait(wait) => return Err(refused("stream", wait)),
            Verdict::NotKept => {
                let key = self.keys.hash_one((user.as_str(), id.as_str()));
                check(self.per_stream.as_ref(), key, "stream")?;
            }
        }
        self.account_verdict(user, paced.account)
    }

    fn account_verdict(&self, user: &UserId, verdict: Verdict) -> Result<(), ApiError> {
        match verdict {
            Verdict::Pass => Ok(()),
            Verdict::Wait(wait) => Err(refused("account", wait)),
            Verdict::NotKept => {
                let key = self.keys.hash_one(user.as_str());
                check(self.per_account.as_ref(), key, "account")
            }
        }
    }

    /// Drops the keys whose bucket is full again (they behave as new ones),
    /// and gives the freed memory back.
    pub fn forget_idle(&self) {
        for limiter in [&self.per_stream, &self.per_account].into_iter().flatten() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Keys held, per-stream and per-account together.
    pub fn len(&self) -> usize {
        [&self.per_stream, &self.per_account]
            .into_iter()
            .flatten()
            .map(|l| l.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn check(
    limiter: Option<&DefaultKeyedRateLimiter<u64>>,
    key: u64,
    scope: &'static str,
) -> Result<(), ApiError> {
    let Some(limiter) = limiter else {
        return Ok(());
    };
    limiter.check_key(&key).map_err(|not_until| {
        // The limiter's own clock: making a new one calibrates it, which
        // cost a 429 three times a whole heartbeat.
        refused(scope, not_until.wait_time_from(limiter.clock().now()))
    })
}

fn refused(scope: &'static str, wait: Duration) -> ApiError {
    crate::telemetry::throttled(scope);
    throttled(wait)
}

fn throttled(wait: Duration) -> ApiError {
    // Whole seconds, rounded up: a client that waits that long passes.
    let retry_after_s = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    ApiError::Throttled {
        retry_after_s: retry_after_s.max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    fn stream(s: &str) -> StreamId {
        StreamId::parse(s).unwrap()
    }

    /// A store that keeps no paces: the throttle counts everything.
    fn none(_: Rates) -> Paced {
        Paced::NOT_KEPT
    }

    #[test]
    fn a_stream_flood_is_cut_and_other_streams_pass() {
        let t = Throttle::new(10, 1000);
        let (alice, tv) = (user("alice"), stream("tv"));
        let passed = (0..400)
            .filter(|_| t.check_stream(&alice, &tv, none).is_ok())
            .count();
        assert!((10..=12).contains(&passed), "{passed} passed");
        assert!(t.check_stream(&alice, &stream("phone"), none).is_ok());
        assert!(t.check_stream(&user("bob"), &tv, none).is_ok());
        match t.check_stream(&alice, &tv, none) {
            Err(ApiError::Throttled { retry_after_s }) => assert_eq!(retry_after_s, 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_account_rate_counts_every_stream() {
        let t = Throttle::new(10, 50);
        let alice = user("alice");
        let passed = (0..100)
            .filter(|i| {
                t.check_stream(&alice, &stream(&format!("s{i}")), none)
                    .is_ok()
            })
            .count();
        assert!((50..=52).contains(&passed), "{passed} passed");
        assert!(t.check_account(&alice, none).is_err());
        assert!(t.check_account(&user("bob"), none).is_ok());
    }

    #[test]
    fn what_the_store_keeps_it_counts_and_the_maps_stay_empty() {
        let t = Throttle::new(10, 50);
        let (alice, tv) = (user("alice"), stream("tv"));
        let wait = |ms| Verdict::Wait(Duration::from_millis(ms));
        let kept = |stream, account| move |_: Rates| Paced { stream, account };
        assert!(
            t.check_stream(&alice, &tv, kept(Verdict::Pass, Verdict::Pass))
                .is_ok()
        );
        match t.check_stream(&alice, &tv, kept(wait(1500), Verdict::Pass)) {
            Err(ApiError::Throttled { retry_after_s }) => assert_eq!(retry_after_s, 2),
            other => panic!("{other:?}"),
        }
        assert!(
            t.check_stream(&alice, &tv, kept(Verdict::Pass, wait(10)))
                .is_err()
        );
        assert!(
            t.check_account(&alice, kept(Verdict::Pass, wait(10)))
                .is_err()
        );
        assert!(t.is_empty(), "nothing counted here");
        // A stream the store lacks in an account it has: the stream is
        // counted here, the account there.
        assert!(
            t.check_stream(&alice, &tv, kept(Verdict::NotKept, Verdict::Pass))
                .is_ok()
        );
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn zero_turns_a_scope_off() {
        let t = Throttle::new(0, 0);
        let (alice, tv) = (user("alice"), stream("tv"));
        assert!((0..10_000).all(|_| t.check_stream(&alice, &tv, none).is_ok()));
        assert!(t.is_empty());
    }

    #[test]
    fn idle_keys_are_forgotten() {
        let t = Throttle::new(1000, 1000);
        for i in 0..1000 {
            t.check_account(&user(&format!("u{i}")), none).unwrap();
        }
        assert_eq!(t.len(), 1000);
        // One request used a thousandth of each bucket; one millisecond
        // later every bucket is full again, so every key is idle.
        std::thread::sleep(Duration::from_millis(5));
        t.forget_idle();
        assert_eq!(t.len(), 0);
    }
}
