//! Players in web pages of other origins (`--cors-origins`).

use axum::http::Method;

use crate::support::{ADMIN_TOKEN, app};

const PLAYER_PAGE: &str = "https://player.example";

#[tokio::test]
async fn listed_origins_may_call_the_player_api_from_a_browser() {
    let app = app(&["--cors-origins", PLAYER_PAGE, "--admin-token", ADMIN_TOKEN]).await;

    let preflight = app
        .call(Method::OPTIONS, "/streams")
        .header("origin", PLAYER_PAGE)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await;
    assert!(preflight.status.is_success(), "{}", preflight.status);
    let allowed = |name: &str| {
        preflight.headers[name]
            .to_str()
            .unwrap()
            .to_ascii_lowercase()
    };
    assert_eq!(allowed("access-control-allow-origin"), PLAYER_PAGE);
    assert!(allowed("access-control-allow-methods").contains("post"));
    assert!(allowed("access-control-allow-headers").contains("authorization"));
    assert!(allowed("access-control-allow-headers").contains("x-id"));

    let started = app
        .post("/streams")
        .user("alice")
        .header("origin", PLAYER_PAGE)
        .send()
        .await;
    assert_eq!(started.status, 201);
    assert_eq!(started.headers["access-control-allow-origin"], PLAYER_PAGE);
    let exposed = started.headers["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for header in ["location", "retry-after", "x-request-id"] {
        assert!(exposed.contains(header), "{exposed}");
    }

    // Another page gets no permission; the admin API stays same-origin.
    let other = app
        .get("/streams")
        .user("alice")
        .header("origin", "https://evil.example")
        .send()
        .await;
    assert!(other.headers.get("access-control-allow-origin").is_none());
    let admin = app
        .get("/admin/users/alice/streams")
        .admin()
        .header("origin", PLAYER_PAGE)
        .send()
        .await;
    assert_eq!(admin.status, 200);
    assert!(admin.headers.get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn without_the_flag_no_page_of_another_origin_may_call() {
    let app = app(&[]).await;
    let preflight = app
        .call(Method::OPTIONS, "/streams")
        .header("origin", PLAYER_PAGE)
        .header("access-control-request-method", "POST")
        .send()
        .await;
    assert_eq!(preflight.status, 405);
    assert!(
        preflight
            .headers
            .get("access-control-allow-origin")
            .is_none()
    );
    let started = app
        .post("/streams")
        .user("alice")
        .header("origin", PLAYER_PAGE)
        .send()
        .await;
    assert_eq!(started.status, 201);
    assert!(started.headers.get("access-control-allow-origin").is_none());
}

#[test]
fn origins_must_be_scheme_and_host() {
    use clap::Parser;
    let parse = |origins: &str| {
        streamguard::config::Cli::try_parse_from(["streamguard", "--cors-origins", origins])
    };
    for bad in [
        "www.example.com",
        "https://example.com/player",
        "ftp://x",
        "https://",
    ] {
        assert!(parse(bad).is_err(), "{bad}");
    }
    let ok = parse("https://a.example,http://localhost:3000").unwrap();
    assert_eq!(
        ok.config.ops.cors_origins,
        ["https://a.example", "http://localhost:3000"]
    );
}

#[tokio::test]
async fn a_star_lets_pages_of_any_origin_call_the_player_api_only() {
    let app = app(&["--cors-origins", "*", "--admin-token", ADMIN_TOKEN]).await;
    let listed = app
        .get("/streams")
        .user("bob")
        .header("origin", "https://anywhere.example")
        .send()
        .await;
    assert_eq!(
        listed.headers["access-control-allow-origin"],
        "https://anywhere.example"
    );
    let admin = app
        .get("/admin/users/bob/limit")
        .admin()
        .header("origin", "https://anywhere.example")
        .send()
        .await;
    assert!(admin.headers.get("access-control-allow-origin").is_none());
}
