//! Logs and metrics. Library code records through the `tracing` and
//! `metrics` facades; the binary installs the subscriber and the exporter.
//! A leaf: it imports no other module of the crate.

#[cfg(feature = "lambda")]
pub mod emf;
mod logs;
mod process;
mod recorder;
mod series;

pub use logs::{LogFormat, LogSettings, Logging, WithRequestId, init_logging, with_request_id};
pub use recorder::{metrics_handle, refresh_gauges};
pub use series::{http_request, name_routes, store_call, throttled};

/// Counts `n` decisions of one outcome (granted, denied, evicted, …).
pub fn record_decision(outcome: &'static str, n: usize) {
    if n > 0 {
        series::decisions(outcome, n as u64);
        #[cfg(feature = "lambda")]
        emf::record(outcome, n as u64);
    }
}
