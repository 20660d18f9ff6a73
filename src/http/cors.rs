//! Cross-origin calls from players in web pages (`--cors-origins`): the
//! player API answers preflights and names the allowed origin, so a page on
//! `https://www.example.com` can call a service on another origin. Only the
//! player routes take part; the admin API and the console stay same-origin.

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::middleware::REQUEST_ID;

/// The paths of the player API; the others never answer another origin.
const PLAYER_API: &str = "/streams";

/// How long a browser may reuse a preflight answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// The CORS layer for `origins`, or `None` when no origin is allowed.
pub fn layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let any = origins.iter().any(|o| o == "*");
    let listed: Vec<HeaderValue> = origins
        .iter()
        .filter(|o| *o != "*")
        .map(|o| HeaderValue::from_str(o).expect("checked by the flag's parser"))
        .collect();
    let allowed = AllowOrigin::predicate(move |origin, request| {
        request.uri.path().starts_with(PLAYER_API) && (any || listed.contains(origin))
    });
    Some(
        CorsLayer::new()
            .allow_origin(allowed)
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("x-id"),
                REQUEST_ID,
                HeaderName::from_static("streamguard-lease-secret"),
                HeaderName::from_static("streamguard-grant"),
            ])
            // What the SDK reads: where a new stream lives, when to retry,
            // and the id to quote in a support ticket.
            .expose_headers([header::LOCATION, header::RETRY_AFTER, REQUEST_ID])
            .max_age(PREFLIGHT_MAX_AGE),
    )
}
