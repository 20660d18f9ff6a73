//! The operator's web console: static files compiled into the binary,
//! served under `/console/` only when an admin token is configured (like
//! the admin API it calls). The page itself holds no secret; the operator
//! types the admin token, which stays in the browser's session storage.

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::ApiError;

/// `(file name, content type, bytes)` of every console file.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        HTML,
        include_bytes!("../../web/console/index.html"),
    ),
    (
        "demo.html",
        HTML,
        include_bytes!("../../web/console/demo.html"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../../web/console/style.css"),
    ),
    ("app.js", JS, include_bytes!("../../web/console/app.js")),
    ("demo.js", JS, include_bytes!("../../web/console/demo.js")),
    (
        "charts.js",
        JS,
        include_bytes!("../../web/console/charts.js"),
    ),
    ("prom.js", JS, include_bytes!("../../web/console/prom.js")),
    // The player SDK, as published: the demo page runs simulated players with it.
    (
        "sdk.js",
        JS,
        include_bytes!("../../clients/js/src/index.js"),
    ),
];

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// Only same-origin scripts, styles and calls: the console talks to the
/// server that serves it and nothing else.
const CSP: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

// `super::routes` mounts these only with `--admin-token`.

pub(super) async fn root() -> Redirect {
    Redirect::permanent("/console/")
}

pub(super) async fn index() -> Result<Response, ApiError> {
    serve("index.html")
}

pub(super) async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    serve(&file)
}

fn serve(file: &str) -> Result<Response, ApiError> {
    let (_, content_type, bytes) = ASSETS
        .iter()
        .find(|(name, _, _)| *name == file)
        .ok_or(ApiError::RouteNotFound)?;
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        *bytes,
    )
        .into_response())
}
