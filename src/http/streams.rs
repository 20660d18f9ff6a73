//! The player's routes: list, start, heartbeat, stop.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::answer::Json;
use super::dto::{
    ConflictDto, HeartbeatResponse, StartBody, StartResponse, StreamDto, StreamsResponse,
};
use super::error::Problem;
use super::extract::{Identity, JsonBody, StreamPath};
use super::{ApiError, AppState, OnStoreError};
use crate::auth::Caller;
use crate::domain::{
    EndReason, HeartbeatDecision, Lease, Refusal, SecretHash, StartDecision, StartRequest,
    StreamId, UserId,
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
    state.throttle_account(&user)?;
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
        (status = 400, description = "invalid-request, malformed-json, or missing-attribute (a rule of the account's plan requires a tag or content_id; with rule and attribute)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "stream-limit-reached (with rule, limit, active, streams and conflicts) or stream-id-conflict", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(level = "debug", skip_all, name = "start_stream")]
pub async fn start(
    State(state): State<AppState>,
    Identity(Caller {
        user,
        limit_claim,
        plan,
    }): Identity,
    JsonBody(body): JsonBody<StartBody>,
) -> Result<Response, ApiError> {
    state.throttle_account(&user)?;
    let req = StartRequest {
        limit_claim,
        plan,
        ..body.unwrap_or_default().into_request()?
    };
    if state.require_lease_secret && req.secret.is_none() {
        return Err(ApiError::InvalidRequest(
            "lease_secret: this service binds every stream to its player; send a random lease_secret"
                .into(),
        ));
    }
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
        StartDecision::Granted(admitted) => {
            let location = format!("/streams/{}", admitted.stream.id);
            let body = StartResponse {
                stream: dto(&admitted.stream),
                grant: sign(&state, &user, &admitted.stream),
                active: admitted.active,
                limit: admitted.limit.get(),
                evicted: ids(admitted.evicted),
                replaced: ids(admitted.replaced),
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
        StartDecision::LimitReached(refusal) => Err(limit_reached(&state, &user, &refusal)),
        StartDecision::StreamIdConflict => Err(ApiError::StreamIdConflict),
        StartDecision::MissingAttribute { rule, attribute } => Err(ApiError::MissingAttribute {
            rule: rule.to_string(),
            attribute,
        }),
    }
}

/// The 409 of a refused start: the first refusing limit, and all of them.
pub(super) fn limit_reached(state: &AppState, user: &UserId, refusal: &Refusal) -> ApiError {
    let conflicts: Vec<ConflictDto> = refusal
        .conflicts
        .iter()
        .map(|c| ConflictDto {
            rule: c.rule.to_string(),
            limit: c.limit.get(),
            active: c.live.len(),
            streams: StreamDto::list(user, &c.live, &state.policy),
        })
        .collect();
    let first = &conflicts[0];
    ApiError::LimitReached {
        rule: first.rule.clone(),
        limit: first.limit,
        active: first.active,
        streams: first.streams.clone(),
        conflicts,
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
    params(
        super::openapi::AccountHeader,
        super::openapi::StreamParam,
        ("Streamguard-Lease-Secret" = Option<String>, Header, description = "The lease_secret the stream was started with; required for such a stream (without it, or with another, the answer is 404)"),
        ("Streamguard-Grant" = Option<String>, Header, description = "The stream's latest grant: if the store forgot the stream, it is re-admitted from it (resumed)"),
    ),
    responses(
        (status = 200, description = "Renewed: the lease runs to the new expires_at (resumed: true when the store had forgotten the stream and its grant re-admitted it)", body = HeartbeatResponse),
        super::openapi::PlayerFailures,
        (status = 400, description = "missing-attribute: a resumed stream lacks an attribute its plan now requires", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "stream-not-found: this account has no such stream, or not for this lease secret (a player that sent its grant should stop)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "stream-limit-reached: the store had forgotten the stream and there is no room to resume it (with rule, limit, active, streams, conflicts); the player must stop", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "stream-ended, with reason: the player must stop", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(level = "debug", skip_all, name = "heartbeat")]
pub async fn heartbeat(
    State(state): State<AppState>,
    Identity(caller): Identity,
    StreamPath(id): StreamPath,
    // The request itself rather than `HeaderMap`, which would copy every
    // header: only the lease secret and, for a resume, the grant are read.
    request: Request,
) -> Result<Json<HeartbeatResponse>, ApiError> {
    let headers = request.headers();
    let user = caller.user.clone();
    state.throttle_stream(&user, &id)?;
    let secret = lease_secret(headers);
    let decision = match state
        .call(
            "heartbeat",
            state.store.heartbeat_with(&user, &id, secret.as_ref()),
        )
        .await
    {
        Ok(decision) => {
            if matches!(decision, HeartbeatDecision::Renewed(_)) {
                telemetry::record_decision("renewed", 1);
            }
            decision
        }
        Err(error) => {
            let lease = unenforced(
                &state,
                "heartbeat",
                &user,
                error,
                StartRequest::new(id.clone()),
            )?;
            HeartbeatDecision::Renewed(lease)
        }
    };
    match decision {
        HeartbeatDecision::Renewed(lease) => Ok(renewed(&state, &user, &lease, false)),
        HeartbeatDecision::Ended(reason) => Err(ApiError::StreamEnded(reason)),
        HeartbeatDecision::Unknown => {
            super::resume::from_grant(&state, caller, id, secret, headers).await
        }
    }
}

/// The answer to a renewed lease, with its fresh grant.
pub(super) fn renewed(
    state: &AppState,
    user: &UserId,
    lease: &Lease,
    resumed: bool,
) -> Json<HeartbeatResponse> {
    Json(HeartbeatResponse {
        stream: StreamDto::new(user, lease, &state.policy),
        grant: sign(state, user, lease),
        resumed,
    })
}

/// The lease secret a heartbeat presents. One that is not a well-formed
/// secret opens no lease that has one (and is not needed by one without).
fn lease_secret(headers: &HeaderMap) -> Option<SecretHash> {
    let value = headers.get(LEASE_SECRET_HEADER)?.to_str().ok()?;
    SecretHash::of(value).ok()
}

/// The header in which a heartbeat presents its lease secret.
pub const LEASE_SECRET_HEADER: &str = "streamguard-lease-secret";

/// The header in which a heartbeat presents its latest grant, to be
/// resumed if the store forgot the stream.
pub const GRANT_HEADER: &str = "streamguard-grant";

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
    state.throttle_stream(&user, &id)?;
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
    let lease = unenforced(state, "start", user, error, req)?;
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
    user: &UserId,
    error: ApiError,
    req: StartRequest,
) -> Result<Lease, ApiError> {
    if state.on_store_error != OnStoreError::Allow {
        return Err(error);
    }
    metrics::counter!("streamguard_unenforced_total", "op" => op).increment(1);
    tracing::warn!(op, user_id = %user, stream_id = %req.stream_id, "store unavailable: allowing playback unenforced");
    let now = state.clock.now();
    Ok(Lease {
        id: req.stream_id,
        device_id: req.device_id,
        content_id: req.content_id,
        tags: req.tags,
        secret: req.secret.map(Box::new),
        started_at: now,
        expires_at: now + state.policy.lease_ttl,
        seq: 0,
        pace: Default::default(),
    })
}

/// Counts what a start decided: a grant and what it ended, or a denial.
fn record_start(decision: &StartDecision) {
    match decision {
        StartDecision::Granted(admitted) => {
            telemetry::record_decision("granted", 1);
            telemetry::record_decision("evicted", admitted.evicted.len());
            telemetry::record_decision("replaced", admitted.replaced.len());
        }
        StartDecision::LimitReached(refusal) => {
            telemetry::record_decision("denied", 1);
            // Rule names come from the plans file only: bounded labels.
            for conflict in &refusal.conflicts {
                metrics::counter!("streamguard_rule_refusals_total", "rule" => conflict.rule.to_string())
                    .increment(1);
            }
        }
        StartDecision::AlreadyLive { .. }
        | StartDecision::StreamIdConflict
        | StartDecision::MissingAttribute { .. } => {}
    }
}
