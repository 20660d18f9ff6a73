//! A failing or silent store gets a fast 503, or unenforced playback when
//! configured so; never a hang.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::json;
use streamguard::domain::{
    AccountView, EndReason, HeartbeatDecision, Limit, PlanName, ResumeDecision, SecretHash,
    StartDecision, StartRequest, StreamId, UserId,
};
use streamguard::store::{StoreError, StreamStore};

use crate::support::app_with_store;

/// A store that either fails at once or never answers.
pub struct BrokenStore {
    pub hangs: bool,
}

impl BrokenStore {
    async fn fail<T>(&self) -> Result<T, StoreError> {
        if self.hangs {
            std::future::pending::<()>().await;
        }
        Err(StoreError::unavailable("testing", "connection refused"))
    }
}

#[async_trait]
impl StreamStore for BrokenStore {
    async fn start(&self, _: &UserId, _: StartRequest) -> Result<StartDecision, StoreError> {
        self.fail().await
    }
    async fn heartbeat_with(
        &self,
        _: &UserId,
        _: &StreamId,
        _: Option<&SecretHash>,
    ) -> Result<HeartbeatDecision, StoreError> {
        self.fail().await
    }
    async fn resume(&self, _: &UserId, _: StartRequest) -> Result<ResumeDecision, StoreError> {
        self.fail().await
    }
    async fn end(&self, _: &UserId, _: &StreamId, _: EndReason) -> Result<bool, StoreError> {
        self.fail().await
    }
    async fn view(&self, _: &UserId) -> Result<AccountView, StoreError> {
        self.fail().await
    }
    async fn set_limit(&self, _: &UserId, _: Option<Limit>) -> Result<Vec<StreamId>, StoreError> {
        self.fail().await
    }
    async fn set_plan(&self, _: &UserId, _: Option<PlanName>) -> Result<Vec<StreamId>, StoreError> {
        self.fail().await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.fail().await
    }
    async fn close(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_failing_store_is_503_with_retry_after() {
    let app = app_with_store(Arc::new(BrokenStore { hangs: false }), &[]);
    for reply in [
        app.post("/streams").user("u").send().await,
        app.post("/streams/s/heartbeat").user("u").send().await,
        app.delete("/streams/s").user("u").send().await,
        app.get("/streams").user("u").send().await,
        app.get("/readyz").send().await,
    ] {
        reply.problem(503, "store-unavailable");
        assert_eq!(reply.headers["retry-after"], "1");
        assert!(
            !reply.text.contains("connection refused"),
            "internals stay in the log"
        );
    }
    assert_eq!(
        app.get("/healthz").send().await.status,
        200,
        "liveness does not need the store"
    );
}

#[tokio::test]
async fn a_silent_store_is_503_within_the_store_timeout() {
    let app = app_with_store(
        Arc::new(BrokenStore { hangs: true }),
        &["--store-timeout", "50ms"],
    );
    let started = Instant::now();
    let reply = app.post("/streams").user("u").send().await;
    reply.problem(503, "store-unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the request did not hang"
    );
}

#[tokio::test]
async fn allow_mode_lets_playback_go_ahead_unenforced() {
    let app = app_with_store(
        Arc::new(BrokenStore { hangs: false }),
        &["--on-store-error", "allow"],
    );
    let start = app
        .post("/streams")
        .user("u")
        .json(json!({"stream_id": "s1"}))
        .send()
        .await;
    assert_eq!(start.status, 201);
    assert_eq!(start.json()["stream"]["id"], "s1");
    let beat = app.post("/streams/s1/heartbeat").user("u").send().await;
    assert_eq!(beat.status, 200);
    app.get("/streams")
        .user("u")
        .send()
        .await
        .problem(503, "store-unavailable");
    let metrics = app.get("/metrics").send().await.text;
    assert!(
        metrics.contains(r#"streamguard_unenforced_total{op="start"}"#),
        "{metrics}"
    );
}
