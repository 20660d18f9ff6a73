//! How long a decision that lost a conditional write (on a remote store:
//! DynamoDB today) waits before it tries again: exponential from 1 ms up to
//! 100 ms, with full jitter so that the losers of one race do not collide
//! again in the next, and bounded.
//!
//! The bound is generous on purpose. Under sustained contention from k
//! instances a decision loses each round with probability about (k-1)/k, so
//! a bound of 10 already fails one decision in 20 at k = 4; 50 attempts make
//! that one in a million. In the HTTP path `--store-timeout` (250 ms)
//! answers 503 long before; the bound only stops a runaway loop elsewhere.

use std::time::Duration;

/// Attempts one decision makes before it gives up with an error.
pub const MAX_ATTEMPTS: u32 = 50;

const BASE: Duration = Duration::from_millis(1);
const CAP: Duration = Duration::from_millis(100);

pub struct Backoff {
    attempts: u32,
}

impl Backoff {
    pub fn new() -> Self {
        Self { attempts: 1 }
    }

    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Waits before the next attempt; `false` when none is left.
    pub async fn wait(&mut self) -> bool {
        match self.next_delay() {
            Some(delay) => {
                tokio::time::sleep(delay).await;
                true
            }
            None => false,
        }
    }

    /// How long to wait before the next attempt, if there is one.
    fn next_delay(&mut self) -> Option<Duration> {
        if self.attempts >= MAX_ATTEMPTS {
            return None;
        }
        let micros = u64::try_from(ceiling(self.attempts).as_micros()).unwrap_or(u64::MAX);
        self.attempts += 1;
        Some(Duration::from_micros(fastrand::u64(0..=micros)))
    }
}

/// The longest wait after the `attempt`-th failure.
fn ceiling(attempt: u32) -> Duration {
    BASE.saturating_mul(1 << attempt.min(16)).min(CAP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_then_stay_capped() {
        assert_eq!(ceiling(1), Duration::from_millis(2));
        assert_eq!(ceiling(2), Duration::from_millis(4));
        assert_eq!(ceiling(7), CAP);
        assert_eq!(ceiling(u32::MAX), CAP);
    }

    #[test]
    fn delays_are_jittered_below_the_ceiling_until_the_bound() {
        let mut backoff = Backoff::new();
        let mut delays = Vec::new();
        while let Some(delay) = backoff.next_delay() {
            assert!(delay <= ceiling(backoff.attempts() - 1));
            delays.push(delay);
        }
        assert_eq!(delays.len() as u32, MAX_ATTEMPTS - 1);
        assert_eq!(backoff.attempts(), MAX_ATTEMPTS);
        delays.dedup();
        assert!(delays.len() > 1, "delays are random, not fixed");
    }
}
