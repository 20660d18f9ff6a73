//! Time as the domain sees it: milliseconds since the Unix epoch, read from an
//! injected [`Clock`] so tests move time instead of sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// An instant with millisecond precision (milliseconds since the Unix epoch).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// RFC 3339 in UTC with millisecond precision, e.g. `2026-11-28T09:00:00.123Z`.
    pub fn to_rfc3339(self) -> String {
        self.rfc3339().as_str().to_owned()
    }

    /// [`Timestamp::to_rfc3339`] without an allocation: the 24 characters
    /// inline. Every answer about a stream carries two of these.
    pub fn rfc3339(self) -> Rfc3339 {
        // Howard Hinnant's days-to-civil, valid for years 0000..=9999.
        const MIN: i64 = -62_167_219_200_000; // 0000-01-01T00:00:00Z
        const MAX: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
        if !(MIN..=MAX).contains(&self.0) {
            return Rfc3339(*b"invalid\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 7);
        }
        let (days, ms_of_day) = (self.0.div_euclid(86_400_000), self.0.rem_euclid(86_400_000));
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        let mut out = *b"0000-00-00T00:00:00.000Z";
        let mut put = |at: usize, width: usize, mut n: i64| {
            for i in (at..at + width).rev() {
                out[i] = b'0' + (n % 10) as u8;
                n /= 10;
            }
        };
        put(0, 4, year);
        put(5, 2, month);
        put(8, 2, day);
        put(11, 2, ms_of_day / 3_600_000);
        put(14, 2, ms_of_day / 60_000 % 60);
        put(17, 2, ms_of_day / 1_000 % 60);
        put(20, 3, ms_of_day % 1_000);
        Rfc3339(out, 24)
    }
}

/// An RFC 3339 timestamp as text, held inline (see [`Timestamp::rfc3339`]).
#[derive(Clone, Copy)]
pub struct Rfc3339([u8; 24], u8);

impl Rfc3339 {
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written.
        std::str::from_utf8(&self.0[..usize::from(self.1)]).expect("ASCII")
    }
}

impl std::ops::Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(ms))
    }
}

/// Where "now" comes from.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The machine's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A clock that only moves when told to; clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self(Arc::new(AtomicI64::new(start.0)))
    }

    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_utc_with_millis() {
        let t = Timestamp::from_millis(1_795_770_000_123);
        assert_eq!(t.to_rfc3339(), "2026-11-27T09:00:00.123Z");
    }

    #[test]
    fn the_inline_formatter_agrees_with_the_time_crate() {
        let reference = |ms: i64| {
            let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                .unwrap();
            let format = time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            );
            t.format(format).unwrap()
        };
        let mut ms: i64 = -62_167_219_200_000;
        while ms < 253_402_300_799_999 {
            assert_eq!(Timestamp(ms).to_rfc3339(), reference(ms), "{ms}");
            ms += 86_399_937_123; // about a day short of a thousand days
        }
        for ms in [0, -1, 951_782_400_000, 1_709_164_800_999, 4_107_542_399_999] {
            assert_eq!(Timestamp(ms).to_rfc3339(), reference(ms), "{ms}");
        }
        assert_eq!(Timestamp(i64::MAX).to_rfc3339(), "invalid");
    }

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let clock = ManualClock::new(Timestamp::from_millis(1_000));
        let shared = clock.clone();
        assert_eq!(clock.now(), Timestamp::from_millis(1_000));
        shared.advance(Duration::from_secs(2));
        assert_eq!(clock.now(), Timestamp::from_millis(3_000));
    }
}
