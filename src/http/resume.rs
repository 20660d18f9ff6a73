//! Resume after the store forgets: a heartbeat that finds neither a lease
//! nor a tombstone, but carries the stream's latest signed grant, re-admits
//! the stream as a start with the grant's terms, in one atomic step. The
//! grant is proof of an admission this service made; a store that lost it
//! (a Redis restarted without persistence, a failover, a restored table)
//! must not stop every viewer at once.

use axum::http::HeaderMap;

use super::answer::Json;
use super::dto::HeartbeatResponse;
use super::streams::{GRANT_HEADER, limit_reached, renewed};
use super::{ApiError, AppState};
use crate::auth::Caller;
use crate::domain::{
    HeartbeatDecision, ResumeDecision, SecretHash, StartDecision, StartRequest, StreamId,
};

/// Counts what a resume decided: a stream re-admitted from its grant, or
/// refused for want of room.
fn record_resume(decision: &ResumeDecision) {
    let outcome = match decision {
        ResumeDecision::Start(StartDecision::Granted(_)) => "resumed",
        ResumeDecision::Start(StartDecision::LimitReached(_)) => "refused",
        _ => return,
    };
    metrics::counter!("streamguard_resumed_total", "outcome" => outcome).increment(1);
    crate::telemetry::record_decision(
        if outcome == "resumed" {
            "granted"
        } else {
            "denied"
        },
        1,
    );
}

/// The answer to a heartbeat the store did not know: a resume when the
/// heartbeat carries a grant of ours, unexpired, for this account and
/// stream (and, for a lease bound to a secret, the heartbeat presents that
/// secret); 404 otherwise, as before.
pub async fn from_grant(
    state: &AppState,
    caller: Caller,
    id: StreamId,
    secret: Option<SecretHash>,
    headers: &HeaderMap,
) -> Result<Json<HeartbeatResponse>, ApiError> {
    let (Some(signer), Some(token)) = (
        state.grants.as_ref(),
        headers.get(GRANT_HEADER).and_then(|v| v.to_str().ok()),
    ) else {
        return Err(ApiError::StreamNotFound);
    };
    let now = state.clock.now();
    let Ok(grant) = signer.verify(token, now) else {
        return Err(ApiError::StreamNotFound);
    };
    if grant.user != caller.user
        || grant.stream != id
        || !SecretHash::opens(grant.secret.as_ref(), secret.as_ref())
    {
        return Err(ApiError::StreamNotFound);
    }
    let age_s = now.as_millis().div_euclid(1000) - grant.issued_at;
    let req = StartRequest {
        device_id: grant.device,
        content_id: grant.content,
        tags: grant.tags,
        secret: grant.secret,
        limit_claim: caller.limit_claim,
        plan: caller.plan,
        ..StartRequest::new(id)
    };
    let user = caller.user;
    let decision = state.call("resume", state.store.resume(&user, req)).await?;
    record_resume(&decision);
    match decision {
        ResumeDecision::Heartbeat(HeartbeatDecision::Renewed(lease)) => {
            Ok(renewed(state, &user, &lease, false))
        }
        ResumeDecision::Heartbeat(HeartbeatDecision::Ended(reason)) => {
            Err(ApiError::StreamEnded(reason))
        }
        ResumeDecision::Heartbeat(HeartbeatDecision::Unknown) => Err(ApiError::StreamNotFound),
        ResumeDecision::Start(StartDecision::Granted(granted)) => {
            tracing::info!(
                user_id = %user,
                stream_id = %granted.stream.id,
                grant_age_s = age_s,
                "resumed a stream the store had forgotten, from its grant"
            );
            Ok(renewed(state, &user, &granted.stream, true))
        }
        ResumeDecision::Start(StartDecision::LimitReached(refusal)) => {
            Err(limit_reached(state, &user, &refusal))
        }
        ResumeDecision::Start(StartDecision::MissingAttribute { rule, attribute }) => {
            Err(ApiError::MissingAttribute {
                rule: rule.to_string(),
                attribute,
            })
        }
        // Neither happens to a stream nothing was known of.
        ResumeDecision::Start(StartDecision::AlreadyLive { stream, .. }) => {
            Ok(renewed(state, &user, &stream, false))
        }
        ResumeDecision::Start(StartDecision::StreamIdConflict) => Err(ApiError::StreamNotFound),
    }
}
