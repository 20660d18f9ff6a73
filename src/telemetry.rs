//! Logs and metrics. Library code records through the `tracing` and
//! `metrics` facades; the binary installs the subscriber and the exporter.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

use crate::domain::StartDecision;

/// Seconds buckets for request and store latency.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];

/// Sends one JSON object a line to stdout, written by a background thread so
/// request handlers never block on the terminal or the log shipper. Keep the
/// guard alive until exit: dropping it flushes what is buffered.
pub fn init_logging() -> WorkerGuard {
    // Buffered: the writer thread flushes whenever it has drained what is
    // queued, so under load many lines share one write(2) instead of one each.
    let stdout = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
    let (writer, guard) = tracing_appender::non_blocking(stdout);
    let filter =
        EnvFilter::try_from_env("STREAMGUARD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(writer)
        .init();
    guard
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .expect("bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (a host program);
            // then our page stays empty rather than failing the service.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Counts `n` decisions of one outcome (granted, denied, evicted, …).
pub fn record_decision(outcome: &'static str, n: usize) {
    if n > 0 {
        metrics::counter!("streamguard_decisions_total", "outcome" => outcome).increment(n as u64);
        #[cfg(feature = "lambda")]
        crate::lambda::emf::record(outcome, n as u64);
    }
}

/// Counts what a start decided: a grant and what it ended, or a denial.
pub fn record_start(decision: &StartDecision) {
    match decision {
        StartDecision::Granted(grant) => {
            record_decision("granted", 1);
            record_decision("evicted", grant.evicted.len());
            record_decision("replaced", grant.replaced.len());
        }
        StartDecision::LimitReached { .. } => record_decision("denied", 1),
        StartDecision::AlreadyLive { .. } | StartDecision::StreamIdConflict => {}
    }
}
