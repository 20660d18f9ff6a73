//! Every error answer: RFC 9457 `application/problem+json`, mapped in one place.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::dto::{ConflictDto, StreamDto};
use super::edge::EdgeRefusal;
use crate::auth::TokenError;
use crate::domain::EndReason;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// The short reason of an `/edge/verify` refusal, for the edge to pass on.
pub const REASON_HEADER: &str = "streamguard-reason";

/// Seconds a client is told to wait after a 503.
const RETRY_AFTER_SECS: &str = "1";

/// An RFC 9457 problem: the body of every error answer, and the schema
/// the OpenAPI document gives it. The members after `detail` appear only on
/// the answers they name.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// `urn:streamguard:problem:<slug>`, e.g. `…:invalid-request`.
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    pub kind: String,
    #[schema(value_type = String)]
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    /// 409 `stream-limit-reached`: the first refusing rule of the account's
    /// plan (`account` for the account-wide limit); 400
    /// `missing-attribute`: the rule that requires the attribute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// 409 `stream-limit-reached`: that rule's limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// 409 `stream-limit-reached`: how many live streams count against it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<usize>,
    /// 409 `stream-limit-reached`: those streams, oldest first, so the
    /// player can offer to stop one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub streams: Option<Vec<StreamDto>>,
    /// 409 `stream-limit-reached`: every refusing limit, the account's
    /// first, then the plan's rules in their order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflicts: Option<Vec<ConflictDto>>,
    /// 400 `missing-attribute`: the tag (or `content_id`) the rule requires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attribute: Option<String>,
    /// 410 `stream-ended`: why the stream ended (`stopped`, `expired`,
    /// `evicted`, `replaced`, `revoked`); the player must stop. 403
    /// `grant-refused` (`/edge/verify`): why the grant opens nothing
    /// (`expired`, `invalid`, `content-mismatch`, or how its stream ended).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub reason: Option<&'static str>,
}

impl From<super::dto::Invalid> for ApiError {
    fn from(invalid: super::dto::Invalid) -> Self {
        ApiError::InvalidRequest(invalid.0)
    }
}

#[derive(Debug)]
pub enum ApiError {
    /// Well-formed JSON (or a path) whose values are not acceptable.
    InvalidRequest(String),
    /// The body is not JSON of the expected shape.
    MalformedJson(String),
    /// No account identity on the request (header mode).
    MissingIdentity,
    /// JWT mode: no bearer token, or one that was refused.
    Unauthenticated(TokenError),
    /// Admin route without a bearer token.
    MissingAdminToken,
    /// Admin route with the wrong bearer token.
    WrongAdminToken,
    /// No such route (or admin routes while no admin token is configured).
    RouteNotFound,
    StreamNotFound,
    MethodNotAllowed,
    /// The account or a rule of its plan is full: `rule` is the first that
    /// refused (`account` for the limit), `conflicts` every one.
    LimitReached {
        rule: String,
        limit: u32,
        active: usize,
        streams: Vec<StreamDto>,
        conflicts: Vec<ConflictDto>,
    },
    /// A rule of the account's plan requires an attribute the start lacks.
    MissingAttribute {
        rule: String,
        attribute: String,
    },
    /// A start named a stream that is live on another device.
    StreamIdConflict,
    StreamEnded(EndReason),
    PayloadTooLarge,
    /// The body had not fully arrived [`super::BODY_TIMEOUT`] after the headers.
    BodyTimeout,
    UnsupportedMediaType,
    /// The store failed or timed out; the cause was logged where it happened.
    StoreUnavailable,
    /// Shutdown has started (`/readyz`).
    Draining,
    /// `/edge/verify` without a grant.
    MissingGrant,
    /// `/edge/verify`: the grant does not open the content (`reason`).
    GrantRefused(EdgeRefusal),
    /// Too many requests for one stream or one account (`Retry-After`).
    Throttled {
        retry_after_s: u64,
    },
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        use ApiError::*;
        match self {
            InvalidRequest(_) => (
                StatusCode::BAD_REQUEST,
                "invalid-request",
                "Invalid request",
            ),
            MalformedJson(_) => (
                StatusCode::BAD_REQUEST,
                "malformed-json",
                "Malformed JSON body",
            ),
            MissingIdentity => (
                StatusCode::UNAUTHORIZED,
                "missing-identity",
                "No account identity",
            ),
            Unauthenticated(TokenError::Missing) => (
                StatusCode::UNAUTHORIZED,
                "missing-token",
                "Bearer token required",
            ),
            Unauthenticated(TokenError::Invalid(_)) => (
                StatusCode::UNAUTHORIZED,
                "invalid-token",
                "Bearer token refused",
            ),
            MissingAdminToken => (
                StatusCode::UNAUTHORIZED,
                "missing-admin-token",
                "Admin token required",
            ),
            WrongAdminToken => (
                StatusCode::FORBIDDEN,
                "wrong-admin-token",
                "Admin token not accepted",
            ),
            RouteNotFound => (StatusCode::NOT_FOUND, "not-found", "No such resource"),
            StreamNotFound => (StatusCode::NOT_FOUND, "stream-not-found", "No such stream"),
            MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            LimitReached { .. } => (
                StatusCode::CONFLICT,
                "stream-limit-reached",
                "Stream limit reached",
            ),
            MissingAttribute { .. } => (
                StatusCode::BAD_REQUEST,
                "missing-attribute",
                "Missing stream attribute",
            ),
            StreamIdConflict => (
                StatusCode::CONFLICT,
                "stream-id-conflict",
                "Stream id in use by another device",
            ),
            StreamEnded(_) => (StatusCode::GONE, "stream-ended", "Stream has ended"),
            PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Body too large",
            ),
            BodyTimeout => (StatusCode::REQUEST_TIMEOUT, "body-timeout", "Body too slow"),
            UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Body must be application/json",
            ),
            StoreUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "store-unavailable",
                "Store unavailable",
            ),
            Draining => (StatusCode::SERVICE_UNAVAILABLE, "draining", "Shutting down"),
            MissingGrant => (
                StatusCode::UNAUTHORIZED,
                "missing-grant",
                "Playback grant required",
            ),
            GrantRefused(_) => (
                StatusCode::FORBIDDEN,
                "grant-refused",
                "Playback grant refused",
            ),
            Throttled { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
            ),
        }
    }

    fn detail(&self) -> String {
        use ApiError::*;
        match self {
            InvalidRequest(d) | MalformedJson(d) => d.clone(),
            MissingIdentity => "send the account id in the X-ID header".into(),
            Unauthenticated(e) => e.to_string(),
            MissingAdminToken => "send Authorization: Bearer <admin token>".into(),
            WrongAdminToken => "the bearer token does not match the admin token".into(),
            RouteNotFound => "no route matches this path".into(),
            StreamNotFound => "this account has no such stream".into(),
            MethodNotAllowed => "this route does not accept that method".into(),
            LimitReached { rule, limit: 0, .. } if rule == crate::domain::ACCOUNT_RULE => {
                "this account may not start streams (its limit is 0)".into()
            }
            LimitReached { rule, limit: 0, .. } => {
                format!("the account's plan allows no such stream (rule {rule})")
            }
            LimitReached {
                rule,
                limit,
                active,
                ..
            } if rule == crate::domain::ACCOUNT_RULE => format!(
                "the account already watches {active} of {limit} allowed streams; stop one to start another"
            ),
            LimitReached {
                rule,
                limit,
                active,
                ..
            } => format!(
                "rule {rule} of the account's plan allows {limit} such {} and {active} {} live; stop one to start another",
                if *limit == 1 { "stream" } else { "streams" },
                if *active == 1 { "is" } else { "are" },
            ),
            MissingAttribute { rule, attribute } => format!(
                "rule {rule} of the account's plan requires `{attribute}` on every start"
            ),
            StreamIdConflict => {
                "this stream id is live on another device; start with a new stream id".into()
            }
            StreamEnded(reason) => format!("the stream ended ({}); stop playback", reason.as_str()),
            PayloadTooLarge => "the body is larger than 16 KiB".into(),
            BodyTimeout => format!(
                "the body had not arrived {} s after the headers",
                super::BODY_TIMEOUT.as_secs()
            ),
            UnsupportedMediaType => "send Content-Type: application/json".into(),
            StoreUnavailable => "the limiter's store did not answer in time; retry shortly".into(),
            Draining => "this instance is shutting down; use another one".into(),
            MissingGrant => {
                "send the grant as ?grant=, a Streamguard-Grant header or a streamguard_grant cookie"
                    .into()
            }
            GrantRefused(reason) => format!("the grant does not open this content ({})", reason.as_str()),
            Throttled { retry_after_s } => {
                format!("too many requests for this stream or account; retry in {retry_after_s} s")
            }
        }
    }

    /// Seconds the client should wait before retrying, if it should.
    fn retry_after(&self) -> Option<HeaderValue> {
        match self {
            ApiError::StoreUnavailable => Some(HeaderValue::from_static(RETRY_AFTER_SECS)),
            ApiError::Throttled { retry_after_s } => Some(HeaderValue::from(*retry_after_s)),
            _ => None,
        }
    }

    /// The body of this answer.
    fn problem(self) -> Problem {
        let (status, slug, title) = self.parts();
        let detail = self.detail();
        let mut problem = Problem {
            kind: format!("urn:streamguard:problem:{slug}"),
            title,
            status: status.as_u16(),
            detail,
            rule: None,
            limit: None,
            active: None,
            streams: None,
            conflicts: None,
            attribute: None,
            reason: None,
        };
        match self {
            ApiError::LimitReached {
                rule,
                limit,
                active,
                streams,
                conflicts,
            } => {
                problem.rule = Some(rule);
                problem.limit = Some(limit);
                problem.active = Some(active);
                problem.streams = Some(streams);
                problem.conflicts = Some(conflicts);
            }
            ApiError::MissingAttribute { rule, attribute } => {
                problem.rule = Some(rule);
                problem.attribute = Some(attribute);
            }
            ApiError::StreamEnded(reason) => problem.reason = Some(reason.as_str()),
            ApiError::GrantRefused(reason) => problem.reason = Some(reason.as_str()),
            _ => {}
        }
        problem
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.parts().0;
        let retry_after = self.retry_after();
        let edge_reason = match &self {
            ApiError::GrantRefused(reason) => Some(reason.as_str()),
            ApiError::MissingGrant => Some("missing"),
            _ => None,
        };
        let challenge = match &self {
            ApiError::Unauthenticated(TokenError::Missing) => Some("Bearer"),
            ApiError::Unauthenticated(TokenError::Invalid(_)) => {
                Some("Bearer error=\"invalid_token\"")
            }
            _ => None,
        };
        let body = serde_json::to_string(&self.problem()).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(challenge) = challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        if let Some(value) = retry_after {
            headers.insert(header::RETRY_AFTER, value);
        }
        if let Some(reason) = edge_reason {
            headers.insert(REASON_HEADER, HeaderValue::from_static(reason));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused_by(rule: &str, limit: u32, active: usize) -> String {
        ApiError::LimitReached {
            rule: rule.into(),
            limit,
            active,
            streams: Vec::new(),
            conflicts: Vec::new(),
        }
        .detail()
    }

    #[test]
    fn a_rule_refusal_counts_its_streams_in_good_english() {
        assert_eq!(
            refused_by("uhd", 1, 1),
            "rule uhd of the account's plan allows 1 such stream and 1 is live; stop one to start another"
        );
        assert_eq!(
            refused_by("uhd", 2, 2),
            "rule uhd of the account's plan allows 2 such streams and 2 are live; stop one to start another"
        );
    }
}
