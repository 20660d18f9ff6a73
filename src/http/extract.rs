//! Extractors that turn every bad request into our problem+json answers.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderName, header};
use serde::de::DeserializeOwned;

use super::AppState;
use super::bearer::{Bearer, bearer};
use super::error::ApiError;
use crate::auth::{Authenticator, Caller, TokenError};
use crate::domain::{InvalidId, PlanName, StreamId, UserId};

/// The account a request acts for: the `X-ID` header in header mode, the
/// verified bearer token's `sub` (and plan limit) in JWT mode.
pub struct Identity(pub Caller);

impl FromRequestParts<AppState> for Identity {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = caller(parts, state).await?;
        // A named plan must be one the plans file defines, now.
        if let (Some(name), Some(book)) = (&caller.plan, &state.policy.plans)
            && book.current().get(name).is_none()
        {
            return Err(match state.auth {
                Authenticator::Header => ApiError::InvalidRequest(format!(
                    "{}: no plan is named {name}",
                    state.plan_header.as_ref().map_or("plan", |h| h.as_str())
                )),
                Authenticator::Jwt(_) => ApiError::Unauthenticated(TokenError::invalid(
                    "the token's plan claim names no plan of this service",
                )),
            });
        }
        Ok(Identity(caller))
    }
}

async fn caller(parts: &Parts, state: &AppState) -> Result<Caller, ApiError> {
    match &state.auth {
        Authenticator::Header => {
            let mut caller = Caller::new(header_identity(parts)?);
            if let Some(header) = &state.plan_header {
                caller.plan = plan_header(parts, header)?;
            }
            Ok(caller)
        }
        Authenticator::Jwt(verifier) => {
            let token = match bearer(&parts.headers) {
                Bearer::Token(token) => token,
                Bearer::Absent => return Err(ApiError::Unauthenticated(TokenError::Missing)),
                Bearer::Malformed => {
                    return Err(ApiError::Unauthenticated(TokenError::invalid(
                        "the Authorization header is not one Bearer token",
                    )));
                }
            };
            verifier
                .verify(token, state.clock.now())
                .await
                .map_err(ApiError::Unauthenticated)
        }
    }
}

/// The plan a gateway names in `--plan-header`; absent is no plan.
fn plan_header(parts: &Parts, header: &HeaderName) -> Result<Option<PlanName>, ApiError> {
    let mut values = parts.headers.get_all(header).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::InvalidRequest(format!(
            "send one {header} header, not several"
        )));
    }
    value
        .to_str()
        .ok()
        .and_then(|s| PlanName::parse(s).ok())
        .map(Some)
        .ok_or_else(|| ApiError::InvalidRequest(format!("{header}: not a plan name")))
}

fn header_identity(parts: &Parts) -> Result<UserId, ApiError> {
    let mut values = parts.headers.get_all("x-id").iter();
    let value = values.next().ok_or(ApiError::MissingIdentity)?;
    if values.next().is_some() {
        return Err(ApiError::InvalidRequest(
            "send one X-ID header, not several".into(),
        ));
    }
    let text = value.to_str().map_err(|_| {
        ApiError::InvalidRequest("X-ID: user id may only contain A-Z a-z 0-9 . _ : @ -".into())
    })?;
    UserId::parse(text).map_err(|e| ApiError::InvalidRequest(format!("X-ID: {e}")))
}

/// A JSON body that may also be absent (`None` for an empty body).
pub struct JsonBody<T>(pub Option<T>);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(is_json_content_type);
        let bytes = Bytes::from_request(req, state).await.map_err(|e| match e {
            BytesRejection::FailedToBufferBody(_) if e.status() == 413 => ApiError::PayloadTooLarge,
            other => ApiError::MalformedJson(other.body_text()),
        })?;
        if bytes.is_empty() {
            return Ok(JsonBody(None));
        }
        if json_type != Some(true) {
            return Err(ApiError::UnsupportedMediaType);
        }
        // serde would also read an array as the struct's fields in order.
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first != Some(&b'{') {
            return Err(ApiError::MalformedJson(
                "the body must be a JSON object".into(),
            ));
        }
        serde_json::from_slice(&bytes)
            .map(|v| JsonBody(Some(v)))
            .map_err(|e| ApiError::MalformedJson(e.to_string()))
    }
}

pub(super) fn is_json_content_type(value: &str) -> bool {
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn path_id<T>(what: &str, parsed: Result<T, InvalidId>) -> Result<T, ApiError> {
    parsed.map_err(|e| ApiError::InvalidRequest(format!("{what} in the path: {e}")))
}

async fn path_segments<const N: usize>(
    parts: &mut Parts,
    state: &AppState,
) -> Result<[String; N], ApiError>
where
    [String; N]: DeserializeOwned,
{
    Path::<[String; N]>::from_request_parts(parts, state)
        .await
        .map(|Path(p)| p)
        .map_err(|e| ApiError::InvalidRequest(e.body_text()))
}

/// `{id}`: a stream of the calling account.
pub struct StreamPath(pub StreamId);

impl FromRequestParts<AppState> for StreamPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let [id] = path_segments(parts, state).await?;
        Ok(StreamPath(path_id("stream id", StreamId::try_from(id))?))
    }
}

/// `{user}`: an account named by an admin route.
pub struct UserPath(pub UserId);

impl FromRequestParts<AppState> for UserPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let [user] = path_segments(parts, state).await?;
        Ok(UserPath(path_id("user id", UserId::try_from(user))?))
    }
}

/// `{user}/streams/{id}`: a stream of an account named by an admin route.
pub struct UserStreamPath(pub UserId, pub StreamId);

impl FromRequestParts<AppState> for UserStreamPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let [user, id] = path_segments(parts, state).await?;
        Ok(UserStreamPath(
            path_id("user id", UserId::try_from(user))?,
            path_id("stream id", StreamId::try_from(id))?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::is_json_content_type;

    #[test]
    fn json_content_types() {
        assert!(is_json_content_type("application/json"));
        assert!(is_json_content_type("Application/JSON; charset=utf-8"));
        assert!(is_json_content_type("application/merge-patch+json"));
        assert!(!is_json_content_type("text/plain"));
        assert!(!is_json_content_type("application/x-www-form-urlencoded"));
    }
}
