//! The player's routes: list, start, heartbeat, stop.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::dto::{HeartbeatResponse, StartBody, StartResponse, StreamDto, StreamsResponse};
use super::error::Problem;
use super::extract::{Identity, JsonBody, StreamPath};
use super::{ApiError, AppState, OnStoreError};
use crate::auth::Caller;
use crate::domain::{
    EndReason, HeartbeatDecision, Lease, StartDecision, StartRequest, StreamId, UserId,
};
use crate::telemetry;

/// The calling account's live streams.
#[utoipa::path(get, path = "/streams", tag = "streams", operation_id = "list_streams",
    security(("x_id" = [])),
    params(super::openapi::AccountHeader),
    responses(
        (status = 200, description = "The account's live streams", body = StreamsResponse),
        super::openapi::PlayerFailures,
    ))]
#[tracing::instrument(level = "debug", skip_all, name = "list_streams")]
pub async fn list(
    State(state): State<AppState>,
    Identity(Caller { user, .. }): Identity,
) -> Result<Json<StreamsResponse>, ApiError> {
    state.ops.throttle.check_account(&user)?;
    let view = state.call("view", state.store.view(&user)).await?;
    Ok(Json(StreamsResponse::new(&user, &view, &state.policy)))
}

/// Start playback: takes a slot, or says why not.
#[utoipa::path(post, path = "/streams", tag = "streams", operation_id = "start_stream",
    security(("x_id" = [])),
    request_body(content = StartBody, description = "Optional: an empty body starts a stream with a generated id"),
    params(super::openapi::AccountHeader),
    responses(
        (status = 201, description = "Granted; Location names the stream", body = StartResponse, headers(("Location" = String, description = "/streams/{id}"))),
        (status = 200, description = "The named stream is already live (idempotent retry)", body = StartResponse),
        super::openapi::PlayerFailures,
        super::openapi::BodyFailures,
        (status = 400, description = "invalid-request or malformed-json", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "stream-limit-reached (with limit, active, streams) or stream-id-conflict", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(level = "debug", skip_all, name = "start_stream")]
pub async fn start(
    State(state): State<AppState>,
    Identity(Caller { user, plan }): Identity,
    JsonBody(body): JsonBody<StartBody>,
) -> Result<Response, ApiError> {
    state.ops.throttle.check_account(&user)?;
    let req = StartRequest {
        plan,
        ..body.unwrap_or_default().into_request()?
    };
    let decision = match state
        .call("start", state.store.start(&user, req.clone()))
        .await
    {
        Ok(decision) => decision,
        Err(error) => return unenforced_start(&state, &user, req, error),
    };
    record_start(&decision);
    let dto = |lease: &Lease| StreamDto::new(&user, lease, &state.policy);
    let ids = |ids: Vec<StreamId>| ids.into_iter().map(String::from).collect();
    match decision {
        StartDecision::Granted(grant) => {
            let location = format!("/streams/{}", grant.stream.id);
            let body = StartResponse {
                stream: dto(&grant.stream),
                grant: sign(&state, &user, &grant.stream),
                active: grant.active,
                limit: grant.limit.get(),
                evicted: ids(grant.evicted),
                replaced: ids(grant.replaced),
            };
            Ok(created(location, body))
        }
        StartDecision::AlreadyLive {
            stream,
            active,
            limit,
        } => Ok(Json(StartResponse {
            stream: dto(&stream),
            grant: sign(&state, &user, &stream),
            active,
            limit: limit.get(),
            evicted: Vec::new(),
            replaced: Vec::new(),
        })
        .into_response()),
        StartDecision::LimitReached { limit, live } => Err(ApiError::LimitReached {
            limit: limit.get(),
            active: live.len(),
            streams: StreamDto::list(&user, &live, &state.policy),
        }),
        StartDecision::StreamIdConflict => Err(ApiError::StreamIdConflict),
    }
}

fn created(location: String, body: StartResponse) -> Response {
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// Keep the stream alive.
#[utoipa::path(post, path = "/streams/{id}/heartbeat", tag = "streams", operation_id = "heartbeat_stream",
    security(("x_id" = [])),
    params(super::openapi::AccountHeader, super::openapi::StreamParam),
    responses(
        (status = 200, description = "Renewed: the lease runs to the new expires_at", body = HeartbeatResponse),
        super::openapi::PlayerFailures,
        (status = 404, description = "stream-not-found: this account has no such stream (the player should stop)", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "stream-ended, with reason: the player must stop", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(level = "debug", skip_all, name = "heartbeat")]
pub async fn heartbeat(
    State(state): State<AppState>,
    Identity(Caller { user, .. }): Identity,
    StreamPath(id): StreamPath,
) -> Result<Json<HeartbeatResponse>, ApiError> {
    state.ops.throttle.check_stream(&user, &id)?;
    let decision = match state
        .call("heartbeat", state.store.heartbeat(&user, &id))
        .await
    {
        Ok(decision) => {
            if matches!(decision, HeartbeatDecision::Renewed(_)) {
                telemetry::record_decision("renewed", 1);
            }
            decision
        }
        Err(error) => {
            let lease = unenforced(&state, "heartbeat", error, StartRequest::new(id))?;
            HeartbeatDecision::Renewed(lease)
        }
    };
    match decision {
        HeartbeatDecision::Renewed(lease) => Ok(Json(HeartbeatResponse {
            stream: StreamDto::new(&user, &lease, &state.policy),
            grant: sign(&state, &user, &lease),
        })),
        HeartbeatDecision::Ended(reason) => Err(ApiError::StreamEnded(reason)),
        HeartbeatDecision::Unknown => Err(ApiError::StreamNotFound),
    }
}

/// Stop playback; succeeds also when the stream is already gone.
#[utoipa::path(delete, path = "/streams/{id}", tag = "streams", operation_id = "stop_stream",
    security(("x_id" = [])),
    params(super::openapi::AccountHeader, super::openapi::StreamParam),
    responses(
        (status = 204, description = "Stopped, or already gone"),
        super::openapi::PlayerFailures,
    ))]
#[tracing::instrument(level = "debug", skip_all, name = "stop_stream")]
pub async fn stop(
    State(state): State<AppState>,
    Identity(Caller { user, .. }): Identity,
    StreamPath(id): StreamPath,
) -> Result<StatusCode, ApiError> {
    state.ops.throttle.check_stream(&user, &id)?;
    let ended = state
        .call("end", state.store.end(&user, &id, EndReason::Stopped))
        .await?;
    telemetry::record_decision("stopped", usize::from(ended));
    Ok(StatusCode::NO_CONTENT)
}

/// The signed grant for a live lease, when `--grant-key` is set. A key
/// that cannot sign was refused at start, so a failure here is logged and
/// the answer goes out without a grant.
fn sign(state: &AppState, user: &UserId, lease: &Lease) -> Option<String> {
    let signer = state.grants.as_ref()?;
    match signer.sign(user, lease, state.clock.now()) {
        Ok(grant) => Some(grant),
        Err(error) => {
            metrics::counter!("streamguard_grant_errors_total").increment(1);
            tracing::error!(%error, "signing a grant failed");
            None
        }
    }
}

/// With `--on-store-error allow`, a start the store could not decide is
/// granted without a slot, counted and logged; otherwise it is a 503.
fn unenforced_start(
    state: &AppState,
    user: &UserId,
    req: StartRequest,
    error: ApiError,
) -> Result<Response, ApiError> {
    let lease = unenforced(state, "start", error, req)?;
    let location = format!("/streams/{}", lease.id);
    let body = StartResponse {
        stream: StreamDto::new(user, &lease, &state.policy),
        grant: sign(state, user, &lease),
        active: 0,
        limit: state.policy.default_limit.get(),
        evicted: Vec::new(),
        replaced: Vec::new(),
    };
    Ok(created(location, body))
}

fn unenforced(
    state: &AppState,
    op: &'static str,
    error: ApiError,
    req: StartRequest,
) -> Result<Lease, ApiError> {
    if state.on_store_error != OnStoreError::Allow {
        return Err(error);
    }
    metrics::counter!("streamguard_unenforced_total", "op" => op).increment(1);
    tracing::warn!(op, stream_id = %req.stream_id, "store unavailable: allowing playback unenforced");
    let now = state.clock.now();
    Ok(Lease {
        id: req.stream_id,
        device_id: req.device_id,
        content_id: req.content_id,
        started_at: now,
        expires_at: now + state.policy.lease_ttl,
        seq: 0,
    })
}

/// Counts what a start decided: a grant and what it ended, or a denial.
fn record_start(decision: &StartDecision) {
    match decision {
        StartDecision::Granted(grant) => {
            telemetry::record_decision("granted", 1);
            telemetry::record_decision("evicted", grant.evicted.len());
            telemetry::record_decision("replaced", grant.replaced.len());
        }
        StartDecision::LimitReached { .. } => telemetry::record_decision("denied", 1),
        StartDecision::AlreadyLive { .. } | StartDecision::StreamIdConflict => {}
    }
}
