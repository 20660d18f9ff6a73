//! The yardstick of the benchmarks: the smallest axum server that answers
//! JSON, on the same runtime and allocator as streamguard.
//! `cargo run --release --example hello_json -- 127.0.0.1:18090`

use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn hello() -> Json<Value> {
    Json(json!({ "hello": "world" }))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18090".into());
    let app = Router::new().route("/", get(hello)).fallback(post(hello));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await
}
