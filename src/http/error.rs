//! Every error answer: RFC 9457 `application/problem+json`, mapped in one place.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::dto::StreamDto;
use super::edge::EdgeRefusal;
use crate::auth::TokenError;
use crate::domain::EndReason;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// The short reason of an `/edge/verify` refusal, for the edge to pass on.
pub const REASON_HEADER: &str = "streamguard-reason";

/// Seconds a client is told to wait after a 503.
const RETRY_AFTER_SECS: &str = "1";

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

    fn extensions(self) -> Map<String, Value> {
        let mut ext = Map::new();
        match self {
            ApiError::LimitReached {
                limit,
                active,
                streams,
            } => {
                ext.insert("limit".into(), json!(limit));
                ext.insert("active".into(), json!(active));
                ext.insert("streams".into(), json!(streams));
            }
            ApiError::StreamEnded(reason) => {
                ext.insert("reason".into(), json!(reason.as_str()));
            }
            ApiError::GrantRefused(reason) => {
                ext.insert("reason".into(), json!(reason.as_str()));
            }
            _ => {}
        }
        ext
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, slug, title) = self.parts();
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
        let mut body = Map::new();
        body.insert(
            "type".into(),
            json!(format!("urn:streamguard:problem:{slug}")),
        );
        body.insert("title".into(), json!(title));
        body.insert("status".into(), json!(status.as_u16()));
        body.insert("detail".into(), json!(self.detail()));
        body.extend(self.extensions());
        let mut response = (status, Value::Object(body).to_string()).into_response();
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
