//! Operator routes behind `--admin-token`: inspect and revoke any account's
//! streams, and set per-account limits.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use subtle::ConstantTimeEq;

use super::bearer::{Bearer, bearer};
use super::dto::{LimitBody, LimitResponse, LimitSource, StreamsResponse};
use super::extract::{JsonBody, UserPath, UserStreamPath};
use super::{ApiError, AppState};
use crate::domain::{EndReason, StreamId};
use crate::telemetry;

/// Proof that the request carries the admin token. Without a configured
/// token the admin routes do not exist (404).
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let expected = state.admin_token.as_ref().ok_or(ApiError::RouteNotFound)?;
        let Bearer::Token(presented) = bearer(&parts.headers) else {
            return Err(ApiError::MissingAdminToken);
        };
        state.ops.throttle.check_admin()?;
        if bool::from(presented.as_bytes().ct_eq(expected.expose().as_bytes())) {
            Ok(Admin)
        } else {
            state.ops.throttle.admin_failed()?;
            Err(ApiError::WrongAdminToken)
        }
    }
}

/// Any account's live streams.
#[utoipa::path(get, path = "/admin/users/{user}/streams", tag = "admin", operation_id = "admin_list_streams",
    security(("admin_token" = [])),
    params(super::openapi::UserParam),
    responses(
        (status = 200, description = "The account's live streams", body = StreamsResponse),
        super::openapi::AdminFailures,
    ))]
#[tracing::instrument(level = "debug", skip_all, name = "admin_list")]
pub async fn list(
    _: Admin,
    State(state): State<AppState>,
    UserPath(user): UserPath,
) -> Result<Json<StreamsResponse>, ApiError> {
    let view = state.call("view", state.store.view(&user)).await?;
    Ok(Json(StreamsResponse::new(&user, &view, &state.policy)))
}

/// End a stream; its heartbeat then answers 410 `revoked`.
#[utoipa::path(delete, path = "/admin/users/{user}/streams/{id}", tag = "admin", operation_id = "admin_revoke_stream",
    security(("admin_token" = [])),
    params(super::openapi::UserParam, super::openapi::StreamParam),
    responses(
        (status = 204, description = "Revoked (its heartbeat answers 410 revoked), or already gone"),
        super::openapi::AdminFailures,
    ))]
#[tracing::instrument(level = "debug", skip_all, name = "admin_revoke")]
pub async fn revoke(
    _: Admin,
    State(state): State<AppState>,
    UserStreamPath(user, id): UserStreamPath,
) -> Result<StatusCode, ApiError> {
    let ended = state
        .call("end", state.store.end(&user, &id, EndReason::Revoked))
        .await?;
    telemetry::record_decision("revoked", usize::from(ended));
    Ok(StatusCode::NO_CONTENT)
}

/// The limit in force for an account.
#[utoipa::path(get, path = "/admin/users/{user}/limit", tag = "admin", operation_id = "admin_get_limit",
    security(("admin_token" = [])),
    params(super::openapi::UserParam),
    responses(
        (status = 200, description = "The limit in force and where it comes from", body = LimitResponse),
        super::openapi::AdminFailures,
    ))]
#[tracing::instrument(level = "debug", skip_all, name = "admin_get_limit")]
pub async fn get_limit(
    _: Admin,
    State(state): State<AppState>,
    UserPath(user): UserPath,
) -> Result<Json<LimitResponse>, ApiError> {
    let view = state.call("view", state.store.view(&user)).await?;
    Ok(Json(LimitResponse {
        user_id: user.to_string(),
        limit: view.limit.get(),
        source: view.source.into(),
        revoked: Vec::new(),
    }))
}

/// Override an account's limit. Streams above a lowered limit are revoked.
#[utoipa::path(put, path = "/admin/users/{user}/limit", tag = "admin", operation_id = "admin_set_limit",
    security(("admin_token" = [])),
    request_body = LimitBody,
    params(super::openapi::UserParam),
    responses(
        (status = 200, description = "Set; streams above a lowered limit are revoked", body = LimitResponse),
        super::openapi::AdminFailures,
        super::openapi::BodyFailures,
        (status = 400, description = "invalid-request (limit out of 0..=1000, no body) or malformed-json", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(level = "debug", skip_all, name = "admin_set_limit")]
pub async fn set_limit(
    _: Admin,
    State(state): State<AppState>,
    UserPath(user): UserPath,
    JsonBody(body): JsonBody<LimitBody>,
) -> Result<Json<LimitResponse>, ApiError> {
    let body = body.ok_or_else(|| ApiError::InvalidRequest("send {\"limit\": N}".into()))?;
    let limit = body.limit()?;
    let revoked = state
        .call("set_limit", state.store.set_limit(&user, Some(limit)))
        .await?;
    telemetry::record_decision("revoked", revoked.len());
    Ok(Json(LimitResponse {
        user_id: user.to_string(),
        limit: limit.get(),
        source: LimitSource::Override,
        revoked: revoked.into_iter().map(String::from).collect(),
    }))
}

/// Return an account to the default limit.
#[utoipa::path(delete, path = "/admin/users/{user}/limit", tag = "admin", operation_id = "admin_clear_limit",
    security(("admin_token" = [])),
    params(super::openapi::UserParam),
    responses(
        (status = 204, description = "The default limit applies again"),
        super::openapi::AdminFailures,
    ))]
#[tracing::instrument(level = "debug", skip_all, name = "admin_clear_limit")]
pub async fn clear_limit(
    _: Admin,
    State(state): State<AppState>,
    UserPath(user): UserPath,
) -> Result<StatusCode, ApiError> {
    let revoked: Vec<StreamId> = state
        .call("set_limit", state.store.set_limit(&user, None))
        .await?;
    telemetry::record_decision("revoked", revoked.len());
    if !revoked.is_empty() {
        tracing::info!(
            revoked = revoked.len(),
            "clearing the override revoked streams"
        );
    }
    Ok(StatusCode::NO_CONTENT)
}
