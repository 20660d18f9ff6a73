//! API Gateway events, as recorded, through the same router the HTTP server
//! uses: both payload versions, named and `$default` stages.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Response, StatusCode};
use clap::Parser;
use http_body_util::BodyExt;
use serde_json::Value;
use streamguard::config::Cli;
use streamguard::domain::{ManualClock, Timestamp};
use tower::ServiceExt;

use crate::fixtures;

/// The Lambda handler over a memory store whose accounts may hold one stream.
async fn handler() -> impl tower::Service<
    lambda_http::Request,
    Response = Response<Body>,
    Error = std::convert::Infallible,
    Future: Send,
> + Clone {
    handler_with(&[]).await
}

async fn handler_with(
    args: &[&str],
) -> impl tower::Service<
    lambda_http::Request,
    Response = Response<Body>,
    Error = std::convert::Infallible,
    Future: Send,
> + Clone {
    let base = ["streamguard", "--store", "memory", "--default-limit", "1"];
    let config = Cli::try_parse_from(base.iter().chain(args)).unwrap().config;
    let clock = ManualClock::new(Timestamp::from_millis(1_795_770_000_000));
    let state = streamguard::app_state(&config, Arc::new(clock))
        .await
        .unwrap();
    streamguard::lambda::handler(state)
}

async fn send(
    handler: &(
         impl tower::Service<
        lambda_http::Request,
        Response = Response<Body>,
        Error = std::convert::Infallible,
        Future: Send,
    > + Clone
     ),
    event: &str,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let request =
        lambda_http::request::from_str(event).expect("the fixture is an API Gateway event");
    let response = handler.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (parts.status, parts.headers, json)
}

#[tokio::test]
async fn rest_and_http_api_events_reach_the_routes_through_any_stage() {
    let handler = handler().await;

    let (status, headers, body) = send(&handler, fixtures::V1_START).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["stream"]["id"], "tv-1");
    assert_eq!(body["stream"]["user_id"], "alice");
    assert_eq!(
        headers["location"], "/prod/streams/tv-1",
        "the Location keeps the stage the client called"
    );

    let (status, _, body) = send(&handler, fixtures::V1_LIST).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["active"], 1);
    assert_eq!(body["streams"][0]["id"], "tv-1");

    let (status, _, body) = send(&handler, fixtures::V2_HEARTBEAT).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["stream"]["id"], "tv-1");

    let (status, headers, body) = send(&handler, fixtures::V2_STAGED_START).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(body["type"], "urn:streamguard:problem:stream-limit-reached");
    assert_eq!(body["streams"][0]["id"], "tv-1");
}

#[tokio::test]
async fn a_stage_is_taken_off_only_as_a_whole_leading_segment() {
    let handler = handler().await;
    // The stage is `prod`; `/production/streams` is not under it.
    let event = fixtures::V2_STAGED_START.replace(
        "\"rawPath\": \"/prod/streams\"",
        "\"rawPath\": \"/production/streams\"",
    );
    let (status, _, body) = send(&handler, &event).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn jwt_identity_works_in_lambda_too() {
    let handler = handler_with(&[
        "--auth",
        "jwt",
        "--jwt-secret",
        "lambda-fixture-secret-0123456789",
        "--jwt-limit-claim",
        "screens",
    ])
    .await;
    let (status, headers, body) = send(&handler, fixtures::V2_JWT_START).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["stream"]["user_id"], "alice",
        "the token's sub, not X-ID"
    );
    assert_eq!(body["limit"], 2, "the plan claim, over the default of 1");
    assert_eq!(headers["location"], "/prod/streams/tablet-1");

    // The header-mode fixtures carry no token.
    let (status, headers, body) = send(&handler, fixtures::V1_LIST).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(headers["www-authenticate"], "Bearer");

    let forged = fixtures::V2_JWT_START.replace("Bearer eyJ", "Bearer eyK");
    let (status, headers, _) = send(&handler, &forged).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        headers["www-authenticate"],
        "Bearer error=\"invalid_token\""
    );
}
