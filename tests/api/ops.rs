//! Health, readiness, metrics, request ids and the API description.

use serde_json::Value;

use crate::support::app;

#[tokio::test]
async fn the_legacy_health_check_is_kept() {
    let app = app(&[]).await;
    let reply = app.get("/").send().await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text, "ITS WORKING");
    assert!(reply.content_type().starts_with("text/plain"));
}

#[tokio::test]
async fn health_and_readiness() {
    let app = app(&[]).await;
    assert_eq!(app.get("/healthz").send().await.status, 200);
    assert_eq!(app.get("/readyz").send().await.status, 200);
}

#[tokio::test]
async fn request_ids_are_taken_or_made_and_returned() {
    let app = app(&[]).await;
    let given = app
        .get("/healthz")
        .header("x-request-id", "abc-123")
        .send()
        .await;
    assert_eq!(given.headers["x-request-id"], "abc-123");
    let first = app.get("/healthz").send().await.headers["x-request-id"].clone();
    let second = app.get("/healthz").send().await.headers["x-request-id"].clone();
    assert!(first.len() > 32, "a random prefix and a counter: {first:?}");
    assert_ne!(first, second, "every request gets its own id");
    let problem = app.get("/missing").send().await;
    assert!(
        problem.headers.contains_key("x-request-id"),
        "errors carry the id too"
    );
}

#[tokio::test]
async fn metrics_count_requests_and_decisions_without_account_ids() {
    let app = app(&["--default-limit", "1"]).await;
    let start = |id: &'static str| {
        app.post("/streams")
            .user("secret-account-42")
            .json(serde_json::json!({ "stream_id": id }))
            .send()
    };
    start("s1").await;
    start("s2").await;
    app.post("/streams/s1/heartbeat")
        .user("secret-account-42")
        .send()
        .await;
    app.delete("/streams/s1")
        .user("secret-account-42")
        .send()
        .await;
    let reply = app.get("/metrics").send().await;
    assert_eq!(reply.status, 200);
    let text = reply.text;
    for needle in [
        "streamguard_http_requests_total{",
        r#"route="/streams""#,
        r#"status="409""#,
        "streamguard_http_request_duration_seconds_bucket",
        r#"streamguard_decisions_total{outcome="granted"}"#,
        r#"streamguard_decisions_total{outcome="denied"}"#,
        r#"streamguard_decisions_total{outcome="renewed"}"#,
        r#"streamguard_decisions_total{outcome="stopped"}"#,
        "streamguard_store_call_duration_seconds_bucket",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    assert!(!text.contains("secret-account-42"));
}

#[tokio::test]
async fn unknown_methods_share_one_metric_label() {
    let app = app(&[]).await;
    let odd = axum::http::Method::from_bytes(b"FROBNICATE").unwrap();
    app.call(odd, "/streams")
        .user("u")
        .send()
        .await
        .problem(405, "method-not-allowed");
    let text = app.get("/metrics").send().await.text;
    assert!(text.contains(r#"method="other""#), "{text}");
    assert!(!text.contains("FROBNICATE"));
}

/// `--admin-token` and `--grant-key`: every route is served.
fn everything() -> Vec<String> {
    let key = crate::tokens::key_path("grant-ed25519.pem");
    vec![
        "--admin-token".into(),
        crate::support::ADMIN_TOKEN.into(),
        "--grant-key".into(),
        key.to_str().unwrap().into(),
    ]
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let args = everything();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let app = app(&args).await;
    let doc: Value = app.get("/openapi.json").send().await.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/admin/metrics", "get"),
        ("/openapi.json", "get"),
        ("/.well-known/jwks.json", "get"),
        ("/edge/verify", "get"),
        ("/streams", "get"),
        ("/streams", "post"),
        ("/streams/{id}/heartbeat", "post"),
        ("/streams/{id}", "delete"),
        ("/admin/users/{user}/streams", "get"),
        ("/admin/users/{user}/streams/{id}", "delete"),
        ("/admin/users/{user}/limit", "get"),
        ("/admin/users/{user}/limit", "put"),
        ("/admin/users/{user}/limit", "delete"),
        ("/admin/users/{user}/plan", "get"),
        ("/admin/users/{user}/plan", "put"),
        ("/admin/users/{user}/plan", "delete"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path}"
        );
    }
    assert_eq!(paths.len(), 15, "no undocumented or stale paths");
    assert!(doc["components"]["schemas"]["StartResponse"].is_object());
    assert!(doc["components"]["schemas"]["Problem"].is_object());
}

#[tokio::test]
async fn the_document_lists_only_the_routes_this_configuration_serves() {
    let doc: Value = app(&[]).await.get("/openapi.json").send().await.json();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.get("/streams").is_some());
    for absent in [
        "/.well-known/jwks.json",
        "/admin/metrics",
        "/admin/users/{user}/limit",
    ] {
        assert!(paths.get(absent).is_none(), "{absent} is not served");
    }
    let doc: Value = app(&["--metrics-listen", "127.0.0.1:0"])
        .await
        .get("/openapi.json")
        .send()
        .await
        .json();
    assert!(doc["paths"].get("/metrics").is_none());
}

/// The router and the document cannot disagree: in every configuration,
/// every documented operation reaches a handler (no 404 `not-found`, no
/// 405), and every path of the surface left out of the document answers
/// 404 to every method, as a path that does not exist.
#[tokio::test]
async fn the_router_serves_exactly_what_the_document_lists() {
    use axum::http::Method;
    let everything = everything();
    let configurations: Vec<Vec<&str>> = vec![
        vec![],
        everything.iter().map(String::as_str).collect(),
        vec![
            "--metrics-listen",
            "127.0.0.1:0",
            "--admin-token",
            crate::support::ADMIN_TOKEN,
        ],
    ];
    let pages = ["/console", "/console/", "/console/{file}"];
    for args in configurations {
        let app = app(&args).await;
        let doc: Value = app.get("/openapi.json").send().await.json();
        let paths = doc["paths"].as_object().unwrap();
        for (path, item) in paths {
            let uri = path.replace("{id}", "s1").replace("{user}", "u1");
            for method in item.as_object().unwrap().keys() {
                let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let reply = app
                    .call(method.clone(), &uri)
                    .user("u1")
                    .admin()
                    .send()
                    .await;
                let routed = !reply.text.contains("urn:streamguard:problem:not-found")
                    && !reply
                        .text
                        .contains("urn:streamguard:problem:method-not-allowed");
                assert!(routed, "{args:?}: {method} {path}: {}", reply.text);
            }
        }
        for path in streamguard::http::routes::every_path() {
            if paths.contains_key(&path) || pages.contains(&path.as_str()) {
                continue;
            }
            let uri = path.replace("{id}", "s1").replace("{user}", "u1");
            for method in [Method::GET, Method::POST, Method::TRACE] {
                app.call(method, &uri)
                    .admin()
                    .send()
                    .await
                    .problem(404, "not-found");
            }
        }
    }
}
