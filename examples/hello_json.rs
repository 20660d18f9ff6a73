//! The yardstick of the benchmarks: the smallest axum server that answers
//! JSON, on the same runtime and allocator as streamguard.
//! `cargo run --release --example hello_json -- 127.0.0.1:18090`
//!
//! With a second argument `heartbeat-sized`, it answers every request with
//! a heartbeat's answer instead: the same JSON fields, about 226 bytes, and
//! an `X-Request-Id` header, still without looking anything up. What that
//! costs over the plain hello is what the size of a heartbeat's answer
//! costs (BENCHMARKS.md, "What a heartbeat costs").

use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn hello() -> Json<Value> {
    Json(json!({ "hello": "world" }))
}

async fn heartbeat_sized() -> Response {
    let mut response = Json(json!({ "stream": {
        "id": "str-000000000000",
        "user_id": "acct-0000000000",
        "device_id": "dev-000000000000",
        "content_id": "movie-0",
        "started_at": "2026-12-06T06:23:22.795Z",
        "expires_at": "2026-12-06T07:23:24.330Z",
        "heartbeat_interval_s": 1200,
    }}))
    .into_response();
    response.headers_mut().insert(
        "x-request-id",
        HeaderValue::from_static("0c09b68158ee42958e7cd25ec9fdf461-1"),
    );
    response
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:18090".into());
    let app = match args.next().as_deref() {
        Some("heartbeat-sized") => Router::new()
            .route("/", get(heartbeat_sized))
            .fallback(post(heartbeat_sized)),
        _ => Router::new().route("/", get(hello)).fallback(post(hello)),
    };
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await
}
