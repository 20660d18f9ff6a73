//! Keys that change on disk or at a URL are re-read in the background, so a
//! rotation needs no restart: the JWT verification keys (`--jwt-jwks`) and
//! the grant signing keys (`--grant-key`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// What can be refreshed: reads its source again and installs what changed.
pub trait Refresh: Send + Sync + 'static {
    /// Names the keys in the warning a failed refresh logs.
    const WHAT: &'static str;

    fn refresh(&self) -> impl Future<Output = Result<(), String>> + Send;
}

/// Calls `target.refresh()` every `period`, for as long as something else
/// still holds `target`. A failed refresh keeps the keys already loaded
/// and is logged once, not at every tick, until the failure changes or
/// ends.
pub fn every<T: Refresh>(period: Duration, target: &Arc<T>) {
    let weak = Arc::downgrade(target);
    let mut ticks = crate::ticks::Ticks::new(period, move || weak.upgrade());
    tokio::spawn(async move {
        let mut failing: Option<String> = None;
        while let Some(target) = ticks.next().await {
            match target.refresh().await {
                Ok(()) => {
                    if failing.take().is_some() {
                        tracing::info!("{} refresh works again", T::WHAT);
                    }
                }
                Err(error) => {
                    if failing.as_ref() != Some(&error) {
                        tracing::warn!(%error, "{} refresh failed; keeping the keys we have", T::WHAT);
                    }
                    failing = Some(error);
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Answers each refresh with the next scripted result, then `Ok`.
    struct Scripted(Mutex<Vec<Result<(), String>>>);

    impl Refresh for Scripted {
        const WHAT: &'static str = "test keys";

        async fn refresh(&self) -> Result<(), String> {
            let mut script = self.0.lock().unwrap();
            if script.is_empty() {
                Ok(())
            } else {
                script.remove(0)
            }
        }
    }

    /// Counts the warnings logged.
    struct Warnings(Arc<AtomicUsize>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            if *event.metadata().level() == tracing::Level::WARN {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    #[tokio::test]
    async fn a_failure_is_logged_once_until_it_changes() {
        let warnings = Arc::new(AtomicUsize::new(0));
        let subscriber = tracing_subscriber::registry().with(Warnings(warnings.clone()));
        let _logging = tracing::subscriber::set_default(subscriber);
        let broken = || Err("broken".to_string());
        let script = vec![
            broken(),
            broken(),
            broken(),
            Err("gone".into()),
            Ok(()),
            broken(),
        ];
        let target = Arc::new(Scripted(Mutex::new(script)));
        every(Duration::from_millis(5), &target);
        while !target.0.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        // "broken" three times in a row: one warning; "gone": one; after a
        // success, "broken" again: one.
        assert_eq!(warnings.load(Ordering::SeqCst), 3);
    }
}
