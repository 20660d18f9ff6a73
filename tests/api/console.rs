//! The web console's files and the admin copy of the metrics.

use crate::support::{ADMIN_TOKEN, app};

const WITH_TOKEN: &[&str] = &["--admin-token", ADMIN_TOKEN];

const FILES: &[(&str, &str)] = &[
    ("/console/", "text/html; charset=utf-8"),
    ("/console/index.html", "text/html; charset=utf-8"),
    ("/console/demo.html", "text/html; charset=utf-8"),
    ("/console/style.css", "text/css; charset=utf-8"),
    ("/console/app.js", "text/javascript; charset=utf-8"),
    ("/console/sdk.js", "text/javascript; charset=utf-8"),
];

#[tokio::test]
async fn the_console_does_not_exist_without_an_admin_token() {
    let app = app(&[]).await;
    for path in ["/console", "/console/", "/console/app.js", "/admin/metrics"] {
        app.get(path).admin().send().await.problem(404, "not-found");
    }
}

#[tokio::test]
async fn the_console_serves_its_files_with_their_content_types() {
    let app = app(WITH_TOKEN).await;
    let root = app.get("/console").send().await;
    assert_eq!(root.status.as_u16(), 308);
    assert_eq!(root.headers["location"], "/console/");
    for (path, content_type) in FILES {
        let reply = app.get(path).send().await;
        assert_eq!(reply.status.as_u16(), 200, "{path}");
        assert_eq!(reply.content_type(), *content_type, "{path}");
        assert!(!reply.text.trim().is_empty(), "{path}");
        assert!(
            reply.headers.contains_key("content-security-policy"),
            "{path}"
        );
    }
    // The SDK is served as published, byte for byte.
    let sdk = app.get("/console/sdk.js").send().await.text;
    assert_eq!(sdk, include_str!("../../clients/js/src/index.js"));
    for path in [
        "/console/nope.js",
        "/console/../Cargo.toml",
        "/console/%2e%2e%2fCargo.toml",
    ] {
        app.get(path).send().await.problem(404, "not-found");
    }
}

#[tokio::test]
async fn admin_metrics_is_the_prometheus_text_behind_the_token() {
    let app = app(WITH_TOKEN).await;
    app.get("/admin/metrics")
        .send()
        .await
        .problem(401, "missing-admin-token");
    app.get("/admin/metrics")
        .header("authorization", "Bearer wrong")
        .send()
        .await
        .problem(403, "wrong-admin-token");
    app.post("/streams").user("m").send().await;
    let reply = app.get("/admin/metrics").admin().send().await;
    assert_eq!(reply.status.as_u16(), 200);
    assert!(reply.content_type().starts_with("text/plain"));
    assert!(
        reply.text.contains("streamguard_decisions_total"),
        "{}",
        reply.text
    );
}
