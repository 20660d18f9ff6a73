//! Flood limits as state kept beside what they limit: the generic cell
//! rate algorithm (GCRA) over one number per stream or account, the
//! instant at which its bucket would be empty again ("theoretical arrival
//! time"). A store that holds accounts in memory keeps a lease's pace in
//! the lease and an account's beside the account, so the lookup that finds
//! an account finds its paces (no second map keyed by stream).

use std::time::Duration;

/// Pace instants count in ticks of 1/16 ms: rates up to 16 000 a second
/// are exact to 62.5 µs.
const TICKS_PER_MS: u64 = 16;

/// An instant on the clock flood limits use: monotonic, from any origin
/// (the store's process start), not the decisions' injected clock — a
/// flood is real time, also while a test holds the lease clock still.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PaceInstant(u64);

impl PaceInstant {
    /// `since` after the origin.
    pub fn after(since: Duration) -> Self {
        PaceInstant((since.as_micros() as u64).saturating_mul(TICKS_PER_MS) / 1000)
    }
}

/// `n` requests a second with a burst of `n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Ticks between two requests at the steady rate.
    period: u64,
    /// How far ahead of now the empty-bucket instant may be and still
    /// admit a request: the burst less one period.
    tolerance: u64,
}

impl Rate {
    /// `None` for 0: the limit is off.
    pub fn per_second(n: u32) -> Option<Self> {
        let n = u64::from(n);
        (n > 0).then(|| {
            let period = (1000 * TICKS_PER_MS / n).max(1);
            Rate {
                period,
                tolerance: period * (n - 1),
            }
        })
    }
}

/// The flood limits of a service: per stream and per account, each off
/// when `None`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rates {
    pub stream: Option<Rate>,
    pub account: Option<Rate>,
}

/// What a pace says of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Admitted (and counted), or the limit is off.
    Pass,
    /// Over the limit: admitted again after this long. Not counted.
    Wait(Duration),
    /// Whoever was asked keeps no pace for it (no such account or live
    /// stream there): the caller counts it itself.
    NotKept,
}

/// What the flood limits kept with an account say of one request: the
/// stream's limit (`Pass` when the request is not about a stream), then
/// the account's, which is not counted when the stream's refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Paced {
    pub stream: Verdict,
    pub account: Verdict,
}

impl Paced {
    /// Nothing kept here: the caller counts both.
    pub const NOT_KEPT: Paced = Paced {
        stream: Verdict::NotKept,
        account: Verdict::NotKept,
    };
}

/// The pace of an account: the empty-bucket instant, in ticks; 0 when
/// nothing was counted yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pace(u64);

impl Pace {
    /// Counts one request at `now` if `rate` admits it.
    pub fn admit(&mut self, now: PaceInstant, rate: Rate) -> Verdict {
        let t = now.0;
        let empty_at = self.0.max(t);
        let ahead = empty_at - t;
        if ahead > rate.tolerance {
            let wait_ticks = ahead - rate.tolerance;
            return Verdict::Wait(Duration::from_micros(wait_ticks * 1000 / TICKS_PER_MS));
        }
        self.0 = empty_at + rate.period;
        Verdict::Pass
    }
}

/// The pace of one lease in 4 bytes: the low 32 bits of [`Pace`]'s ticks,
/// read back as the nearest instant to now (within ±37 hours). A live
/// lease was counted within its TTL (at most 24 h), so that instant is
/// its own. Not part of a lease's value: every pace compares equal.
#[derive(Clone, Copy, Debug, Default)]
pub struct LeasePace(u32);

impl PartialEq for LeasePace {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for LeasePace {}

impl LeasePace {
    pub fn admit(&mut self, now: PaceInstant, rate: Rate) -> Verdict {
        let t = now.0;
        let mut pace = match self.0 {
            0 => Pace::default(),
            low => Pace(t.wrapping_add(i64::from(low.wrapping_sub(t as u32) as i32) as u64)),
        };
        let verdict = pace.admit(now, rate);
        // 0 stands for "never counted"; one tick later is as good.
        self.0 = (pace.0 as u32).max(1);
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ms` after an origin far from 0 (in ticks, 2^34 + a little).
    fn at(ms: u64) -> PaceInstant {
        PaceInstant::after(Duration::from_millis(1_073_741_900 + ms))
    }

    fn passed(admit: &mut impl FnMut(PaceInstant) -> Verdict, now: PaceInstant, n: usize) -> usize {
        (0..n).filter(|_| admit(now) == Verdict::Pass).count()
    }

    #[test]
    fn a_burst_passes_then_the_steady_rate() {
        let rate = Rate::per_second(10).unwrap();
        let mut pace = Pace::default();
        let mut admit = |now| pace.admit(now, rate);
        assert_eq!(passed(&mut admit, at(0), 400), 10);
        assert_eq!(admit(at(50)), Verdict::Wait(Duration::from_millis(50)));
        assert_eq!(
            passed(&mut admit, at(100), 5),
            1,
            "one period later, one more"
        );
        assert_eq!(
            passed(&mut admit, at(2_000), 400),
            10,
            "refilled after a second"
        );
    }

    #[test]
    fn a_lease_pace_is_the_same_in_four_bytes() {
        let rate = Rate::per_second(200).unwrap();
        let (mut wide, mut narrow) = (Pace::default(), LeasePace::default());
        for ms in (0..3_000).step_by(3) {
            for _ in 0..3 {
                assert_eq!(wide.admit(at(ms), rate), narrow.admit(at(ms), rate), "{ms}");
            }
        }
        assert_eq!(std::mem::size_of::<LeasePace>(), 4);
    }

    #[test]
    fn a_lease_pace_survives_its_ticks_wrapping_and_a_day_idle() {
        let rate = Rate::per_second(10).unwrap();
        let mut pace = LeasePace::default();
        // 2^32 ticks are 74.6 hours: walk across several wraps.
        for hour in (0..300).step_by(7) {
            let now = at(hour * 3_600_000);
            let mut admit = |now| pace.admit(now, rate);
            assert_eq!(passed(&mut admit, now, 50), 10, "hour {hour}");
        }
        let now = at(0);
        let mut admit = |now| pace.admit(now, rate);
        admit(now);
        assert_eq!(passed(&mut admit, at(24 * 3_600_000), 50), 10);
    }

    #[test]
    fn zero_is_off() {
        assert_eq!(Rate::per_second(0), None);
        assert_eq!(Rate::per_second(1).unwrap().tolerance, 0);
    }
}
