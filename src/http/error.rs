//! Every error answer: RFC 9457 `application/problem+json`, mapped in one place.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::dto::{EndReasonDto, StreamDto};
use crate::auth::TokenError;
use crate::domain::EndReason;

pub const PROBLEM_JSON: &str = "application/problem+json";

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
    /// 409 `stream-limit-reached`: the account's limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// 409 `stream-limit-reached`: how many streams are live.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<usize>,
    /// 409 `stream-limit-reached`: the live streams, so the player can
    /// offer to stop one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub streams: Option<Vec<StreamDto>>,
    /// 410 `stream-ended`: why the stream ended; the player must stop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<EndReasonDto>,
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
    LimitReached {
        limit: u32,
        active: usize,
        streams: Vec<StreamDto>,
    },
    /// A start named a stream that is live on another device.
    StreamIdConflict,
    StreamEnded(EndReason),
    PayloadTooLarge,
    UnsupportedMediaType,
    /// The store failed or timed out; the cause was logged where it happened.
    StoreUnavailable,
    /// Shutdown has started (`/readyz`).
    Draining,
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
            LimitReached { limit: 0, .. } => {
                "this account may not start streams (its limit is 0)".into()
            }
            LimitReached { limit, active, .. } => format!(
                "the account already watches {active} of {limit} allowed streams; stop one to start another"
            ),
            StreamIdConflict => {
                "this stream id is live on another device; start with a new stream id".into()
            }
            StreamEnded(reason) => format!("the stream ended ({}); stop playback", reason.as_str()),
            PayloadTooLarge => "the body is larger than 16 KiB".into(),
            UnsupportedMediaType => "send Content-Type: application/json".into(),
            StoreUnavailable => "the limiter's store did not answer in time; retry shortly".into(),
            Draining => "this instance is shutting down; use another one".into(),
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
            limit: None,
            active: None,
            streams: None,
            reason: None,
        };
        match self {
            ApiError::LimitReached {
                limit,
                active,
                streams,
            } => {
                problem.limit = Some(limit);
                problem.active = Some(active);
                problem.streams = Some(streams);
            }
            ApiError::StreamEnded(reason) => problem.reason = Some(reason.into()),
            _ => {}
        }
        problem
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.parts().0;
        let retry_after = self.retry_after();
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
        response
    }
}
