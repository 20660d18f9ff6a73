//! The Lambda entry point: recorded API Gateway events through the router,
//! and the real binary against an emulated Lambda Runtime API.
#![cfg(feature = "lambda")]

#[cfg(feature = "dynamodb")]
#[path = "../common/dynamodb.rs"]
mod emulator;
mod events;
#[cfg(feature = "dynamodb")]
mod runtime;

/// The recorded API Gateway events in tests/fixtures.
pub mod fixtures {
    /// REST API (payload v1) on stage `prod`: POST /streams, starts `tv-1`.
    pub const V1_START: &str = include_str!("../fixtures/apigw-v1-rest-start.json");
    /// REST API (payload v1) on stage `prod`: the legacy GET /streams.
    pub const V1_LIST: &str = include_str!("../fixtures/apigw-v1-rest-list.json");
    /// HTTP API (payload v2), `$default` stage: heartbeat of `tv-1`.
    pub const V2_HEARTBEAT: &str = include_str!("../fixtures/apigw-v2-http-heartbeat.json");
    /// HTTP API (payload v2) on stage `prod`, base64 body: starts `phone-1`.
    pub const V2_STAGED_START: &str = include_str!("../fixtures/apigw-v2-http-staged-start.json");
    /// HTTP API (payload v2) on stage `prod` with a bearer token (HS256,
    /// secret `lambda-fixture-secret-0123456789`, `sub` alice, `screens` 2)
    /// and an `X-ID: mallory` that JWT mode ignores: starts `tablet-1`.
    pub const V2_JWT_START: &str = include_str!("../fixtures/apigw-v2-http-jwt-start.json");
}
