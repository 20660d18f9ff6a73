//! The knobs of admission: how many streams, for how long, and what happens
//! when an account is full.

use std::num::NonZeroU16;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::plan::PlanBook;

/// Largest limit an account may be given.
pub const MAX_LIMIT: u32 = 1000;

/// How many streams an account may hold at once (0 blocks the account).
/// Two bytes: an account keeps two of them (override and claim), and
/// every byte of an account is paid ten million times.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct Limit(NonZeroU16);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("limit must be between 0 and {MAX_LIMIT}, got {0}")]
pub struct LimitOutOfRange(pub i64);

impl Limit {
    /// The limit of an account nothing else sets: 3.
    pub const DEFAULT: Limit = Limit(NonZeroU16::new(4).expect("nonzero"));

    pub fn new(n: u32) -> Result<Self, LimitOutOfRange> {
        if n <= MAX_LIMIT {
            // Stored one above the limit, so that `Option<Limit>` fits in
            // two bytes (zero is the `None`).
            Ok(Self(NonZeroU16::MIN.saturating_add(n as u16)))
        } else {
            Err(LimitOutOfRange(i64::from(n)))
        }
    }

    pub fn get(self) -> u32 {
        u32::from(self.0.get() - 1)
    }

    /// A limit given as a JSON number: a whole number from 0 to 1000,
    /// written `3` or `3.0` (JSON Schema counts both as integers; `2.5` is
    /// not one). The admin API's body and a token's limit claim read it
    /// alike.
    pub fn from_json(number: &serde_json::Number) -> Option<Self> {
        let whole = number.as_u64().or_else(|| {
            number
                .as_f64()
                .filter(|f| f.fract() == 0.0 && (0.0..=f64::from(MAX_LIMIT)).contains(f))
                .map(|f| f as u64)
        });
        whole
            .and_then(|n| u32::try_from(n).ok())
            .and_then(|n| Self::new(n).ok())
    }

    /// Whether `active` streams leave no room for one more.
    pub fn is_reached_by(self, active: usize) -> bool {
        active >= self.get() as usize
    }
}

impl TryFrom<u32> for Limit {
    type Error = LimitOutOfRange;
    fn try_from(n: u32) -> Result<Self, LimitOutOfRange> {
        Limit::new(n)
    }
}

impl From<Limit> for u32 {
    fn from(l: Limit) -> u32 {
        l.get()
    }
}

/// What a start does when the account is already at its limit.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum OnLimit {
    /// Refuse the new stream (409); the streams already playing keep playing.
    #[default]
    Reject,
    /// Grant the new stream and end the account's oldest one.
    EvictOldest,
}

/// Everything the rules need besides the account and the clock.
#[derive(Clone, Debug)]
pub struct Policy {
    pub default_limit: Limit,
    pub lease_ttl: Duration,
    pub on_limit: OnLimit,
    /// `--plans`: the plans in use. `None`: every account has the implicit
    /// plan, `default_limit` and no rules.
    pub plans: Option<Arc<PlanBook>>,
}

impl Policy {
    /// How long an ended stream's reason is remembered.
    pub fn tombstone_ttl(&self) -> Duration {
        self.lease_ttl * 10
    }

    /// How often players should heartbeat: a third of the lease, at least 1 s.
    pub fn heartbeat_interval(&self) -> Duration {
        (self.lease_ttl / 3).max(Duration::from_secs(1))
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            default_limit: Limit::DEFAULT,
            lease_ttl: Duration::from_secs(90),
            on_limit: OnLimit::Reject,
            plans: None,
        }
    }
}
