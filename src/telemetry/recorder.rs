//! Metrics: the process-wide Prometheus recorder, its descriptions, and
//! the values read at scrape time.

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::logs::DROPPED_LINES;
use super::process;

/// Seconds buckets for request and store latency.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];

/// Records per journal write (group commit).
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// How often histograms are drained when nobody scrapes `/metrics`.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The process-wide Prometheus recorder, installed on first use, with a
/// thread that drains its histograms every few seconds so memory stays
/// flat whether or not anyone scrapes.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .expect("bucket list is not empty")
                .set_buckets_for_metric(
                    Matcher::Full("streamguard_journal_batch_size".into()),
                    BATCH_BUCKETS,
                )
                .expect("bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (a host program);
            // then our page stays empty rather than failing the service.
            if metrics::set_global_recorder(recorder).is_ok() {
                describe();
            }
            let upkeep = handle.clone();
            let _ = std::thread::Builder::new()
                .name("streamguard-metrics".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_EVERY);
                        upkeep.run_upkeep();
                    }
                });
            handle
        })
        .clone()
}

/// Brings the values read at scrape time up to date: process figures and
/// dropped log lines.
pub fn refresh_gauges() {
    if let Some(dropped) = DROPPED_LINES.get() {
        metrics::counter!("streamguard_log_lines_dropped_total")
            .absolute(dropped.dropped_lines() as u64);
    }
    process::record();
}

/// `# HELP` for every metric, and the build's own series.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "streamguard_http_requests_total",
        "HTTP requests answered, by method, route and status"
    );
    describe_histogram!(
        "streamguard_http_request_duration_seconds",
        Unit::Seconds,
        "Time to answer an HTTP request, by route"
    );
    describe_histogram!(
        "streamguard_store_call_duration_seconds",
        Unit::Seconds,
        "Time of one store call, by operation"
    );
    describe_counter!(
        "streamguard_store_errors_total",
        "Store calls that failed (kind=error) or timed out (kind=timeout), by operation"
    );
    describe_counter!(
        "streamguard_store_conflicts_total",
        "Conditional writes that lost a race and were retried (DynamoDB), by operation"
    );
    describe_counter!(
        "streamguard_decisions_total",
        "Admission outcomes: granted, denied, renewed, evicted, replaced, stopped, revoked, expired"
    );
    describe_counter!(
        "streamguard_rule_refusals_total",
        "Starts refused, by each refusing rule of the account's plan (`account` for the account-wide limit)"
    );
    describe_counter!(
        "streamguard_resumed_total",
        "Heartbeats of streams the store had forgotten, re-admitted from their grant (outcome=resumed) or refused for want of room (outcome=refused)"
    );
    describe_counter!(
        "streamguard_unenforced_total",
        "Playback allowed without the store (--on-store-error allow), by operation"
    );
    describe_counter!(
        "streamguard_throttled_total",
        "Requests refused with 429 by the flood limits, by scope (stream or account)"
    );
    describe_counter!(
        "streamguard_log_lines_dropped_total",
        "Log lines dropped because the log writer fell behind"
    );
    describe_histogram!(
        "streamguard_journal_batch_size",
        "Records written together by one journal write (group commit)"
    );
    describe_gauge!(
        "streamguard_accounts",
        "Accounts with state in this instance's store"
    );
    describe_gauge!(
        "streamguard_build_info",
        "Always 1; the version and the stores compiled in are labels"
    );
    process::describe();
    let mut stores = String::from("memory");
    for (feature, on) in [
        ("file", cfg!(feature = "file")),
        ("redis", cfg!(feature = "redis")),
        ("dynamodb", cfg!(feature = "dynamodb")),
    ] {
        if on {
            let _ = write!(stores, ",{feature}");
        }
    }
    metrics::gauge!(
        "streamguard_build_info",
        "version" => env!("CARGO_PKG_VERSION"),
        "stores" => stores,
    )
    .set(1.0);
}
