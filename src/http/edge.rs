//! `GET /edge/verify`: the online grant check an edge (nginx
//! `auth_request`) makes before serving a segment or a key. Offline, an
//! edge can check a grant's signature and `exp` against the JWKS; this
//! also says whether the grant's stream is still live, so a stop, an
//! eviction or an admin revoke is enforced at once instead of when the
//! last grant expires.
//!
//! Cost: one signature check and one store read (`view` of the grant's
//! account). It is not throttled per stream like the player routes: the
//! edge calls it at segment rate and is expected to cache its answers for
//! a few seconds (deploy/edge/README.md).
//!
//! With `--edge-renew-every`, an accepted grant also renews its lease when
//! the last renewal (the lease's `expires_at - lease_ttl`) is at least that
//! old — a heartbeat on the player's behalf, so the store sees one renewal
//! per interval per stream whatever the segment rate — and the 204 carries
//! the renewed grant in `Streamguard-Grant` for the edge to hand back as a
//! cookie.

use axum::extract::Query;
use axum::extract::State;
use axum::extract::rejection::QueryRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{ApiError, AppState};
use crate::domain::{AccountView, ContentId, EndReason, HeartbeatDecision, Lease};
use crate::grant::{GrantClaims, GrantRefusal};

/// Where the grant and the content may come from.
pub const GRANT_HEADER: &str = "streamguard-grant";
pub const GRANT_COOKIE: &str = "streamguard_grant";
pub const CONTENT_HEADER: &str = "x-content-id";

#[derive(Deserialize)]
pub struct EdgeQuery {
    grant: Option<String>,
    content_id: Option<String>,
}

/// Why a grant does not open the content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EdgeRefusal {
    /// `exp` has passed.
    Expired,
    /// Not a grant of ours (bad signature, unknown key, malformed).
    Invalid,
    /// The grant names another content, or none.
    ContentMismatch,
    /// The grant's stream is no longer live although the grant has not
    /// expired: why it ended (`stopped`, `evicted`, `replaced`, `revoked`,
    /// `expired`), from its tombstone in the same store read; once the
    /// tombstone is gone, `replaced` when a live stream of the same device
    /// took its place, else `revoked`.
    Ended(EndReason),
}

impl EdgeRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            EdgeRefusal::Expired => "expired",
            EdgeRefusal::Invalid => "invalid",
            EdgeRefusal::ContentMismatch => "content-mismatch",
            EdgeRefusal::Ended(reason) => reason.as_str(),
        }
    }
}

/// Check a playback grant for a content at the edge.
#[utoipa::path(get, path = "/edge/verify", tag = "edge", operation_id = "edge_verify",
    params(
        ("grant" = Option<String>, Query, description = "The grant (or the Streamguard-Grant header, or the streamguard_grant cookie)"),
        ("content_id" = Option<String>, Query, description = "The content asked for (or the X-Content-Id header); without one, every grant is refused as content-mismatch"),
        ("Streamguard-Grant" = Option<String>, Header, description = "The grant"),
        ("X-Content-Id" = Option<String>, Header, description = "The content asked for"),
    ),
    responses(
        (status = 204, description = "The grant verifies, names this content and its stream is live; with --edge-renew-every, a renewal's new grant is in Streamguard-Grant", headers(("Streamguard-Grant" = Option<String>, description = "The renewed grant, when this check renewed the lease"))),
        (status = 401, description = "missing-grant: no grant in the query, header or cookie", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "grant-refused, with `reason` (also in the Streamguard-Reason header): expired, invalid, content-mismatch (also a grant without cid, and a request without a valid content id), or why the stream ended before its grant expired: stopped, evicted, replaced, revoked", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "store-unavailable: the store failed or did not answer; see Retry-After", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(level = "debug", skip_all, name = "edge_verify")]
pub async fn verify(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<EdgeQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    let signer = state.grants.as_ref().ok_or(ApiError::RouteNotFound)?;
    let token = query
        .grant
        .or_else(|| header_text(&headers, GRANT_HEADER))
        .or_else(|| cookie(&headers, GRANT_COOKIE))
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::MissingGrant)?;
    let claims = signer
        .verify(&token, state.clock.now())
        .map_err(|refusal| {
            ApiError::GrantRefused(match refusal {
                GrantRefusal::Expired => EdgeRefusal::Expired,
                GrantRefusal::Invalid(_) => EdgeRefusal::Invalid,
            })
        })?;
    // No content id, or one that is not an id, matches no grant: the edge
    // gets a 403 like any other refusal (auth_request turns a 400 into a 500).
    let content = query
        .content_id
        .or_else(|| header_text(&headers, CONTENT_HEADER))
        .and_then(|c| ContentId::parse(&c).ok())
        .ok_or(ApiError::GrantRefused(EdgeRefusal::ContentMismatch))?;
    // A grant without `cid` opens no content: a start that named no
    // content must not play whatever the edge serves.
    if claims.content.as_ref() != Some(&content) {
        return Err(ApiError::GrantRefused(EdgeRefusal::ContentMismatch));
    }
    let view = state.call("view", state.store.view(&claims.user)).await?;
    let lease = still_live(&claims, &view).map_err(ApiError::GrantRefused)?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    let renewed = renew(&state, &claims, lease).await?;
    if let Some(value) = renewed.and_then(|g| HeaderValue::from_str(&g).ok()) {
        response.headers_mut().insert(GRANT_HEADER, value);
    }
    Ok(response)
}

/// With `--edge-renew-every`, renews the lease when its last renewal is
/// that old; returns the renewed grant.
async fn renew(
    state: &AppState,
    claims: &GrantClaims,
    lease: &Lease,
) -> Result<Option<String>, ApiError> {
    let Some(every) = state.ops.edge_renew_every else {
        return Ok(None);
    };
    let now = state.clock.now();
    let renewed_at = lease.expires_at.as_millis() - state.policy.lease_ttl.as_millis() as i64;
    if now.as_millis() - renewed_at < every.as_millis() as i64 {
        return Ok(None);
    }
    let heartbeat = state.store.heartbeat(&claims.user, &claims.stream);
    match state.call("heartbeat", heartbeat).await? {
        HeartbeatDecision::Renewed(lease) => {
            crate::telemetry::record_decision("renewed", 1);
            let signer = state.grants.as_ref().ok_or(ApiError::RouteNotFound)?;
            Ok(signer.sign(&claims.user, &lease, now).ok())
        }
        HeartbeatDecision::Ended(reason) => Err(ApiError::GrantRefused(EdgeRefusal::Ended(reason))),
        HeartbeatDecision::Unknown => Err(ApiError::GrantRefused(EdgeRefusal::Ended(
            EndReason::Revoked,
        ))),
    }
}

/// The lease the grant was issued for, when it is live in `view`.
fn still_live<'v>(claims: &GrantClaims, view: &'v AccountView) -> Result<&'v Lease, EdgeRefusal> {
    let same_lease = view.live.iter().find(|lease| {
        lease.id == claims.stream
            && lease.device_id == claims.device
            && lease.content_id == claims.content
            // A stream id started again after it ended is another lease:
            // a grant of the earlier one was issued before it began.
            && lease.started_at.as_millis().div_euclid(1000) <= claims.issued_at
    });
    if let Some(lease) = same_lease {
        return Ok(lease);
    }
    // Why it ended, while its tombstone is remembered.
    if let Some(tombstone) = view.ended.iter().find(|t| t.id == claims.stream) {
        return Err(EdgeRefusal::Ended(tombstone.reason));
    }
    let replaced = claims.device.is_some()
        && view
            .live
            .iter()
            .any(|lease| lease.device_id == claims.device && lease.id != claims.stream);
    Err(EdgeRefusal::Ended(if replaced {
        EndReason::Replaced
    } else {
        EndReason::Revoked
    }))
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned())
}

/// The value of cookie `name` in the request's `Cookie` header(s).
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grant_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            "a=1; streamguard_grantx=no".parse().unwrap(),
        );
        headers.append(
            header::COOKIE,
            "b=2;streamguard_grant=\"x.y.z\"".parse().unwrap(),
        );
        assert_eq!(cookie(&headers, GRANT_COOKIE).as_deref(), Some("x.y.z"));
        assert_eq!(cookie(&HeaderMap::new(), GRANT_COOKIE), None);
    }
}
