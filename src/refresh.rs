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
/// still holds `target`. A failed refresh keeps the keys already loaded.
pub fn every<T: Refresh>(period: Duration, target: &Arc<T>) {
    let weak = Arc::downgrade(target);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(target) = weak.upgrade() else { return };
            if let Err(error) = target.refresh().await {
                tracing::warn!(%error, "{} refresh failed; keeping the keys we have", T::WHAT);
            }
        }
    });
}
