//! `GET /edge/verify`: the online check an edge makes before serving a
//! segment. 204 only for a grant of ours, for this content, whose stream is
//! still live; 401 without a grant; 403 with a reason otherwise.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{ADMIN_TOKEN, Reply, TestApp, app};

use crate::tokens::key_path;

async fn edge_app(extra: &[&str]) -> TestApp {
    let path = key_path("grant-p256.pem");
    let mut args = vec![
        "--grant-key",
        path.to_str().unwrap(),
        "--admin-token",
        ADMIN_TOKEN,
    ];
    args.extend_from_slice(extra);
    app(&args).await
}

/// Starts `body` for alice; returns the grant.
async fn start(app: &TestApp, body: Value) -> String {
    let reply = app.post("/streams").user("alice").json(body).send().await;
    assert!(reply.status.is_success(), "{}", reply.text);
    reply.json()["grant"].as_str().unwrap().to_owned()
}

async fn check(app: &TestApp, grant: &str, content: &str) -> Reply {
    app.get(&format!("/edge/verify?grant={grant}&content_id={content}"))
        .send()
        .await
}

fn refused(reply: &Reply, reason: &str) {
    let body = reply.problem(403, "grant-refused");
    assert_eq!(body["reason"], reason, "{}", reply.text);
    assert_eq!(reply.headers["streamguard-reason"], reason);
}

#[tokio::test]
async fn a_live_grant_opens_its_content_from_the_query_a_header_or_a_cookie() {
    let app = edge_app(&[]).await;
    let grant = start(&app, json!({"stream_id": "tv", "content_id": "movie-42"})).await;
    assert_eq!(check(&app, &grant, "movie-42").await.status, 204);
    let by_header = app
        .get("/edge/verify")
        .header("streamguard-grant", &grant)
        .header("x-content-id", "movie-42")
        .send()
        .await;
    assert_eq!(by_header.status, 204, "{}", by_header.text);
    let by_cookie = app
        .get("/edge/verify?content_id=movie-42")
        .header("cookie", &format!("theme=dark; streamguard_grant={grant}"))
        .send()
        .await;
    assert_eq!(by_cookie.status, 204, "{}", by_cookie.text);
}

#[tokio::test]
async fn no_grant_is_401_and_no_content_opens_nothing() {
    let app = edge_app(&[]).await;
    let grant = start(&app, json!({"stream_id": "tv", "content_id": "movie-42"})).await;
    let none = app.get("/edge/verify?content_id=movie-42").send().await;
    none.problem(401, "missing-grant");
    assert_eq!(none.headers["streamguard-reason"], "missing");
    let no_content = app.get(&format!("/edge/verify?grant={grant}")).send().await;
    refused(&no_content, "content-mismatch");
    refused(
        &check(&app, &grant, "not%20an%20id").await,
        "content-mismatch",
    );
    // The grant is looked at first: a bad one is invalid whatever the content.
    refused(&check(&app, "x.y.z", "not%20an%20id").await, "invalid");
}

#[tokio::test]
async fn a_grant_opens_no_other_content_and_one_without_cid_none() {
    let app = edge_app(&[]).await;
    let grant = start(&app, json!({"stream_id": "tv", "content_id": "movie-42"})).await;
    refused(&check(&app, &grant, "movie-43").await, "content-mismatch");
    let anything = start(&app, json!({"stream_id": "phone"})).await;
    refused(
        &check(&app, &anything, "movie-42").await,
        "content-mismatch",
    );
}

#[tokio::test]
async fn tampered_and_foreign_grants_are_invalid() {
    let app = edge_app(&[]).await;
    let grant = start(&app, json!({"stream_id": "tv", "content_id": "movie-42"})).await;
    let mut tampered = grant.clone().into_bytes();
    let last = tampered.len() - 3;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    refused(&check(&app, &tampered, "movie-42").await, "invalid");
    refused(&check(&app, "not.a.grant", "movie-42").await, "invalid");

    // Signed by another service's key.
    let ed = key_path("grant-ed25519.pem");
    let other = app_with_key(ed.to_str().unwrap()).await;
    let foreign = start(&other, json!({"stream_id": "tv", "content_id": "movie-42"})).await;
    refused(&check(&app, &foreign, "movie-42").await, "invalid");
}

async fn app_with_key(path: &str) -> TestApp {
    app(&["--grant-key", path]).await
}

#[tokio::test]
async fn a_grant_expires_with_its_lease_unless_renewed() {
    let app = edge_app(&["--lease-ttl", "30s"]).await;
    let grant = start(&app, json!({"stream_id": "tv", "content_id": "movie-42"})).await;
    app.clock.advance(Duration::from_secs(20));
    let beat = app.post("/streams/tv/heartbeat").user("alice").send().await;
    let renewed = beat.json()["grant"].as_str().unwrap().to_owned();
    app.clock.advance(Duration::from_secs(15));
    refused(&check(&app, &grant, "movie-42").await, "expired");
    assert_eq!(check(&app, &renewed, "movie-42").await.status, 204);
}

#[tokio::test]
async fn a_stopped_revoked_evicted_or_replaced_stream_is_refused_at_once_with_its_reason() {
    let app = edge_app(&["--default-limit", "2"]).await;
    let stream = |id: &str, device: &str| json!({"stream_id": id, "device_id": device, "content_id": "movie-42"});
    let stopped = start(&app, stream("s1", "tv")).await;
    assert_eq!(
        app.delete("/streams/s1").user("alice").send().await.status,
        204
    );
    refused(&check(&app, &stopped, "movie-42").await, "stopped");

    let revoked = start(&app, stream("s2", "tv")).await;
    let admin = app
        .delete("/admin/users/alice/streams/s2")
        .admin()
        .send()
        .await;
    assert_eq!(admin.status, 204);
    refused(&check(&app, &revoked, "movie-42").await, "revoked");

    let replaced = start(&app, stream("s3", "tv")).await;
    let replacing = start(&app, stream("s4", "tv")).await;
    refused(&check(&app, &replaced, "movie-42").await, "replaced");
    assert_eq!(check(&app, &replacing, "movie-42").await.status, 204);

    let phone = start(&app, stream("s5", "phone")).await;
    let mut evicting = stream("s6", "tablet");
    evicting["terminate"] = json!(["s5"]);
    let tablet = start(&app, evicting).await;
    refused(&check(&app, &phone, "movie-42").await, "evicted");
    assert_eq!(check(&app, &tablet, "movie-42").await.status, 204);
}

#[tokio::test]
async fn a_grant_of_an_earlier_lease_under_the_same_id_is_refused() {
    let app = edge_app(&[]).await;
    let body = json!({"stream_id": "tv", "content_id": "movie-42"});
    let first = start(&app, body.clone()).await;
    assert_eq!(
        app.delete("/streams/tv").user("alice").send().await.status,
        204
    );
    app.clock.advance(Duration::from_secs(2));
    let second = start(&app, body).await;
    refused(&check(&app, &first, "movie-42").await, "revoked");
    assert_eq!(check(&app, &second, "movie-42").await.status, 204);
}

#[tokio::test]
async fn without_a_grant_key_there_is_no_edge_check() {
    let app = app(&[]).await;
    app.get("/edge/verify?grant=x&content_id=y")
        .send()
        .await
        .problem(404, "not-found");
}

#[tokio::test]
async fn the_openapi_document_describes_the_edge_check() {
    let app = edge_app(&[]).await;
    let doc = app.get("/openapi.json").send().await.json();
    let op = &doc["paths"]["/edge/verify"]["get"];
    for status in ["204", "401", "403"] {
        assert!(op["responses"][status].is_object(), "{status}: {op}");
    }
    // The reasons are listed with the 403, and on the problem's `reason`.
    let refused = op["responses"]["403"]["description"].as_str().unwrap();
    assert!(refused.contains("content-mismatch"), "{refused}");
    let reason = &doc["components"]["schemas"]["Problem"]["properties"]["reason"];
    assert!(reason.to_string().contains("content-mismatch"), "{reason}");
}

/// `streamguard edge-keys` against a served JWKS: a PEM per P-256 key
/// for HAProxy and njs, and the JWK Set; an Ed25519-only service is refused
/// with the reason.
#[tokio::test]
async fn edge_keys_writes_the_edge_key_files_from_a_served_jwks() {
    async fn serve(key: &str) -> String {
        let path = key_path(key);
        let app = app(&["--grant-key", path.to_str().unwrap()]).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app.router).await.unwrap() });
        format!("http://{addr}/.well-known/jwks.json")
    }
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("keys");
    let run = |jwks: String| {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_streamguard"))
                .args(["edge-keys", "--jwks", &jwks, "--out", dir.to_str().unwrap()])
                .output()
                .unwrap()
        })
    };
    let written = run(serve("grant-p256.pem").await).await.unwrap();
    let said = String::from_utf8_lossy(&written.stderr);
    assert!(written.status.success(), "{said}");
    let pems: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".pem"))
        .collect();
    assert_eq!(pems.len(), 1, "{pems:?}");
    let pem = std::fs::read_to_string(dir.join(&pems[0])).unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    let jwks: Value =
        serde_json::from_slice(&std::fs::read(dir.join("jwks.json")).unwrap()).unwrap();
    assert_eq!(
        format!("{}.pem", jwks["keys"][0]["kid"].as_str().unwrap()),
        pems[0]
    );

    let refused = run(serve("grant-ed25519.pem").await).await.unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("P-256"));
}

/// `--edge-renew-every`: a check renews the lease when its last renewal
/// is that old (not on every segment), and hands back the renewed grant.
#[tokio::test]
async fn with_edge_renewal_a_check_renews_the_lease_at_most_once_per_interval() {
    let app = edge_app(&["--lease-ttl", "30s", "--edge-renew-every", "10s"]).await;
    let grant = start(&app, json!({"stream_id": "tv", "content_id": "movie-42"})).await;
    let fresh = check(&app, &grant, "movie-42").await;
    assert_eq!(fresh.status, 204);
    assert!(
        fresh.headers.get("streamguard-grant").is_none(),
        "just started"
    );

    app.clock.advance(Duration::from_secs(11));
    let due = check(&app, &grant, "movie-42").await;
    assert_eq!(due.status, 204);
    let renewed = due.headers["streamguard-grant"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(renewed, grant);
    let again = check(&app, &renewed, "movie-42").await;
    assert!(
        again.headers.get("streamguard-grant").is_none(),
        "once per interval"
    );

    // Only these checks kept it alive: past the first lease, the first grant
    // has expired and the renewed one still opens the content.
    app.clock.advance(Duration::from_secs(25));
    refused(&check(&app, &grant, "movie-42").await, "expired");
    let later = check(&app, &renewed, "movie-42").await;
    assert_eq!(later.status, 204);
    assert_eq!(app.live("alice").await, vec!["tv".to_string()]);

    // Without checks the slot frees itself one lease later.
    app.clock.advance(Duration::from_secs(31));
    assert!(app.live("alice").await.is_empty());
}

#[tokio::test]
async fn without_edge_renewal_a_check_never_renews() {
    let app = edge_app(&["--lease-ttl", "30s"]).await;
    let grant = start(&app, json!({"stream_id": "tv", "content_id": "movie-42"})).await;
    app.clock.advance(Duration::from_secs(20));
    let reply = check(&app, &grant, "movie-42").await;
    assert_eq!(reply.status, 204);
    assert!(reply.headers.get("streamguard-grant").is_none());
    app.clock.advance(Duration::from_secs(11));
    assert!(app.live("alice").await.is_empty(), "the lease ran out");
}
