//! Operational routes: health, readiness, metrics, the API description,
//! and the answers for unknown routes and methods.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::json;

use super::admin::Admin;
use super::{ApiError, AppState};

/// The original service's health check, kept for its load balancers.
#[utoipa::path(get, path = "/", tag = "operations", operation_id = "legacy_health",
    responses((status = 200, description = "The service runs", body = String, content_type = "text/plain")))]
pub async fn legacy_health() -> &'static str {
    "ITS WORKING"
}

/// Liveness: 200 while the process runs.
#[utoipa::path(get, path = "/healthz", tag = "operations", operation_id = "healthz", responses((status = 200, description = "Alive")))]
pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Readiness: 200 when the store answers.
#[utoipa::path(get, path = "/readyz", tag = "operations", operation_id = "readyz", responses(
    (status = 200, description = "The store answers"),
    super::openapi::NotReady,
))]
pub async fn readyz(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    if state.ops.is_draining() {
        return Err(ApiError::Draining);
    }
    state.call("ping", state.store.ping()).await?;
    Ok(Json(json!({ "status": "ready" })))
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations", operation_id = "metrics",
    responses((status = 200, description = "Metrics", body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    crate::telemetry::refresh_gauges();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

/// The same Prometheus text behind the admin token, for the web console
/// (`/metrics` itself may be served on another address).
#[utoipa::path(get, path = "/admin/metrics", tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Metrics", body = String, content_type = "text/plain"),
        super::openapi::AdminAuthFailures,
    ))]
pub async fn admin_metrics(_: Admin, state: State<AppState>) -> impl IntoResponse {
    metrics(state).await
}

/// The public key(s) that check playback grants, as a JWK Set (RFC 7517).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "operations",
    responses(
        (status = 200, description = "JWK Set: every key in the --grant-key file, the signing key first", content_type = "application/jwk-set+json"),
    ))]
pub async fn jwks(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let grants = state.grants.as_ref().ok_or(ApiError::RouteNotFound)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/jwk-set+json"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        grants.jwks(),
    ))
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", operation_id = "openapi",
    responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn openapi(State(state): State<AppState>) -> impl IntoResponse {
    Json(super::routes::document(&state))
}

pub async fn not_found() -> ApiError {
    ApiError::RouteNotFound
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
