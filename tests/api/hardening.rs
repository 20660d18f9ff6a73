//! Abuse limits and untrusted input: floods get 429 before the store is
//! asked, request ids and identities are bounded, bodies are capped on
//! every route, and `/readyz` turns 503 while draining.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use axum::http::Method;
use serde_json::json;
use streamguard::domain::{
    AccountView, EndReason, HeartbeatDecision, Limit, PlanName, ResumeDecision, SecretHash,
    StartDecision, StartRequest, StreamId, UserId,
};
use streamguard::store::{StoreError, StreamStore};

use crate::support::{app, app_with_store};

/// A memory store that counts the calls that reach it.
struct Counting {
    inner: Arc<dyn StreamStore>,
    calls: AtomicUsize,
}

impl Counting {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
    fn count(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl StreamStore for Counting {
    async fn start(&self, u: &UserId, r: StartRequest) -> Result<StartDecision, StoreError> {
        self.count();
        self.inner.start(u, r).await
    }
    async fn heartbeat_with(
        &self,
        u: &UserId,
        s: &StreamId,
        k: Option<&SecretHash>,
    ) -> Result<HeartbeatDecision, StoreError> {
        self.count();
        self.inner.heartbeat_with(u, s, k).await
    }
    async fn resume(&self, u: &UserId, r: StartRequest) -> Result<ResumeDecision, StoreError> {
        self.count();
        self.inner.resume(u, r).await
    }
    async fn end(&self, u: &UserId, s: &StreamId, r: EndReason) -> Result<bool, StoreError> {
        self.count();
        self.inner.end(u, s, r).await
    }
    async fn view(&self, u: &UserId) -> Result<AccountView, StoreError> {
        self.count();
        self.inner.view(u).await
    }
    async fn set_limit(&self, u: &UserId, l: Option<Limit>) -> Result<Vec<StreamId>, StoreError> {
        self.count();
        self.inner.set_limit(u, l).await
    }
    async fn set_plan(&self, u: &UserId, p: Option<PlanName>) -> Result<Vec<StreamId>, StoreError> {
        self.count();
        self.inner.set_plan(u, p).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn close(&self) -> Result<(), StoreError> {
        self.inner.close().await
    }
}

async fn counting(args: &[&str]) -> (crate::support::TestApp, Arc<Counting>) {
    let inner = app(&[]).await.state.store.clone();
    let store = Arc::new(Counting {
        inner,
        calls: AtomicUsize::new(0),
    });
    (app_with_store(store.clone(), args), store)
}

#[tokio::test]
async fn a_heartbeat_flood_gets_429_before_the_store_is_asked() {
    let (app, store) = counting(&[]).await;
    app.post("/streams")
        .user("flood")
        .json(json!({"stream_id": "tv"}))
        .send()
        .await;
    let before = store.calls();
    let mut ok = 0;
    let mut throttled = 0;
    for _ in 0..400 {
        let reply = app.post("/streams/tv/heartbeat").user("flood").send().await;
        match reply.status.as_u16() {
            200 => ok += 1,
            429 => {
                let body = reply.problem(429, "rate-limited");
                assert!(body["detail"].as_str().unwrap().contains("retry"));
                let wait: u64 = reply.headers["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=2).contains(&wait), "Retry-After {wait}");
                throttled += 1;
            }
            other => panic!("{other}: {}", reply.text),
        }
    }
    assert!(throttled >= 350, "{ok} renewed, {throttled} throttled");
    assert_eq!(
        store.calls() - before,
        ok,
        "only the requests that passed reached the store"
    );
    // Another stream of another account is not affected.
    app.post("/streams")
        .user("neighbour")
        .json(json!({"stream_id": "tv"}))
        .send()
        .await;
    let reply = app
        .post("/streams/tv/heartbeat")
        .user("neighbour")
        .send()
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let metrics = app.get("/metrics").send().await.text;
    assert!(
        metrics.contains("streamguard_throttled_total{scope=\"stream\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_live_streams_flood_is_cut_by_the_pace_kept_in_its_lease() {
    let app = app(&[]).await;
    for stream in ["tv", "phone"] {
        let reply = app
            .post("/streams")
            .user("flood")
            .json(json!({ "stream_id": stream }))
            .send()
            .await;
        assert_eq!(reply.status, 201, "{}", reply.text);
    }
    let mut statuses = Vec::new();
    for _ in 0..200 {
        let reply = app.post("/streams/tv/heartbeat").user("flood").send().await;
        statuses.push(reply.status.as_u16());
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert!((10..=12).contains(&ok), "{statuses:?}");
    assert_eq!(ok + statuses.iter().filter(|s| **s == 429).count(), 200);
    let reply = app
        .post("/streams/phone/heartbeat")
        .user("flood")
        .send()
        .await;
    assert_eq!(reply.status, 200, "another stream has its own pace");
    assert_eq!(
        app.state.ops.throttle.len(),
        1,
        "only the first start, before the account existed, was counted outside it"
    );
}

#[tokio::test]
async fn a_burst_of_100_starts_reaches_the_store_and_the_limit_decides() {
    let (app, store) = counting(&[]).await;
    // Concurrently, as players of one account starting at once would.
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let router = app.router.clone();
            tokio::spawn(async move {
                use tower::ServiceExt;
                let request = axum::http::Request::post("/streams")
                    .header("x-id", "burst")
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(
                        json!({"stream_id": format!("s{i}")}).to_string(),
                    ))
                    .unwrap();
                router.oneshot(request).await.unwrap().status().as_u16()
            })
        })
        .collect();
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.unwrap());
    }
    assert_eq!(store.calls(), 100, "every start reached the store");
    assert_eq!(replies.iter().filter(|s| **s == 201).count(), 3);
    assert_eq!(replies.iter().filter(|s| **s == 409).count(), 97);
}

#[tokio::test]
async fn throttles_can_be_tuned_and_turned_off() {
    let (app, store) = counting(&["--rate-per-stream", "0", "--rate-per-account", "0"]).await;
    for _ in 0..500 {
        let reply = app.post("/streams/x/heartbeat").user("free").send().await;
        assert_eq!(reply.status, 404);
    }
    assert_eq!(store.calls(), 500);

    let (app, store) = counting(&["--rate-per-account", "5"]).await;
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..20 {
            v.push(
                app.get("/streams")
                    .user("tight")
                    .send()
                    .await
                    .status
                    .as_u16(),
            );
        }
        v
    };
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(store.calls(), 5);
    assert!(app.post("/streams").user("tight").send().await.status == 429);
}

#[tokio::test]
async fn request_ids_are_kept_only_when_short_and_plain() {
    let app = app(&[]).await;
    let kept = app
        .get("/healthz")
        .header("x-request-id", "trace-42.a:b")
        .send()
        .await;
    assert_eq!(kept.headers["x-request-id"], "trace-42.a:b");

    for bad in [
        "x".repeat(129),
        "x".repeat(400_000),
        "a b".into(),
        "{\"a\":1}".into(),
    ] {
        let reply = app
            .get("/healthz")
            .header("x-request-id", &bad)
            .send()
            .await;
        let id = reply.headers["x-request-id"].to_str().unwrap();
        assert_ne!(id, bad);
        assert!(id.len() <= 64 && !id.is_empty(), "{id}");
    }
    let fresh = app.get("/healthz").send().await;
    assert!(!fresh.headers["x-request-id"].is_empty());
}

#[tokio::test]
async fn two_x_id_headers_are_refused() {
    let (app, store) = counting(&[]).await;
    for (method, path) in [
        (Method::GET, "/streams"),
        (Method::POST, "/streams"),
        (Method::POST, "/streams/s/heartbeat"),
        (Method::DELETE, "/streams/s"),
    ] {
        app.call(method, path)
            .user("alice")
            .user("bob")
            .send()
            .await
            .problem(400, "invalid-request");
    }
    assert_eq!(store.calls(), 0);
}

#[tokio::test]
async fn bodies_over_16_kib_are_refused_on_every_route() {
    let (app, store) = counting(&["--admin-token", crate::support::ADMIN_TOKEN]).await;
    let big = "x".repeat(16 * 1024 + 1);
    for (method, path) in [
        (Method::GET, "/streams"),
        (Method::POST, "/streams"),
        (Method::POST, "/streams/s/heartbeat"),
        (Method::DELETE, "/streams/s"),
        (Method::GET, "/healthz"),
        (Method::GET, "/nowhere"),
        (Method::PUT, "/admin/users/u/limit"),
    ] {
        app.call(method, path)
            .user("u")
            .admin()
            .header("content-length", &big.len().to_string())
            .raw("application/json", big.clone())
            .send()
            .await
            .problem(413, "payload-too-large");
    }
    assert_eq!(store.calls(), 0);
}

/// A body sent in chunks, with no `Content-Length`: its size is unknown
/// until it has been read.
struct Chunked(std::collections::VecDeque<axum::body::Bytes>);

impl hyper::body::Body for Chunked {
    type Data = axum::body::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|c| Ok(hyper::body::Frame::data(c))))
    }
}

fn chunked(total: usize, chunk: usize) -> axum::body::Body {
    let bytes = axum::body::Bytes::from(vec![b' '; total]);
    let chunks = (0..total).step_by(chunk);
    let chunks = chunks.map(|at| bytes.slice(at..(at + chunk).min(total)));
    axum::body::Body::new(Chunked(chunks.collect()))
}

#[tokio::test]
async fn chunked_bodies_over_16_kib_are_refused_on_every_route() {
    let (app, store) = counting(&["--admin-token", crate::support::ADMIN_TOKEN]).await;
    for (method, path) in [
        (Method::POST, "/streams"),
        (Method::POST, "/streams/s/heartbeat"),
        (Method::DELETE, "/streams/s"),
        (Method::GET, "/"),
        (Method::GET, "/nowhere"),
        (Method::PUT, "/admin/users/u/limit"),
    ] {
        app.call(method, path)
            .user("u")
            .admin()
            .raw("application/json", chunked(16 * 1024 + 1, 1000))
            .send()
            .await
            .problem(413, "payload-too-large");
    }
    assert_eq!(store.calls(), 0);

    // Up to the limit, a chunked body reaches the handler whole.
    let mut body = br#"{"stream_id": "tv"}"#.to_vec();
    body.resize(16 * 1024, b' ');
    let parts = body.chunks(1000).map(axum::body::Bytes::copy_from_slice);
    let started = app
        .post("/streams")
        .user("u")
        .raw(
            "application/json",
            axum::body::Body::new(Chunked(parts.collect())),
        )
        .send()
        .await;
    assert_eq!(started.status, 201, "{}", started.text);
    assert_eq!(started.json()["stream"]["id"], "tv");
}

#[tokio::test]
async fn readyz_turns_503_when_draining_starts() {
    let app = app(&[]).await;
    assert_eq!(app.get("/readyz").send().await.status, 200);
    app.state.ops.start_draining();
    app.get("/readyz").send().await.problem(503, "draining");
    assert_eq!(app.get("/healthz").send().await.status, 200);
}

#[tokio::test]
async fn metrics_have_help_and_build_info() {
    let app = app(&[]).await;
    app.post("/streams").user("m").send().await;
    let text = app.get("/metrics").send().await.text;
    assert!(text.contains("streamguard_build_info{"), "{text}");
    assert!(
        text.contains("# HELP process_resident_memory_bytes"),
        "{text}"
    );
    for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
        let name = line.split_whitespace().nth(2).unwrap();
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} has no HELP"
        );
    }
}

#[tokio::test]
async fn with_metrics_listen_the_api_port_has_no_metrics() {
    let app = app(&["--metrics-listen", "127.0.0.1:0"]).await;
    app.get("/metrics").send().await.problem(404, "not-found");
}

/// Log lines as the JSON formatter writes them.
#[derive(Clone, Default)]
struct Lines(Arc<std::sync::Mutex<Vec<u8>>>);

impl Lines {
    /// Captures, on this thread, what the service logs as JSON lines.
    ///
    /// `tracing` decides once per process whether a log statement is
    /// wanted at all, when some thread first reaches it. While only one
    /// subscriber exists, it asks the subscriber of that thread: another
    /// test, without one, reaching "store call failed" first made it a
    /// no-op for this one too (a flaky failure). A second subscriber kept
    /// alive meanwhile makes `tracing` ask every subscriber instead.
    fn capture() -> (Self, Capturing) {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .event_format(streamguard::telemetry::WithRequestId::json())
            .with_writer(move || writer.clone())
            .finish();
        let anchor = tracing::Dispatch::new(tracing_subscriber::registry());
        let default = tracing::subscriber::set_default(subscriber);
        (
            lines,
            Capturing {
                _default: default,
                _anchor: anchor,
            },
        )
    }
}

/// Captures until dropped (see [`Lines::capture`]).
struct Capturing {
    _default: tracing::subscriber::DefaultGuard,
    _anchor: tracing::Dispatch,
}

impl std::io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn every_line_logged_for_a_request_carries_its_id() {
    let (lines, _capturing) = Lines::capture();

    let broken = Arc::new(crate::store_failure::BrokenStore { hangs: false });
    let app = app_with_store(broken, &["--on-store-error", "allow"]);
    let reply = app
        .post("/streams")
        .user("u")
        .header("x-request-id", "corr-7")
        .send()
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    tracing::info!("outside any request");

    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let logs: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let messages: Vec<&str> = logs
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    for wanted in [
        "store call failed",
        "store unavailable: allowing playback unenforced",
        "request",
    ] {
        let line = logs
            .iter()
            .find(|l| l["message"] == wanted)
            .unwrap_or_else(|| panic!("no {wanted:?} in {messages:?}"));
        assert_eq!(line["request_id"], "corr-7", "{line}");
    }
    let outside = logs
        .iter()
        .find(|l| l["message"] == "outside any request")
        .unwrap();
    assert!(outside.get("request_id").is_none(), "{outside}");
}

/// With `--on-store-error allow`, each "unenforced" line names the
/// account and the stream, so an operator can tell who played unchecked.
#[tokio::test]
async fn unenforced_lines_name_the_account_and_the_stream() {
    let (lines, _capturing) = Lines::capture();

    let broken = Arc::new(crate::store_failure::BrokenStore { hangs: false });
    let app = app_with_store(broken, &["--on-store-error", "allow"]);
    let start = app
        .post("/streams")
        .user("acct-9")
        .json(json!({"stream_id": "tv"}))
        .send()
        .await;
    assert_eq!(start.status, 201, "{}", start.text);
    let beat = app
        .post("/streams/tv/heartbeat")
        .user("acct-9")
        .send()
        .await;
    assert_eq!(beat.status, 200, "{}", beat.text);

    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let unenforced: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["message"] == "store unavailable: allowing playback unenforced")
        .collect();
    assert_eq!(unenforced.len(), 2, "{text}");
    for (line, op) in unenforced.iter().zip(["start", "heartbeat"]) {
        assert_eq!(line["op"], op, "{line}");
        assert_eq!(line["user_id"], "acct-9", "{line}");
        assert_eq!(line["stream_id"], "tv", "{line}");
    }
}

#[tokio::test]
async fn in_jwt_mode_the_throttle_counts_the_tokens_account() {
    use crate::tokens::{SECRET, claims, hs256};
    let app = app(&[
        "--auth",
        "jwt",
        "--jwt-secret",
        SECRET,
        "--rate-per-account",
        "5",
    ])
    .await;
    let alice = hs256(claims("alice"));
    let mut statuses = Vec::new();
    for i in 0..10 {
        // A different X-ID each time changes nothing: X-ID is ignored.
        let reply = app
            .get("/streams")
            .bearer(&alice)
            .user(&format!("decoy-{i}"))
            .send()
            .await;
        statuses.push(reply.status.as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        5,
        "{statuses:?}"
    );
    let bob = hs256(claims("bob"));
    assert_eq!(app.get("/streams").bearer(&bob).send().await.status, 200);
}
