//! The HTTP API: routes, extractors, JSON shapes and error answers.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::Authenticator;
use crate::domain::{Clock, Policy, StreamId, UserId};
use crate::grant::GrantSigner;
use crate::secret::Secret;
use crate::store::{StoreError, StreamStore};

mod admin;
mod admin_plan;
mod answer;
pub mod bearer;
mod console;
mod cors;
pub mod dto;
mod edge;
mod error;
mod extract;
mod middleware;
mod openapi;
mod ops;
mod resume;
pub mod routes;
mod streams;
pub mod throttle;

pub use error::{ApiError, Problem};
pub use middleware::acceptable_request_id;
pub use routes::document;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// A request's body must have arrived whole this long after its headers;
/// a slower one gets 408 and its connection is closed.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// `--access-log`: which requests are logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AccessLog {
    /// Every request.
    All,
    /// Requests that changed or were refused something: not renewed
    /// heartbeats nor successful reads (those are counted in metrics).
    Changes,
    Off,
}

/// `--on-store-error`: what a request gets when the store fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnStoreError {
    /// Answer 503 with Retry-After.
    Deny,
    /// Let playback go ahead, log it and count it as unenforced.
    Allow,
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub store: Arc<dyn StreamStore>,
    pub policy: Policy,
    /// The `--plans` file, followed while the service runs.
    pub plans_file: Option<Arc<crate::plans::PlansFile>>,
    /// `--plan-header`: where a gateway names the account's plan.
    pub plan_header: Option<axum::http::HeaderName>,
    /// `--require-lease-secret`: starts without a lease secret are 400.
    pub require_lease_secret: bool,
    pub auth: Authenticator,
    /// Signs playback grants when `--grant-key` is set.
    pub grants: Option<Arc<GrantSigner>>,
    pub clock: Arc<dyn Clock>,
    pub admin_token: Option<Secret>,
    pub store_timeout: Duration,
    pub on_store_error: OnStoreError,
    pub metrics: PrometheusHandle,
    pub ops: Ops,
}

pub struct WeakAppState(std::sync::Weak<Shared>);

impl WeakAppState {
    pub fn upgrade(&self) -> Option<AppState> {
        self.0.upgrade().map(AppState)
    }
}

/// How the service protects and reports itself: flood limits, draining,
/// which requests are logged, where `/metrics` is served.
pub struct Ops {
    pub throttle: throttle::Throttle,
    /// Set when shutdown starts: `/readyz` answers 503 from then on.
    pub draining: AtomicBool,
    pub access_log: AccessLog,
    /// `/metrics` on the API's port (no `--metrics-listen`).
    pub metrics_on_api: bool,
    /// `--cors-origins`: pages that may call the player API from a browser.
    pub cors_origins: Vec<String>,
    /// `--edge-renew-every`: `/edge/verify` renews leases this often.
    pub edge_renew_every: Option<Duration>,
}

impl Ops {
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }

    /// The flood limits of a request that acts for `user` (429 over them).
    pub fn throttle_account(&self, user: &UserId) -> Result<(), ApiError> {
        self.ops
            .throttle
            .check_account(user, |rates| self.store.pace(user, None, rates))
    }

    /// The flood limits of a request about stream `id` of `user`.
    pub fn throttle_stream(&self, user: &UserId, id: &StreamId) -> Result<(), ApiError> {
        self.ops
            .throttle
            .check_stream(user, id, |rates| self.store.pace(user, Some(id), rates))
    }

    /// A handle that does not keep the state alive (for background tasks).
    pub fn downgrade(&self) -> WeakAppState {
        WeakAppState(Arc::downgrade(&self.0))
    }

    /// Runs one store call within `--store-timeout`, timing it. A failure is
    /// logged here, once, with its cause; callers only see that it failed.
    pub async fn call<T>(
        &self,
        op: &'static str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, ApiError> {
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.store_timeout, call).await;
        crate::telemetry::store_call(op, started.elapsed());
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                metrics::counter!("streamguard_store_errors_total", "op" => op, "kind" => "error")
                    .increment(1);
                tracing::error!(op, error = %error, cause = ?std::error::Error::source(&error), "store call failed");
                Err(ApiError::StoreUnavailable)
            }
            Err(_) => {
                metrics::counter!("streamguard_store_errors_total", "op" => op, "kind" => "timeout")
                    .increment(1);
                tracing::error!(
                    op,
                    timeout_ms = self.store_timeout.as_millis() as u64,
                    "store call timed out"
                );
                Err(ApiError::StoreUnavailable)
            }
        }
    }
}

/// The whole API: the routes of `routes::surface` that this configuration
/// serves, with the answers for unknown routes and methods, CORS, and the
/// request-id, body-limit, logging and metrics layer.
pub fn router(state: AppState) -> Router {
    crate::telemetry::name_routes(routes::every_path);
    let routes = routes::routes(&state)
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed);
    let access_log = state.ops.access_log;
    // The body limit is enforced once, for every route, by `middleware`.
    let mut routes = routes;
    // Last, so that it also wraps the method fallbacks a preflight meets.
    if let Some(cors) = cors::layer(&state.ops.cors_origins) {
        routes = routes.layer(cors);
    }
    middleware::around(routes, access_log).with_state(state)
}

/// `/metrics`, `/healthz` and `/readyz` for `--metrics-listen`: a listener
/// with connection slots of its own, so probes are answered even while
/// clients hold every connection of the API's port.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(ops::metrics))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .fallback(ops::not_found)
        .with_state(state)
}
