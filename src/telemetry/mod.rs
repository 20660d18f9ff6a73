//! Logs and metrics. Library code records through the `tracing` and
//! `metrics` facades; the binary installs the subscriber and the exporter.

use std::fmt::Write as _;
use std::future::Future;
use std::io::Write;
use std::sync::OnceLock;
use std::time::Duration;

use axum::http::HeaderValue;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::{Event, Subscriber};
use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{Format, Json, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

#[cfg(feature = "lambda")]
pub mod emf;
mod series;
pub use series::{http_request, name_routes, store_call, throttled};

/// Seconds buckets for request and store latency.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];

/// Records per journal write (group commit).
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// Log lines waiting for the writer thread; past this, lines are dropped
/// (and counted) rather than blocking requests or growing memory.
const LOG_QUEUE_LINES: usize = 8_192;
/// Longest log line kept, in bytes; with the line limit, the queue holds
/// at most 64 MiB whatever is logged.
const MAX_LOG_LINE: usize = 8 * 1024;

/// How often histograms are drained when nobody scrapes `/metrics`.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// `--log-format`: one JSON object a line, or text for a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// Keep it alive until exit: dropping it flushes what is buffered.
pub struct Logging {
    _guard: WorkerGuard,
}

static DROPPED_LINES: OnceLock<ErrorCounter> = OnceLock::new();

/// Where the log format and level come from: the flags, and inside AWS
/// Lambda `AWS_LAMBDA_LOG_FORMAT` (`JSON`/`Text`) and
/// `AWS_LAMBDA_LOG_LEVEL` (`TRACE`…`FATAL`).
pub struct LogSettings {
    pub format: LogFormat,
    /// The level when neither `STREAMGUARD_LOG` nor `RUST_LOG` is set.
    pub default_level: String,
}

impl LogSettings {
    pub fn new(format: LogFormat, in_lambda: bool) -> Self {
        let mut settings = Self {
            format,
            default_level: "info".into(),
        };
        if in_lambda {
            match std::env::var("AWS_LAMBDA_LOG_FORMAT").as_deref() {
                Ok(f) if f.eq_ignore_ascii_case("text") => settings.format = LogFormat::Text,
                Ok(f) if f.eq_ignore_ascii_case("json") => settings.format = LogFormat::Json,
                _ => {}
            }
            if let Ok(level) = std::env::var("AWS_LAMBDA_LOG_LEVEL") {
                settings.default_level = match level.to_ascii_lowercase().as_str() {
                    "fatal" => "error".into(),
                    other => other.into(),
                };
            }
        }
        settings
    }
}

/// The filter from `STREAMGUARD_LOG`, else `RUST_LOG`, else `default`; one
/// that does not parse is reported (once logging works) and replaced by
/// `default`.
fn filter_from_env(default: &str) -> (EnvFilter, Option<String>) {
    let fallback = || EnvFilter::try_new(default).unwrap_or_else(|_| EnvFilter::new("info"));
    for var in ["STREAMGUARD_LOG", "RUST_LOG"] {
        if let Ok(text) = std::env::var(var) {
            return match EnvFilter::try_new(&text) {
                Ok(filter) => (filter, None),
                Err(e) => (
                    fallback(),
                    Some(format!(
                        "{var}={text:?} is not a log filter ({e}); logging at {default}"
                    )),
                ),
            };
        }
    }
    match EnvFilter::try_new(default) {
        Ok(filter) => (filter, None),
        Err(e) => (
            fallback(),
            Some(format!(
                "log level {default:?} is not valid ({e}); logging at info"
            )),
        ),
    }
}

/// Sends one line per event to stdout (JSON objects, or text for a
/// terminal), written by a background thread so request handlers never
/// block on the terminal or the log shipper.
pub fn init_logging(settings: &LogSettings) -> Logging {
    // Buffered: the writer thread flushes whenever it has drained what is
    // queued, so under load many lines share one write(2) instead of one each.
    let stdout = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .lossy(true)
        .thread_name("streamguard-log")
        .finish(stdout);
    let _ = DROPPED_LINES.set(writer.error_counter());
    let writer = Capped(writer);
    let (filter, warning) = filter_from_env(&settings.default_level);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match settings.format {
        LogFormat::Json => builder.json().event_format(WithRequestId::json()).init(),
        LogFormat::Text => builder
            .with_ansi(false)
            .event_format(WithRequestId::text())
            .init(),
    }
    if let Some(warning) = warning {
        tracing::warn!("{warning}");
    }
    Logging { _guard: guard }
}

tokio::task_local! {
    /// The id of the request this task is handling; log lines written
    /// meanwhile carry it. Cheaper than a span per request, which the
    /// formatter would have to format at every request, logged or not.
    static REQUEST_ID: HeaderValue;
}

/// Runs `handling` as the handling of request `id`: every line it logs
/// carries `request_id`.
pub async fn with_request_id<F: Future>(id: HeaderValue, handling: F) -> F::Output {
    REQUEST_ID.scope(id, handling).await
}

/// The id of the request being handled by this task, if any. Only ids of
/// the safe character set get here (see `http::acceptable_request_id`),
/// so they need no escaping in JSON or text.
fn current_request_id() -> Option<String> {
    REQUEST_ID
        .try_with(|id| id.to_str().ok().map(str::to_owned))
        .ok()
        .flatten()
}

/// A log line, with the `request_id` of the request being handled: the
/// line `inner` formats, and `place` puts the id into it.
pub struct WithRequestId<F> {
    inner: F,
    place: fn(&str, &str, &mut Writer<'_>) -> std::fmt::Result,
}

impl WithRequestId<Format<Json>> {
    /// One JSON object a line; the id is a top-level field.
    pub fn json() -> Self {
        let inner = tracing_subscriber::fmt::format()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false);
        Self {
            inner,
            place: |line, id, writer| match line.strip_prefix('{') {
                Some(rest) => write!(writer, "{{\"request_id\":\"{id}\",{rest}"),
                None => writer.write_str(line),
            },
        }
    }
}

impl WithRequestId<Format> {
    /// Text for a terminal; the id is ` request_id=…` at the line's end.
    pub fn text() -> Self {
        Self {
            inner: tracing_subscriber::fmt::format().with_ansi(false),
            place: |line, id, writer| {
                let body = line.strip_suffix('\n').unwrap_or(line);
                writeln!(writer, "{body} request_id={id}")
            },
        }
    }
}

impl<S, N, F> FormatEvent<S, N> for WithRequestId<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let Some(id) = current_request_id() else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::with_capacity(256);
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        (self.place)(&line, &id, &mut writer)
    }
}

/// The log writer, with every line cut to [`MAX_LOG_LINE`] bytes.
#[derive(Clone)]
struct Capped(NonBlocking);

impl<'a> MakeWriter<'a> for Capped {
    type Writer = CappedLine;

    fn make_writer(&'a self) -> CappedLine {
        CappedLine(self.0.clone())
    }
}

struct CappedLine(NonBlocking);

impl Write for CappedLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() <= MAX_LOG_LINE {
            return self.0.write(buf);
        }
        let mut cut = buf[..MAX_LOG_LINE - 1].to_vec();
        cut.push(b'\n');
        self.0.write(&cut)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

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
        ("file", cfg!(feature = "embedded")),
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

/// The standard `process_*` metrics, read from `/proc/self` on Linux.
mod process {
    pub fn describe() {
        use metrics::{Unit, describe_gauge};
        describe_gauge!(
            "process_cpu_seconds_total",
            Unit::Seconds,
            "User and system CPU time spent"
        );
        describe_gauge!(
            "process_resident_memory_bytes",
            Unit::Bytes,
            "Resident memory size"
        );
        describe_gauge!(
            "process_virtual_memory_bytes",
            Unit::Bytes,
            "Virtual memory size"
        );
        describe_gauge!("process_open_fds", "Open file descriptors");
        describe_gauge!("process_threads", "OS threads");
    }

    #[cfg(target_os = "linux")]
    pub fn record() {
        // Fields after the command name (which may hold spaces), from 3 on.
        let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
            return;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
        // USER_HZ and the page size are 100 and 4 KiB on Linux's common
        // targets (x86_64, aarch64 with 4K pages).
        const TICKS_PER_S: f64 = 100.0;
        const PAGE: f64 = 4096.0;
        if let (Some(utime), Some(stime)) = (field(14), field(15)) {
            metrics::gauge!("process_cpu_seconds_total").set((utime + stime) / TICKS_PER_S);
        }
        if let Some(threads) = field(20) {
            metrics::gauge!("process_threads").set(threads);
        }
        if let Some(vsize) = field(23) {
            metrics::gauge!("process_virtual_memory_bytes").set(vsize);
        }
        if let Some(rss_pages) = field(24) {
            metrics::gauge!("process_resident_memory_bytes").set(rss_pages * PAGE);
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            metrics::gauge!("process_open_fds").set(fds.count() as f64);
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub fn record() {}
}

/// Counts `n` decisions of one outcome (granted, denied, evicted, …).
pub fn record_decision(outcome: &'static str, n: usize) {
    if n > 0 {
        series::decisions(outcome, n as u64);
        #[cfg(feature = "lambda")]
        emf::record(outcome, n as u64);
    }
}
