//! Logs: one line per event on stdout (JSON, or text for a terminal),
//! written by a background thread, each carrying the id of the request
//! being handled.

use std::future::Future;
use std::io::Write;
use std::sync::OnceLock;

use axum::http::HeaderValue;
use tracing::{Event, Subscriber};
use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{Format, Json, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// Log lines waiting for the writer thread; past this, lines are dropped
/// (and counted) rather than blocking requests or growing memory.
const LOG_QUEUE_LINES: usize = 8_192;
/// Longest log line kept, in bytes; with the line limit, the queue holds
/// at most 64 MiB whatever is logged.
const MAX_LOG_LINE: usize = 8 * 1024;

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

pub(super) static DROPPED_LINES: OnceLock<ErrorCounter> = OnceLock::new();

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
