//! Handles to the series counted at every request, each looked up once.
//!
//! `counter!(name, "route" => route)` with a label value known only at run
//! time builds a key, hashes it and finds it in the recorder's registry at
//! every call, four times for a heartbeat. Here every series whose labels
//! come from a known set has a slot that is filled on first use; a value
//! outside the sets (an unusual status or method) still counts, the slow
//! way. The routes are the HTTP layer's own list, named once by
//! [`name_routes`] when the first router is built.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Counter, Histogram};

/// The label of a request no route matched.
const UNMATCHED: &str = "unmatched";

/// The routes' labels, and the slots of their series.
struct Routes {
    /// Every path the router may match (see `http::routes`), and `unmatched`.
    paths: Vec<&'static str>,
    /// `paths × METHODS × STATUSES` request counters.
    requests: Box<[OnceLock<Counter>]>,
    durations: Box<[OnceLock<Histogram>]>,
}

static ROUTES: OnceLock<Routes> = OnceLock::new();

/// Names the routes whose requests get slots: every path the router may
/// match. The first call wins (the list does not depend on configuration).
pub fn name_routes(paths: impl FnOnce() -> Vec<String>) {
    ROUTES.get_or_init(|| {
        let mut paths: Vec<&'static str> = paths()
            .into_iter()
            .map(|path| &*Box::leak(path.into_boxed_str()))
            .collect();
        paths.push(UNMATCHED);
        let slots = paths.len() * METHODS.len() * STATUSES.len();
        Routes {
            requests: (0..slots).map(|_| OnceLock::new()).collect(),
            durations: (0..paths.len()).map(|_| OnceLock::new()).collect(),
            paths,
        }
    });
}

/// The method labels the HTTP layer uses (a fixed set; see `method_label`).
const METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "other",
];

/// The statuses the API answers with.
const STATUSES: [&str; 20] = [
    "200", "201", "204", "304", "400", "401", "403", "404", "405", "406", "408", "409", "410",
    "413", "415", "422", "429", "431", "500", "503",
];

/// The outcomes of `streamguard_decisions_total`.
const OUTCOMES: [&str; 8] = [
    "granted", "denied", "renewed", "evicted", "replaced", "stopped", "revoked", "expired",
];

/// The scopes of `streamguard_throttled_total`.
const SCOPES: [&str; 2] = ["stream", "account"];

/// The store operations timed by `AppState::call`.
const STORE_OPS: [&str; 6] = ["start", "heartbeat", "end", "view", "set_limit", "ping"];

static DECISIONS: [OnceLock<Counter>; OUTCOMES.len()] = [const { OnceLock::new() }; OUTCOMES.len()];
static THROTTLED: [OnceLock<Counter>; SCOPES.len()] = [const { OnceLock::new() }; SCOPES.len()];
static STORE_CALLS: [OnceLock<Histogram>; STORE_OPS.len()] =
    [const { OnceLock::new() }; STORE_OPS.len()];

fn position(set: &[&str], value: &str) -> Option<usize> {
    set.iter().position(|v| *v == value)
}

/// The handle in `slot`, made by `make` the first time. Our recorder is
/// installed first, so a handle is never one of the no-op recorder's.
fn slot<H>(slot: &OnceLock<H>, make: impl FnOnce() -> H) -> &H {
    slot.get_or_init(|| {
        super::metrics_handle();
        make()
    })
}

/// One answered HTTP request: `streamguard_http_requests_total` and
/// `streamguard_http_request_duration_seconds`.
pub fn http_request(method: &'static str, route: &str, status: &str, latency: Duration) {
    let seconds = latency.as_secs_f64();
    let known = ROUTES
        .get()
        .and_then(|routes| Some((routes, position(&routes.paths, route)?)));
    let Some((routes, r)) = known else {
        let route = route.to_owned();
        metrics::counter!("streamguard_http_requests_total",
            "method" => method, "route" => route.clone(), "status" => status.to_owned())
        .increment(1);
        metrics::histogram!("streamguard_http_request_duration_seconds", "route" => route)
            .record(seconds);
        return;
    };
    let route = routes.paths[r];
    match (position(&METHODS, method), position(&STATUSES, status)) {
        (Some(m), Some(s)) => {
            let index = (r * METHODS.len() + m) * STATUSES.len() + s;
            slot(&routes.requests[index], || {
                metrics::counter!("streamguard_http_requests_total",
                    "method" => METHODS[m], "route" => route, "status" => STATUSES[s])
            })
            .increment(1);
        }
        _ => metrics::counter!("streamguard_http_requests_total",
            "method" => method, "route" => route, "status" => status.to_owned())
        .increment(1),
    }
    slot(
        &routes.durations[r],
        || metrics::histogram!("streamguard_http_request_duration_seconds", "route" => route),
    )
    .record(seconds);
}

/// `n` more decisions of one outcome in `streamguard_decisions_total`.
pub fn decisions(outcome: &'static str, n: u64) {
    by_label(
        (&OUTCOMES, &DECISIONS),
        outcome,
        |o| metrics::counter!("streamguard_decisions_total", "outcome" => o),
        |c| c.increment(n),
    );
}

/// One more request refused by the flood limit of `scope`.
pub fn throttled(scope: &'static str) {
    by_label(
        (&SCOPES, &THROTTLED),
        scope,
        |s| metrics::counter!("streamguard_throttled_total", "scope" => s),
        |c| c.increment(1),
    );
}

/// One store call's duration in `streamguard_store_call_duration_seconds`.
pub fn store_call(op: &'static str, took: Duration) {
    by_label(
        (&STORE_OPS, &STORE_CALLS),
        op,
        |o| metrics::histogram!("streamguard_store_call_duration_seconds", "op" => o),
        |h| h.record(took.as_secs_f64()),
    );
}

/// Hands `use_handle` the handle of a series with one label: for a value
/// in `values`, the matching slot (made by `make` the first time); for any
/// other, a handle made now, the slow way.
fn by_label<H>(
    (values, slots): (&[&'static str], &[OnceLock<H>]),
    value: &'static str,
    make: impl Fn(&'static str) -> H,
    use_handle: impl FnOnce(&H),
) {
    match position(values, value) {
        Some(i) => use_handle(slot(&slots[i], || make(values[i]))),
        None => use_handle(&make(value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the one series of `name` whose labels include all of
    /// `labels` (each `key="value"`), 0 when there is none yet.
    fn value(name: &str, labels: &[&str]) -> f64 {
        let page = crate::telemetry::metrics_handle().render();
        page.lines()
            .filter(|line| line.starts_with(&format!("{name}{{")))
            .find(|line| labels.iter().all(|l| line.contains(l)))
            .and_then(|line| line.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    }

    #[test]
    fn requests_count_under_their_labels_whether_or_not_they_have_a_slot() {
        name_routes(|| vec!["/admin/users/{user}/limit".into(), "/streams".into()]);
        let slotted = [
            r#"method="PATCH""#,
            r#"route="/admin/users/{user}/limit""#,
            r#"status="422""#,
        ];
        let unslotted = [r#"route="/only-in-this-test""#, r#"status="299""#];
        let before = value("streamguard_http_requests_total", &slotted);
        for _ in 0..3 {
            http_request(
                "PATCH",
                "/admin/users/{user}/limit",
                "422",
                Duration::from_micros(40),
            );
        }
        http_request("GET", "/only-in-this-test", "299", Duration::from_millis(2));
        http_request("BREW", "/streams", "200", Duration::from_millis(2));
        assert_eq!(
            value("streamguard_http_requests_total", &slotted),
            before + 3.0
        );
        assert_eq!(value("streamguard_http_requests_total", &unslotted), 1.0);
        assert_eq!(
            value(
                "streamguard_http_requests_total",
                &[r#"method="BREW""#, r#"route="/streams""#]
            ),
            1.0
        );
        assert!(
            value(
                "streamguard_http_request_duration_seconds_count",
                &[r#"route="/only-in-this-test""#]
            ) >= 1.0
        );
    }

    #[test]
    fn decisions_and_store_calls_count_for_known_and_other_values() {
        let before = value("streamguard_decisions_total", &[r#"outcome="replaced""#]);
        decisions("replaced", 2);
        decisions("only-in-this-test", 5);
        assert_eq!(
            value("streamguard_decisions_total", &[r#"outcome="replaced""#]),
            before + 2.0
        );
        assert_eq!(
            value(
                "streamguard_decisions_total",
                &[r#"outcome="only-in-this-test""#]
            ),
            5.0
        );
        let before = value("streamguard_throttled_total", &[r#"scope="stream""#]);
        throttled("stream");
        assert_eq!(
            value("streamguard_throttled_total", &[r#"scope="stream""#]),
            before + 1.0
        );
        store_call("only-in-this-test", Duration::from_millis(1));
        assert_eq!(
            value(
                "streamguard_store_call_duration_seconds_count",
                &[r#"op="only-in-this-test""#]
            ),
            1.0
        );
    }
}
