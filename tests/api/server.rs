//! The router served on a real socket (port 0): end to end, and draining
//! in-flight requests on shutdown.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use streamguard::domain::{
    AccountView, EndReason, HeartbeatDecision, Limit, PlanName, ResumeDecision, SecretHash,
    StartDecision, StartRequest, StreamId, UserId,
};
use streamguard::store::{StoreError, StreamStore};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::support::{app, app_with_store};

async fn serve(
    state: streamguard::AppState,
) -> (
    String,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = streamguard::Serving::new(&streamguard::Config::for_tests());
    let server = tokio::spawn(streamguard::serve(listener, state, serving, async {
        let _ = stopped.await;
    }));
    (base, stop, server)
}

#[tokio::test]
async fn start_heartbeat_stop_over_http() {
    let app = app(&["--default-limit", "1"]).await;
    let (base, stop, server) = serve(app.state.clone()).await;
    let http = reqwest::Client::new();

    let start = http
        .post(format!("{base}/streams"))
        .header("x-id", "e2e")
        .json(&json!({"stream_id": "s"}))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 201);
    let location = start.headers()["location"].to_str().unwrap().to_owned();

    let full = http
        .post(format!("{base}/streams"))
        .header("x-id", "e2e")
        .send()
        .await
        .unwrap();
    assert_eq!(full.status(), 409);
    assert_eq!(full.headers()["content-type"], "application/problem+json");

    let beat = http
        .post(format!("{base}{location}/heartbeat"))
        .header("x-id", "e2e")
        .send()
        .await
        .unwrap();
    assert_eq!(beat.status(), 200);
    let body: Value = beat.json().await.unwrap();
    assert_eq!(body["stream"]["id"], "s");

    let gone = http
        .delete(format!("{base}{location}"))
        .header("x-id", "e2e")
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 204);

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// A memory store that takes its time over starts, and says when one has
/// begun.
struct SlowStore(Arc<dyn StreamStore>, Arc<tokio::sync::Notify>);

#[async_trait]
impl StreamStore for SlowStore {
    async fn start(&self, u: &UserId, r: StartRequest) -> Result<StartDecision, StoreError> {
        self.1.notify_one();
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.0.start(u, r).await
    }
    async fn heartbeat_with(
        &self,
        u: &UserId,
        s: &StreamId,
        k: Option<&SecretHash>,
    ) -> Result<HeartbeatDecision, StoreError> {
        self.0.heartbeat_with(u, s, k).await
    }
    async fn resume(&self, u: &UserId, r: StartRequest) -> Result<ResumeDecision, StoreError> {
        self.0.resume(u, r).await
    }
    async fn end(&self, u: &UserId, s: &StreamId, r: EndReason) -> Result<bool, StoreError> {
        self.0.end(u, s, r).await
    }
    async fn view(&self, u: &UserId) -> Result<AccountView, StoreError> {
        self.0.view(u).await
    }
    async fn set_limit(&self, u: &UserId, l: Option<Limit>) -> Result<Vec<StreamId>, StoreError> {
        self.0.set_limit(u, l).await
    }
    async fn set_plan(&self, u: &UserId, p: Option<PlanName>) -> Result<Vec<StreamId>, StoreError> {
        self.0.set_plan(u, p).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.0.ping().await
    }
    async fn close(&self) -> Result<(), StoreError> {
        self.0.close().await
    }
}

#[tokio::test]
async fn shutdown_drains_requests_in_flight() {
    let inner = app(&[]).await.state.store.clone();
    let started = Arc::new(tokio::sync::Notify::new());
    let app = app_with_store(
        Arc::new(SlowStore(inner, started.clone())),
        &["--store-timeout", "5s"],
    );
    let (base, stop, server) = serve(app.state.clone()).await;

    let in_flight = tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("{base}/streams"))
            .header("x-id", "drain")
            .send()
            .await
    });
    // Shut down once the request is inside the store, not after a guess.
    started.notified().await;
    stop.send(()).unwrap();

    let reply = in_flight
        .await
        .unwrap()
        .expect("the in-flight request completes");
    assert_eq!(reply.status(), 201);
    server.await.unwrap().unwrap();
    assert_eq!(app.live("drain").await.len(), 1);
}
