//! The one way background upkeep runs: every period, for as long as what
//! it works on is still in use elsewhere (it holds only a weak reference).

use std::time::Duration;

use tokio::time::{Interval, MissedTickBehavior};

/// Ticks every `period`, the first one period after creation, and hands
/// out what `upgrade` gives; ends once `upgrade` gives nothing (the owner
/// dropped it). A tick missed while the task was busy is not made up.
///
/// ```ignore
/// let mut ticks = Ticks::new(period, move || weak.upgrade());
/// tokio::spawn(async move {
///     while let Some(table) = ticks.next().await {
///         table.sweep();
///     }
/// });
/// ```
pub struct Ticks<T, U> {
    interval: Interval,
    upgrade: U,
    started: bool,
    _gives: std::marker::PhantomData<fn() -> T>,
}

impl<T, U: FnMut() -> Option<T>> Ticks<T, U> {
    pub fn new(period: Duration, upgrade: U) -> Self {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self {
            interval,
            upgrade,
            started: false,
            _gives: std::marker::PhantomData,
        }
    }

    /// Waits for the next tick; `None` once the owner is gone.
    pub async fn next(&mut self) -> Option<T> {
        if !self.started {
            // An interval's first tick completes at once.
            self.interval.tick().await;
            self.started = true;
        }
        self.interval.tick().await;
        (self.upgrade)()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn ticks_after_each_period_until_the_owner_is_gone() {
        let owner = Arc::new(7);
        let weak = Arc::downgrade(&owner);
        let period = Duration::from_millis(20);
        let mut ticks = Ticks::new(period, move || weak.upgrade());
        let started = tokio::time::Instant::now();
        assert_eq!(ticks.next().await.as_deref(), Some(&7));
        assert!(started.elapsed() >= period);
        drop(owner);
        assert!(ticks.next().await.is_none());
    }
}
