//! Bad input gets a clear 4xx problem and changes nothing.

use axum::http::Method;
use serde_json::json;

use crate::support::{TestApp, app};

/// Starts one stream so that "changes nothing" has something to keep.
async fn app_with_one_stream() -> TestApp {
    let app = app(&[]).await;
    let reply = app
        .post("/streams")
        .user("u")
        .json(json!({"stream_id": "keep"}))
        .send()
        .await;
    assert_eq!(reply.status, 201);
    app
}

async fn assert_unchanged(app: &TestApp) {
    assert_eq!(app.live("u").await, ["keep"]);
}

#[tokio::test]
async fn missing_or_invalid_identity() {
    let app = app_with_one_stream().await;
    app.get("/streams")
        .send()
        .await
        .problem(401, "missing-identity");
    app.post("/streams")
        .send()
        .await
        .problem(401, "missing-identity");
    app.post("/streams/keep/heartbeat")
        .send()
        .await
        .problem(401, "missing-identity");
    app.delete("/streams/keep")
        .send()
        .await
        .problem(401, "missing-identity");
    for bad in ["has space", "sl/ash", &"x".repeat(129)] {
        let reply = app.delete("/streams/keep").header("x-id", bad).send().await;
        reply.problem(400, "invalid-request");
    }
    assert_unchanged(&app).await;
}

#[tokio::test]
async fn malformed_json_and_wrong_types_are_400() {
    let app = app_with_one_stream().await;
    for body in [
        "{",
        "[]",
        "null",
        // serde's derive would read an array as the fields in order.
        r#"["s-2", null, null, []]"#,
        "  \n [\"s-2\"]",
        r#"{"stream_id": 5}"#,
        r#"{"terminate": "keep"}"#,
        r#"{"device_id": ["a"]}"#,
    ] {
        let reply = app
            .post("/streams")
            .user("u")
            .raw("application/json", body)
            .send()
            .await;
        reply.problem(400, "malformed-json");
    }
    assert_unchanged(&app).await;
}

#[tokio::test]
async fn invalid_ids_in_the_body_are_400_and_name_the_field() {
    let app = app_with_one_stream().await;
    for (field, value) in [("stream_id", "a b"), ("device_id", ""), ("content_id", "é")] {
        let reply = app
            .post("/streams")
            .user("u")
            .json(json!({ field: value }))
            .send()
            .await;
        let problem = reply.problem(400, "invalid-request");
        assert!(
            problem["detail"].as_str().unwrap().starts_with(field),
            "{problem}"
        );
    }
    let reply = app
        .post("/streams")
        .user("u")
        .json(json!({"stream_id": "new", "terminate": ["keep", "no good"]}))
        .send()
        .await;
    reply.problem(400, "invalid-request");
    assert_unchanged(&app).await;
}

#[tokio::test]
async fn invalid_ids_in_the_path_are_400() {
    let app = app_with_one_stream().await;
    let long = format!("/streams/{}/heartbeat", "x".repeat(129));
    app.post(&long)
        .user("u")
        .send()
        .await
        .problem(400, "invalid-request");
    app.post("/streams/a%20b/heartbeat")
        .user("u")
        .send()
        .await
        .problem(400, "invalid-request");
    app.delete("/streams/%F0%9F%8E%AC")
        .user("u")
        .send()
        .await
        .problem(400, "invalid-request");
    assert_unchanged(&app).await;
}

/// The content types an HTML form of another site sends without a
/// preflight: refused on every route that changes state, even with no
/// body, so a cross-site form cannot start, stop or renew anything behind
/// a gateway that sets `X-ID` from a cookie.
#[tokio::test]
async fn form_content_types_are_415_on_state_changing_routes_even_without_a_body() {
    let app = crate::support::app(&["--admin-token", crate::support::ADMIN_TOKEN]).await;
    let started = app
        .post("/streams")
        .user("u")
        .json(json!({"stream_id": "keep"}))
        .send()
        .await;
    assert_eq!(started.status, 201);
    for content_type in [
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "text/plain",
        "TEXT/PLAIN; charset=utf-8",
    ] {
        for (method, path) in [
            (Method::POST, "/streams"),
            (Method::POST, "/streams/keep/heartbeat"),
            (Method::DELETE, "/streams/keep"),
            (Method::PUT, "/admin/users/u/limit"),
            (Method::DELETE, "/admin/users/u/streams/keep"),
        ] {
            let reply = app
                .call(method.clone(), path)
                .user("u")
                .admin()
                .raw(content_type, "")
                .send()
                .await;
            reply.problem(415, "unsupported-media-type");
        }
    }
    assert_eq!(app.live("u").await, ["keep"], "nothing changed");
    // No content type, or JSON's, with no body: as before.
    let bare = app.post("/streams").user("v").send().await;
    assert_eq!(bare.status, 201, "{}", bare.text);
    let json_empty = app
        .post("/streams")
        .user("v")
        .raw("application/json", "")
        .send()
        .await;
    assert_eq!(json_empty.status, 201, "{}", json_empty.text);
    let read = app
        .get("/streams")
        .user("u")
        .raw("text/plain", "")
        .send()
        .await;
    assert_eq!(read.status, 200, "reads change nothing: {}", read.text);
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415() {
    let app = app_with_one_stream().await;
    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        let reply = app
            .post("/streams")
            .user("u")
            .raw(content_type, r#"{"stream_id":"x"}"#)
            .send()
            .await;
        reply.problem(415, "unsupported-media-type");
    }
    let reply = app
        .post("/streams")
        .user("u")
        .header("content-length", "2")
        .raw("application/json; charset=utf-8", "{}")
        .send()
        .await;
    assert_eq!(reply.status, 201, "a charset parameter is fine");
}

#[tokio::test]
async fn a_body_over_16_kib_is_413() {
    let app = app_with_one_stream().await;
    let terminate: Vec<String> = (0..2000).map(|i| format!("stream-{i}")).collect();
    let body = json!({ "terminate": terminate }).to_string();
    assert!(body.len() > 16 * 1024);
    let reply = app
        .post("/streams")
        .user("u")
        .raw("application/json", body)
        .send()
        .await;
    reply.problem(413, "payload-too-large");
    assert_unchanged(&app).await;
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405() {
    let app = app_with_one_stream().await;
    app.get("/nope")
        .user("u")
        .send()
        .await
        .problem(404, "not-found");
    app.get("/streams/keep/heartbeat/extra")
        .user("u")
        .send()
        .await
        .problem(404, "not-found");
    for (method, path) in [
        (Method::PUT, "/streams"),
        (Method::GET, "/streams/keep/heartbeat"),
        (Method::PATCH, "/streams/keep"),
        (Method::POST, "/healthz"),
    ] {
        app.call(method, path)
            .user("u")
            .send()
            .await
            .problem(405, "method-not-allowed");
    }
    assert_unchanged(&app).await;
}
