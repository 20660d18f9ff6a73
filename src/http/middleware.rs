//! Around every request: a request id (a client's `X-Request-Id` when it is
//! short and plain, else a fresh one; returned either way) that every line
//! logged while handling the request carries, the body size check, the
//! HTTP metrics and the access-log line.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use super::extract::is_json_content_type;
use super::{AccessLog, ApiError, BODY_TIMEOUT, MAX_BODY_BYTES};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client request id kept.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Wraps `router` in the request-id, logging and metrics layer.
pub fn around<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    access_log: AccessLog,
) -> Router<S> {
    router.layer(middleware::from_fn(move |req, next| {
        observe(req, next, access_log)
    }))
}

/// A client's request id, if it is one we can log and echo as it is:
/// 1–128 characters of `A-Z a-z 0-9 . _ : @ - / + =`.
pub fn acceptable_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_REQUEST_ID_LEN
        && bytes.iter().all(|&b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'.' | b'_' | b':' | b'@' | b'-' | b'/' | b'+' | b'=')
        })
}

/// Request ids made of a random per-process prefix and a counter: unique
/// across instances without a random draw per request. Written by hand
/// into a buffer: `format!` cost a heartbeat more than the id is worth.
fn fresh_request_id() -> HeaderValue {
    static PREFIX: OnceLock<[u8; 32]> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let prefix = PREFIX.get_or_init(|| {
        let mut hex = [0; 32];
        uuid::Uuid::new_v4().simple().encode_lower(&mut hex);
        hex
    });
    request_id(prefix, NEXT.fetch_add(1, Ordering::Relaxed))
}

/// `PREFIX-N`, N in lowercase hex without leading zeros.
fn request_id(prefix: &[u8; 32], n: u64) -> HeaderValue {
    let mut id = [0u8; 32 + 1 + 16];
    id[..32].copy_from_slice(prefix);
    id[32] = b'-';
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(1) as usize;
    for (i, slot) in id[33..33 + digits].iter_mut().enumerate() {
        let nibble = (n >> (4 * (digits - 1 - i))) & 0xf;
        *slot = b"0123456789abcdef"[nibble as usize];
    }
    HeaderValue::from_bytes(&id[..33 + digits]).expect("hex and '-' are header-safe")
}

/// A fixed set of labels: hyper accepts any extension method, and each
/// new label value would be a new series kept forever.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// Whether an answer gets an access-log line. `changes` leaves out what
/// changes nothing and is counted in metrics anyway: renewed heartbeats,
/// successful reads, and throttled requests (a flood would flood the log).
fn logged(mode: AccessLog, method: &str, route: &str, status: StatusCode) -> bool {
    match mode {
        AccessLog::All => true,
        AccessLog::Off => false,
        AccessLog::Changes => {
            let renewal = route == "/streams/{id}/heartbeat" && status == StatusCode::OK;
            let read = (method == "GET" || method == "HEAD") && status.is_success();
            !(renewal || read || status == StatusCode::TOO_MANY_REQUESTS)
        }
    }
}

/// Refuses, on a route that changes state (any method but GET, HEAD,
/// OPTIONS), a `Content-Type` other than JSON, even with an empty body:
/// an HTML form of another site can send `x-www-form-urlencoded`,
/// `multipart/form-data` or `text/plain` without a preflight, and behind a
/// gateway that sets `X-ID` from a cookie it would act for the victim. A
/// request with no `Content-Type` stays fine (a form always sends one).
fn form_safe(req: &Request) -> Result<(), ApiError> {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    match req.headers().get(header::CONTENT_TYPE) {
        None => Ok(()),
        Some(value) if value.to_str().is_ok_and(is_json_content_type) => Ok(()),
        Some(_) => Err(ApiError::UnsupportedMediaType),
    }
}

/// Refuses a body over [`MAX_BODY_BYTES`] on every route, whether or not
/// the route reads one: by its `Content-Length` before reading it, else by
/// reading at most that much of it. Reads every body that is not known to
/// be empty here, within [`BODY_TIMEOUT`] of the headers, so that a client
/// trickling its body cannot hold a connection for longer (hyper bounds
/// only the headers' time). A request without a body — a heartbeat —
/// passes with no timer. What fits goes on to the handler, buffered.
async fn bounded_body(req: Request) -> Result<Request, ApiError> {
    let hint = req.body().size_hint();
    if hint.lower() > MAX_BODY_BYTES as u64 {
        return Err(ApiError::PayloadTooLarge);
    }
    if req.body().is_end_stream() {
        return Ok(req);
    }
    let (parts, body) = req.into_parts();
    let read = http_body_util::Limited::new(body, MAX_BODY_BYTES).collect();
    match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Ok(Ok(collected)) => Ok(Request::from_parts(parts, Body::from(collected.to_bytes()))),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::PayloadTooLarge),
        Ok(Err(e)) => Err(ApiError::InvalidRequest(format!(
            "reading the body failed: {e}"
        ))),
        // hyper closes a connection whose request body was not read to
        // its end once the answer is written.
        Err(_) => Err(ApiError::BodyTimeout),
    }
}

async fn observe(mut req: Request, next: Next, access_log: AccessLog) -> Response {
    let request_id = match req.headers().get(&REQUEST_ID) {
        Some(id) if acceptable_request_id(id) => id.clone(),
        _ => {
            let id = fresh_request_id();
            req.headers_mut().insert(REQUEST_ID, id.clone());
            id
        }
    };
    let mut response =
        crate::telemetry::with_request_id(request_id.clone(), handle(req, next, access_log)).await;
    response.headers_mut().insert(REQUEST_ID, request_id);
    response
}

async fn handle(req: Request, next: Next, access_log: AccessLog) -> Response {
    let started = Instant::now();
    let method = method_label(req.method());
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let checked = match form_safe(&req) {
        Ok(()) => bounded_body(req).await,
        Err(refused) => Err(refused),
    };
    let response = match checked {
        Ok(req) => next.run(req).await,
        Err(refused) => refused.into_response(),
    };

    let latency = started.elapsed();
    let status = response.status();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    crate::telemetry::http_request(method, route, status.as_str(), latency);
    if logged(access_log, method, route, status) {
        tracing::info!(
            target: "streamguard::access",
            method,
            route,
            status = status.as_u16(),
            latency_us = latency.as_micros() as u64,
            "request"
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_request_ids_are_a_prefix_and_a_hex_counter() {
        let prefix = *b"0123456789abcdef0123456789abcdef";
        for n in [0, 1, 0xf, 0x10, 0xabc, 1 << 32, u64::MAX] {
            let id = request_id(&prefix, n);
            assert_eq!(
                id.to_str().unwrap(),
                format!("0123456789abcdef0123456789abcdef-{n:x}")
            );
            assert!(acceptable_request_id(&id));
        }
        let fresh = fresh_request_id();
        let (prefix, n) = fresh.to_str().unwrap().split_once('-').unwrap();
        assert_eq!(prefix.len(), 32);
        assert!(prefix.bytes().all(|c| c.is_ascii_hexdigit()));
        assert!(u64::from_str_radix(n, 16).is_ok());
    }

    #[test]
    fn request_ids_are_short_and_plain() {
        let ok = |s: &str| acceptable_request_id(&HeaderValue::from_str(s).unwrap());
        assert!(ok("abc-123"));
        assert!(ok("Root=1-5759e988-bd862e3fe1be46a994272793"));
        assert!(ok(&"a".repeat(128)));
        assert!(!ok(&"a".repeat(129)));
        assert!(!ok(""));
        assert!(!ok("a b"));
        assert!(!ok("a\"b"));
        assert!(!ok("a{}b"));
    }

    #[test]
    fn changes_mode_leaves_out_renewals_reads_and_floods() {
        let hb = "/streams/{id}/heartbeat";
        let m = AccessLog::Changes;
        assert!(!logged(m, "POST", hb, StatusCode::OK));
        assert!(logged(m, "POST", hb, StatusCode::GONE));
        assert!(!logged(m, "GET", "/streams", StatusCode::OK));
        assert!(logged(
            m,
            "GET",
            "/streams",
            StatusCode::SERVICE_UNAVAILABLE
        ));
        assert!(logged(m, "POST", "/streams", StatusCode::CREATED));
        assert!(logged(m, "POST", "/streams", StatusCode::CONFLICT));
        assert!(logged(m, "DELETE", "/streams/{id}", StatusCode::NO_CONTENT));
        assert!(!logged(m, "POST", hb, StatusCode::TOO_MANY_REQUESTS));
        assert!(logged(AccessLog::All, "POST", hb, StatusCode::OK));
        assert!(!logged(
            AccessLog::Off,
            "POST",
            "/streams",
            StatusCode::CREATED
        ));
    }
}
