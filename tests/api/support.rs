//! Drives the real router in-process, with a clock the test moves.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use clap::Parser;
use http_body_util::BodyExt;
use serde_json::Value;
use streamguard::config::Cli;
use streamguard::domain::{ManualClock, Timestamp};
use streamguard::store::StreamStore;
use streamguard::{AppState, Config};
use tower::ServiceExt;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

pub struct TestApp {
    pub router: Router,
    pub clock: ManualClock,
    pub state: AppState,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {:?}", self.text))
    }

    pub fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Asserts an RFC 9457 problem of `status` and `slug`; returns its body.
    pub fn problem(&self, status: u16, slug: &str) -> Value {
        assert_eq!(self.status.as_u16(), status, "{}", self.text);
        assert_eq!(self.content_type(), "application/problem+json");
        let body = self.json();
        assert_eq!(body["type"], format!("urn:streamguard:problem:{slug}"));
        assert_eq!(body["status"], status);
        assert!(body["title"].is_string() && body["detail"].is_string());
        body
    }
}

/// A generous store timeout for every test whose subject is not the
/// timeout: on a busy 2-core machine a task can wait longer than the
/// default 250 ms for a core. Tests of the timeout pass their own.
const GENEROUS_STORE_TIMEOUT: [&str; 2] = ["--store-timeout", "10s"];

pub fn config(args: &[&str]) -> Config {
    let base = [
        "streamguard",
        "--store",
        "memory",
        "--listen",
        "127.0.0.1:0",
    ];
    let timeout: &[&str] = if args.contains(&"--store-timeout") {
        &[]
    } else {
        &GENEROUS_STORE_TIMEOUT
    };
    Cli::try_parse_from(base.iter().chain(timeout).chain(args))
        .unwrap()
        .config
}

pub fn clock() -> ManualClock {
    ManualClock::new(Timestamp::from_millis(1_800_000_000_000))
}

/// An app on the memory store, configured by extra flags.
pub async fn app(args: &[&str]) -> TestApp {
    let clock = clock();
    let state = streamguard::app_state(&config(args), Arc::new(clock.clone()))
        .await
        .unwrap();
    TestApp {
        router: streamguard::router(state.clone()),
        clock,
        state,
    }
}

/// An app whose store is `store`, configured by extra flags.
pub fn app_with_store(store: Arc<dyn StreamStore>, args: &[&str]) -> TestApp {
    let config = config(args);
    let clock = clock();
    let state = AppState::new(streamguard::http::Shared {
        store,
        policy: config.policy(),
        plans_file: None,
        plan_header: None,
        require_lease_secret: config.require_lease_secret,
        auth: streamguard::auth::Authenticator::Header,
        grants: config
            .grant_key
            .as_ref()
            .map(|key| streamguard::grant::GrantSigner::load(key).unwrap()),
        clock: Arc::new(clock.clone()),
        admin_token: config.admin_token.clone(),
        store_timeout: config.store_timeout,
        on_store_error: config.on_store_error,
        metrics: streamguard::telemetry::metrics_handle(),
        ops: config.ops(),
    });
    TestApp {
        router: streamguard::router(state.clone()),
        clock,
        state,
    }
}

/// A request being built.
pub struct Call<'a> {
    app: &'a TestApp,
    request: axum::http::request::Builder,
    body: Body,
}

impl TestApp {
    pub fn call(&self, method: Method, path: &str) -> Call<'_> {
        Call {
            app: self,
            request: Request::builder().method(method).uri(path),
            body: Body::empty(),
        }
    }

    pub fn get(&self, path: &str) -> Call<'_> {
        self.call(Method::GET, path)
    }

    pub fn post(&self, path: &str) -> Call<'_> {
        self.call(Method::POST, path)
    }

    pub fn delete(&self, path: &str) -> Call<'_> {
        self.call(Method::DELETE, path)
    }

    pub fn put(&self, path: &str) -> Call<'_> {
        self.call(Method::PUT, path)
    }

    /// Live stream ids of `user`, read straight from the store.
    pub async fn live(&self, user: &str) -> Vec<String> {
        let user = streamguard::domain::UserId::parse(user).unwrap();
        let view = self.state.store.view(&user).await.unwrap();
        view.live.iter().map(|s| s.id.to_string()).collect()
    }
}

impl Call<'_> {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.request = self.request.header(name, value);
        self
    }

    pub fn user(self, user: &str) -> Self {
        self.header("x-id", user)
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    pub fn admin(self) -> Self {
        self.header("authorization", &format!("Bearer {ADMIN_TOKEN}"))
    }

    pub fn json(mut self, body: Value) -> Self {
        self.request = self.request.header("content-type", "application/json");
        self.body = Body::from(body.to_string());
        self
    }

    pub fn raw(mut self, content_type: &str, body: impl Into<Body>) -> Self {
        self.request = self.request.header("content-type", content_type);
        self.body = body.into();
        self
    }

    pub async fn send(self) -> Reply {
        let request = self.request.body(self.body).unwrap();
        let response = self.app.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }
}
