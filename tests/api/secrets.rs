//! Lease secrets (a second screen cannot ride on the first one's slot) and
//! resume (a viewer is not stopped because the store forgot its lease).

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use serde_json::{Value, json};
use streamguard::domain::{
    AccountView, EndReason, HeartbeatDecision, Limit, ManualClock, PlanName, Policy,
    ResumeDecision, SecretHash, StartDecision, StartRequest, StreamId, UserId,
};
use streamguard::store::{MemoryStore, StoreError, StreamStore};

use crate::support::{ADMIN_TOKEN, Reply, TestApp, app, app_with_store};
use crate::tokens::{key_path, unb64};

const TV_SECRET: &str = "tv-secret-0123456789abcdefABCDEF";
const PHONE_SECRET: &str = "phone-secret-0123456789abcdefAB";

async fn beat(app: &TestApp, user: &str, id: &str, headers: &[(&str, &str)]) -> Reply {
    let mut call = app.post(&format!("/streams/{id}/heartbeat")).user(user);
    for (name, value) in headers {
        call = call.header(name, value);
    }
    call.send().await
}

#[tokio::test]
async fn a_second_screen_cannot_ride_on_the_first_ones_slot() {
    let app = app(&[
        "--admin-token",
        ADMIN_TOKEN,
        "--grant-key",
        key_path("grant-p256.pem").to_str().unwrap(),
    ])
    .await;
    app.put("/admin/users/u/limit")
        .admin()
        .json(json!({"limit": 1}))
        .send()
        .await;
    let tv = app
        .post("/streams")
        .user("u")
        .json(
            json!({"stream_id": "tv-1", "device_id": "tv-A", "content_id": "movie-1",
            "lease_secret": TV_SECRET}),
        )
        .send()
        .await;
    assert_eq!(tv.status, 201, "{}", tv.text);
    assert!(!tv.text.contains(TV_SECRET), "the secret is never shown");
    // The phone is refused, and learns the TV's stream and device ids.
    let refused = app
        .post("/streams")
        .user("u")
        .json(json!({"device_id": "phone-B", "lease_secret": PHONE_SECRET}))
        .send()
        .await;
    let body = refused.problem(409, "stream-limit-reached");
    assert_eq!(body["streams"][0]["id"], "tv-1");
    assert!(!refused.text.contains(TV_SECRET));
    // It cannot heartbeat the TV's lease, nor retry its start, to get a grant.
    for headers in [
        vec![],
        vec![("streamguard-lease-secret", PHONE_SECRET)],
        vec![("streamguard-lease-secret", "not a secret")],
    ] {
        let r = beat(&app, "u", "tv-1", &headers).await;
        r.problem(404, "stream-not-found");
        assert!(!r.text.contains("grant"));
    }
    for secret in [None, Some(PHONE_SECRET)] {
        let mut body = json!({"stream_id": "tv-1", "device_id": "tv-A", "content_id": "movie-1"});
        if let Some(s) = secret {
            body["lease_secret"] = json!(s);
        }
        app.post("/streams")
            .user("u")
            .json(body)
            .send()
            .await
            .problem(409, "stream-id-conflict");
    }
    // The TV itself goes on; its retry with the secret is idempotent.
    let r = beat(
        &app,
        "u",
        "tv-1",
        &[("streamguard-lease-secret", TV_SECRET)],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.json()["grant"].is_string());
    let retry = app
        .post("/streams")
        .user("u")
        .json(
            json!({"stream_id": "tv-1", "device_id": "tv-A", "content_id": "movie-1",
            "lease_secret": TV_SECRET}),
        )
        .send()
        .await;
    assert_eq!(retry.status, 200);
    // Listings never show it; stopping another device needs no secret.
    let list = app.get("/streams").user("u").send().await;
    assert!(!list.text.contains(TV_SECRET) && !list.text.contains("secret"));
    assert_eq!(
        app.delete("/streams/tv-1").user("u").send().await.status,
        204
    );
}

#[tokio::test]
async fn lease_secrets_are_checked_and_may_be_required() {
    let app = app(&[]).await;
    for bad in ["short", "has spaces in it 0123456789", &"x".repeat(129)] {
        let body = app
            .post("/streams")
            .user("u")
            .json(json!({"lease_secret": bad}))
            .send()
            .await
            .problem(400, "invalid-request");
        assert!(body["detail"].as_str().unwrap().starts_with("lease_secret"));
        assert!(!body.to_string().contains(bad));
    }
    assert!(app.live("u").await.is_empty());
    let strict = crate::support::app(&["--require-lease-secret"]).await;
    strict
        .post("/streams")
        .user("u")
        .send()
        .await
        .problem(400, "invalid-request");
    let r = strict
        .post("/streams")
        .user("u")
        .json(json!({"lease_secret": TV_SECRET}))
        .send()
        .await;
    assert_eq!(r.status, 201);
}

/// A store that can forget everything at once, as a Redis restarted
/// without persistence would.
struct Forgetful {
    store: RwLock<Arc<MemoryStore>>,
    /// The app's clock, once the app exists: grants and leases agree.
    clock: RwLock<ManualClock>,
}

impl Forgetful {
    fn new() -> Arc<Self> {
        let clock = crate::support::clock();
        Arc::new(Self {
            store: RwLock::new(Self::fresh(&clock)),
            clock: RwLock::new(clock),
        })
    }
    fn fresh(clock: &ManualClock) -> Arc<MemoryStore> {
        let policy = Policy {
            default_limit: Limit::new(2).unwrap(),
            ..Policy::default()
        };
        MemoryStore::open(policy, Arc::new(clock.clone()))
    }
    fn use_clock(&self, clock: ManualClock) {
        *self.clock.write().unwrap() = clock;
        self.forget();
    }
    fn forget(&self) {
        let fresh = Self::fresh(&self.clock.read().unwrap());
        *self.store.write().unwrap() = fresh;
    }
    fn inner(&self) -> Arc<MemoryStore> {
        self.store.read().unwrap().clone()
    }
}

#[async_trait]
impl StreamStore for Forgetful {
    async fn start(&self, u: &UserId, r: StartRequest) -> Result<StartDecision, StoreError> {
        self.inner().start(u, r).await
    }
    async fn heartbeat_with(
        &self,
        u: &UserId,
        s: &StreamId,
        k: Option<&SecretHash>,
    ) -> Result<HeartbeatDecision, StoreError> {
        self.inner().heartbeat_with(u, s, k).await
    }
    async fn resume(&self, u: &UserId, r: StartRequest) -> Result<ResumeDecision, StoreError> {
        self.inner().resume(u, r).await
    }
    async fn end(&self, u: &UserId, s: &StreamId, r: EndReason) -> Result<bool, StoreError> {
        self.inner().end(u, s, r).await
    }
    async fn view(&self, u: &UserId) -> Result<AccountView, StoreError> {
        self.inner().view(u).await
    }
    async fn set_limit(&self, u: &UserId, l: Option<Limit>) -> Result<Vec<StreamId>, StoreError> {
        self.inner().set_limit(u, l).await
    }
    async fn set_plan(&self, u: &UserId, p: Option<PlanName>) -> Result<Vec<StreamId>, StoreError> {
        self.inner().set_plan(u, p).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
    async fn close(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// An app on a store that can forget; both read the app's clock.
fn resuming() -> (TestApp, Arc<Forgetful>) {
    let store = Forgetful::new();
    let key = key_path("grant-p256.pem");
    let app = app_with_store(
        store.clone(),
        &["--grant-key", key.to_str().unwrap(), "--default-limit", "2"],
    );
    store.use_clock(app.clock.clone());
    (app, store)
}

async fn start(app: &TestApp, user: &str, id: &str) -> Value {
    let r = app
        .post("/streams")
        .user(user)
        .json(
            json!({"stream_id": id, "device_id": format!("{id}-box"), "content_id": "match-7",
            "tags": {"channel": "eurosport"}, "lease_secret": TV_SECRET}),
        )
        .send()
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()
}

#[tokio::test]
async fn a_stream_the_store_forgot_resumes_from_its_grant() {
    let (app, store) = resuming();
    let grant = start(&app, "u", "tv").await["grant"]
        .as_str()
        .unwrap()
        .to_owned();
    store.forget();
    // Without its grant, the heartbeat is 404 as before.
    beat(&app, "u", "tv", &[("streamguard-lease-secret", TV_SECRET)])
        .await
        .problem(404, "stream-not-found");
    let r = beat(
        &app,
        "u",
        "tv",
        &[
            ("streamguard-lease-secret", TV_SECRET),
            ("streamguard-grant", &grant),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let body = r.json();
    assert_eq!(body["resumed"], true);
    assert_eq!(body["stream"]["device_id"], "tv-box");
    assert_eq!(body["stream"]["content_id"], "match-7");
    assert_eq!(body["stream"]["tags"]["channel"], "eurosport");
    assert_ne!(body["grant"].as_str().unwrap(), grant, "a new grant");
    // Resumed, the lease is bound to the same secret.
    beat(&app, "u", "tv", &[])
        .await
        .problem(404, "stream-not-found");
    let again = beat(&app, "u", "tv", &[("streamguard-lease-secret", TV_SECRET)]).await;
    assert_eq!(again.status, 200);
    assert!(again.json().get("resumed").is_none(), "a plain renewal");
    let metrics = app.get("/metrics").send().await.text;
    assert!(
        metrics.contains(r#"streamguard_resumed_total{outcome="resumed"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_grant_resumes_only_its_own_stream_for_its_own_account_and_secret() {
    let (app, store) = resuming();
    let grant = start(&app, "u", "tv").await["grant"]
        .as_str()
        .unwrap()
        .to_owned();
    store.forget();
    let mut tampered: Vec<&str> = grant.split('.').collect();
    let mut claims: Value = serde_json::from_slice(&unb64(tampered[1])).unwrap();
    claims["sid"] = json!("other");
    let forged_payload = base64_url(&serde_json::to_vec(&claims).unwrap());
    tampered[1] = &forged_payload;
    let forged = tampered.join(".");
    for (user, id, headers) in [
        (
            "u",
            "other",
            vec![
                ("streamguard-lease-secret", TV_SECRET),
                ("streamguard-grant", grant.as_str()),
            ],
        ),
        (
            "mallory",
            "tv",
            vec![
                ("streamguard-lease-secret", TV_SECRET),
                ("streamguard-grant", grant.as_str()),
            ],
        ),
        ("u", "tv", vec![("streamguard-grant", grant.as_str())]),
        (
            "u",
            "tv",
            vec![
                ("streamguard-lease-secret", PHONE_SECRET),
                ("streamguard-grant", grant.as_str()),
            ],
        ),
        (
            "u",
            "other",
            vec![
                ("streamguard-lease-secret", TV_SECRET),
                ("streamguard-grant", forged.as_str()),
            ],
        ),
        (
            "u",
            "tv",
            vec![
                ("streamguard-lease-secret", TV_SECRET),
                ("streamguard-grant", "garbage"),
            ],
        ),
    ] {
        beat(&app, user, id, &headers)
            .await
            .problem(404, "stream-not-found");
    }
    assert!(app.live("u").await.is_empty() && app.live("mallory").await.is_empty());
    // An expired grant resumes nothing either.
    app.clock.advance(std::time::Duration::from_secs(91));
    beat(
        &app,
        "u",
        "tv",
        &[
            ("streamguard-lease-secret", TV_SECRET),
            ("streamguard-grant", &grant),
        ],
    )
    .await
    .problem(404, "stream-not-found");
    assert!(app.live("u").await.is_empty());
}

#[tokio::test]
async fn a_resume_never_exceeds_the_limit_nor_revives_an_ended_stream() {
    let (app, store) = resuming();
    let grant = start(&app, "u", "tv").await["grant"]
        .as_str()
        .unwrap()
        .to_owned();
    let headers = [
        ("streamguard-lease-secret", TV_SECRET),
        ("streamguard-grant", grant.as_str()),
    ];
    store.forget();
    // Two other screens took the slots meanwhile: no room, 409 like a start.
    start(&app, "u", "a").await;
    start(&app, "u", "b").await;
    let body = beat(&app, "u", "tv", &headers)
        .await
        .problem(409, "stream-limit-reached");
    assert_eq!(body["rule"], "account");
    assert_eq!(app.live("u").await.len(), 2);
    // A stream the store remembers as ended stays ended, grant or not.
    let r = app
        .post("/streams")
        .user("u")
        .json(json!({"terminate": ["a"], "stream_id": "c"}))
        .send()
        .await;
    assert_eq!(r.status, 201);
    let grant_a = {
        store.forget();
        start(&app, "u", "a").await["grant"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    app.delete("/streams/a").user("u").send().await;
    let r = beat(
        &app,
        "u",
        "a",
        &[
            ("streamguard-lease-secret", TV_SECRET),
            ("streamguard-grant", &grant_a),
        ],
    )
    .await;
    assert_eq!(r.problem(410, "stream-ended")["reason"], "stopped");
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
