//! Players in web pages of other origins (`--cors-origins`).

use axum::http::Method;

use crate::support::{ADMIN_TOKEN, Reply, TestApp, app};

const PLAYER_PAGE: &str = "https://player.example";

/// A player call for account alice, as a page of `origin` makes it.
async fn from_page(app: &TestApp, method: Method, path: &str, origin: &str) -> Reply {
    app.call(method, path)
        .user("alice")
        .header("origin", origin)
        .send()
        .await
}

/// An admin call, as a page of `origin` makes it.
async fn admin_from_page(app: &TestApp, path: &str, origin: &str) -> Reply {
    app.get(path).admin().header("origin", origin).send().await
}

/// A CORS header of `reply`, lower-cased; `None` when it is absent.
fn cors(reply: &Reply, name: &str) -> Option<String> {
    let value = reply.headers.get(format!("access-control-{name}"))?;
    Some(value.to_str().unwrap().to_ascii_lowercase())
}

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
    assert_eq!(cors(&preflight, "allow-origin").unwrap(), PLAYER_PAGE);
    assert!(cors(&preflight, "allow-methods").unwrap().contains("post"));
    let headers = cors(&preflight, "allow-headers").unwrap();
    assert!(headers.contains("authorization") && headers.contains("x-id"));

    let started = from_page(&app, Method::POST, "/streams", PLAYER_PAGE).await;
    assert_eq!(started.status, 201);
    assert_eq!(cors(&started, "allow-origin").unwrap(), PLAYER_PAGE);
    let exposed = cors(&started, "expose-headers").unwrap();
    for header in ["location", "retry-after", "x-request-id"] {
        assert!(exposed.contains(header), "{exposed}");
    }

    // Another page gets no permission; the admin API stays same-origin.
    let other = from_page(&app, Method::GET, "/streams", "https://evil.example").await;
    assert_eq!(cors(&other, "allow-origin"), None);
    let admin = admin_from_page(&app, "/admin/users/alice/streams", PLAYER_PAGE).await;
    assert_eq!(admin.status, 200);
    assert_eq!(cors(&admin, "allow-origin"), None);
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
    assert_eq!(cors(&preflight, "allow-origin"), None);
    let started = from_page(&app, Method::POST, "/streams", PLAYER_PAGE).await;
    assert_eq!(started.status, 201);
    assert_eq!(cors(&started, "allow-origin"), None);
}

#[tokio::test]
async fn a_star_lets_pages_of_any_origin_call_the_player_api_only() {
    let app = app(&["--cors-origins", "*", "--admin-token", ADMIN_TOKEN]).await;
    let anywhere = "https://anywhere.example";
    let listed = from_page(&app, Method::GET, "/streams", anywhere).await;
    assert_eq!(cors(&listed, "allow-origin").unwrap(), anywhere);
    let admin = admin_from_page(&app, "/admin/users/alice/limit", anywhere).await;
    assert_eq!(cors(&admin, "allow-origin"), None);
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
