//! `--auth jwt`: who may act for an account, and every way a token is
//! refused (401, `WWW-Authenticate: Bearer error="invalid_token"`).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Reply, TestApp, app};
use crate::tokens::{self, Idp, NOW, SECRET, b64, claims, hs256, write_jwks};

async fn hs_app(extra: &[&str]) -> TestApp {
    let mut args = vec!["--auth", "jwt", "--jwt-secret", SECRET];
    args.extend_from_slice(extra);
    app(&args).await
}

async fn jwks_app(dir: &tempfile::TempDir, keys: &[Idp], extra: &[&str]) -> TestApp {
    let path = dir.path().join("jwks.json");
    write_jwks(&path, keys);
    let path = path.to_str().unwrap().to_owned();
    let mut args = vec!["--auth", "jwt", "--jwt-jwks", &path];
    args.extend_from_slice(extra);
    app(&args).await
}

async fn start_with(app: &TestApp, token: &str) -> Reply {
    app.post("/streams").bearer(token).send().await
}

/// Asserts a refusal of the token, with the RFC 6750 challenge.
fn refused(reply: &Reply) -> Value {
    let body = reply.problem(401, "invalid-token");
    assert_eq!(
        reply.headers["www-authenticate"],
        "Bearer error=\"invalid_token\""
    );
    body
}

#[tokio::test]
async fn an_hs256_token_names_the_account_and_x_id_is_ignored() {
    let app = hs_app(&[]).await;
    let token = hs256(claims("alice"));
    let started = app
        .post("/streams")
        .bearer(&token)
        .user("mallory")
        .send()
        .await;
    assert_eq!(started.status, 201, "{}", started.text);
    assert_eq!(started.json()["stream"]["user_id"], "alice");
    assert_eq!(app.live("alice").await.len(), 1);
    assert!(app.live("mallory").await.is_empty());

    let listed = app.get("/streams").bearer(&token).send().await;
    assert_eq!(listed.json()["active"], 1);

    let only_x_id = app.get("/streams").user("alice").send().await;
    only_x_id.problem(401, "missing-token");
    assert_eq!(only_x_id.headers["www-authenticate"], "Bearer");
}

#[tokio::test]
async fn rs256_es256_and_eddsa_tokens_verify_against_a_jwks_file() {
    let dir = tempfile::tempdir().unwrap();
    let app = jwks_app(&dir, &[Idp::Rsa, Idp::P256, Idp::Ed25519], &[]).await;
    for (idp, user) in [
        (Idp::Rsa, "rsa-user"),
        (Idp::P256, "ec-user"),
        (Idp::Ed25519, "ed-user"),
    ] {
        let reply = start_with(&app, &idp.token(claims(user))).await;
        assert_eq!(reply.status, 201, "{user}: {}", reply.text);
        assert_eq!(reply.json()["stream"]["user_id"], user);
    }
}

const ISSUER: &str = "https://idp.example";

/// A service that accepts HS256 (the test secret) and RS256/ES256 (the
/// JWKS), requires issuer and audience, and tolerates 30 s of skew.
async fn strict_app(dir: &tempfile::TempDir) -> TestApp {
    jwks_app(
        dir,
        &[Idp::Rsa, Idp::P256],
        &[
            "--jwt-secret",
            SECRET,
            "--jwt-issuer",
            ISSUER,
            "--jwt-audience",
            "streamguard,player-api",
            "--jwt-leeway",
            "30s",
        ],
    )
    .await
}

/// Claims the strict app accepts, changed by `extra` (`null` removes one).
fn strict_claims(extra: Value) -> Value {
    let mut c = json!({"sub": "alice", "exp": NOW + 600, "iss": ISSUER, "aud": "player-api"});
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn rs256(extra: Value) -> String {
    Idp::Rsa.token(strict_claims(extra))
}

fn header_b64(h: Value) -> String {
    b64(h.to_string().as_bytes())
}

/// A good token's payload and signature under another header.
fn reheader(h: Value) -> String {
    let good = rs256(json!({}));
    let parts: Vec<&str> = good.split('.').collect();
    format!("{}.{}.{}", header_b64(h), parts[1], parts[2])
}

/// An RS256 token of the test IdP over `payload` exactly as written.
fn signed_payload(payload: &str) -> String {
    let head = header_b64(json!({"alg": "RS256", "kid": Idp::Rsa.kid()}));
    let message = format!("{head}.{}", b64(payload.as_bytes()));
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &rsa_encoding_key(),
        jsonwebtoken::Algorithm::RS256,
    )
    .unwrap();
    format!("{message}.{signature}")
}

fn rsa_encoding_key() -> jsonwebtoken::EncodingKey {
    jsonwebtoken::EncodingKey::from_rsa_pem(
        &std::fs::read(tokens::key_path("idp-rsa.pem")).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn the_strict_app_accepts_its_good_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let app = strict_app(&dir).await;
    for token in [
        rs256(json!({})),
        Idp::P256.token(strict_claims(json!({}))),
        hs256(strict_claims(json!({}))),
        rs256(json!({"aud": ["other", "streamguard"]})),
        rs256(json!({"exp": NOW - 20})),
        rs256(json!({"nbf": NOW + 20})),
    ] {
        let reply = app.get("/streams").bearer(&token).send().await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.json()["user_id"], "alice");
    }
}

/// One test per refusal: the token is refused with 401 and the
/// `invalid_token` challenge, and nothing is granted.
macro_rules! refusals {
    ($($name:ident => $token:expr;)*) => {$(
        #[tokio::test]
        async fn $name() {
            let dir = tempfile::tempdir().unwrap();
            let app = strict_app(&dir).await;
            let token: String = $token;
            let body = refused(&start_with(&app, &token).await);
            assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
            assert!(app.live("alice").await.is_empty(), "no slot for a refused token");
        }
    )*};
}

refusals! {
    refuses_alg_none => {
        let good = rs256(json!({}));
        format!("{}.{}.", header_b64(json!({"alg": "none", "typ": "JWT"})), good.split('.').nth(1).unwrap())
    };
    refuses_alg_none_with_a_signature => reheader(json!({"alg": "none"}));
    refuses_an_rsa_public_key_used_as_hmac_secret => tokens::hs256_with(
        &std::fs::read(tokens::key_path("idp-rsa.pub.pem")).unwrap(),
        strict_claims(json!({})),
    );
    refuses_an_algorithm_the_key_does_not_allow => {
        // RS256 naming the EC key.
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        h.kid = Some(Idp::P256.kid().into());
        jsonwebtoken::encode(&h, &strict_claims(json!({})), &rsa_encoding_key()).unwrap()
    };
    refuses_an_algorithm_not_offered => reheader(json!({"alg": "ES384", "kid": "p256-1"}));
    refuses_hs512 => reheader(json!({"alg": "HS512"}));
    refuses_an_unknown_kid => {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        h.kid = Some("nobody".into());
        jsonwebtoken::encode(&h, &strict_claims(json!({})), &rsa_encoding_key()).unwrap()
    };
    refuses_a_wrong_hs256_secret => tokens::hs256_with(b"another-secret-entirely-0123456", strict_claims(json!({})));
    refuses_a_tampered_payload => {
        let good = rs256(json!({}));
        let parts: Vec<&str> = good.split('.').collect();
        let forged = b64(strict_claims(json!({"sub": "bob"})).to_string().as_bytes());
        format!("{}.{forged}.{}", parts[0], parts[2])
    };
    refuses_an_expired_token => rs256(json!({"exp": NOW - 31}));
    refuses_a_token_without_exp => rs256(json!({"exp": null}));
    refuses_an_exp_that_is_not_a_date => rs256(json!({"exp": "tomorrow"}));
    refuses_a_token_not_yet_valid => rs256(json!({"nbf": NOW + 31}));
    refuses_a_wrong_issuer => rs256(json!({"iss": "https://evil.example"}));
    refuses_a_missing_issuer => rs256(json!({"iss": null}));
    refuses_an_issuer_array_even_with_the_issuer_in_it => rs256(json!({"iss": [ISSUER]}));
    refuses_a_duplicate_sub => signed_payload(&format!(
        r#"{{"sub":"alice","sub":"bob","exp":{},"iss":"{ISSUER}","aud":"player-api"}}"#, NOW + 600
    ));
    refuses_a_duplicate_claim_the_service_does_not_read => signed_payload(&format!(
        r#"{{"sub":"alice","exp":{},"iss":"{ISSUER}","aud":"player-api","x":1,"x":2}}"#, NOW + 600
    ));
    refuses_a_wrong_audience => rs256(json!({"aud": "someone-else"}));
    refuses_a_missing_audience => rs256(json!({"aud": null}));
    refuses_a_missing_sub => rs256(json!({"sub": null}));
    refuses_a_sub_that_is_not_an_id => rs256(json!({"sub": "alice smith"}));
    refuses_a_sub_too_long => rs256(json!({"sub": "a".repeat(129)}));
    refuses_a_numeric_sub => rs256(json!({"sub": 42}));
    refuses_two_parts => { let g = rs256(json!({})); g.rsplit_once('.').unwrap().0.to_owned() };
    refuses_four_parts => format!("{}.x", rs256(json!({})));
    refuses_bad_base64 => "!!!.@@@.###".into();
    refuses_a_header_that_is_not_json => reheader(json!("not an object"));
    refuses_a_header_that_is_an_array => {
        let g = rs256(json!({}));
        let p: Vec<&str> = g.split('.').collect();
        format!("{}.{}.{}", b64(b"[1,2]"), p[1], p[2])
    };
    refuses_empty_parts => "..".into();
    refuses_garbage => "hello".into();
    refuses_an_oversized_token => {
        let g = rs256(json!({}));
        let p: Vec<&str> = g.split('.').collect();
        format!("{}.{}.{}", p[0], "A".repeat(9000), p[2])
    };
}

#[tokio::test]
async fn authorization_headers_that_are_not_one_bearer_token_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let app = strict_app(&dir).await;
    for value in ["Basic YWxpY2U6cHc=", "Bearer", "Bearer a b", "Token abc"] {
        let reply = app
            .post("/streams")
            .header("authorization", value)
            .send()
            .await;
        refused(&reply);
    }
    let token = rs256(json!({}));
    let twice = app
        .post("/streams")
        .bearer(&token)
        .bearer(&token)
        .send()
        .await;
    refused(&twice);
    assert!(app.live("alice").await.is_empty());
}

#[tokio::test]
async fn a_cached_token_still_expires_with_its_exp() {
    let app = hs_app(&["--jwt-leeway", "0s", "--lease-ttl", "10m"]).await;
    let token = hs256(json!({"sub": "alice", "exp": NOW + 100}));
    let started = start_with(&app, &token).await;
    assert_eq!(started.status, 201);
    let id = started.json()["stream"]["id"].as_str().unwrap().to_owned();
    let path = format!("/streams/{id}/heartbeat");
    let beat = app.post(&path).bearer(&token).send().await;
    assert_eq!(beat.status, 200, "verified once, then from the cache");
    app.clock.advance(Duration::from_secs(99));
    assert_eq!(app.post(&path).bearer(&token).send().await.status, 200);
    app.clock.advance(Duration::from_secs(1));
    refused(&app.post(&path).bearer(&token).send().await);
}

#[tokio::test]
async fn the_limit_claim_sets_the_plan_and_an_override_wins() {
    let app = app(&[
        "--auth",
        "jwt",
        "--jwt-secret",
        SECRET,
        "--jwt-limit-claim",
        "screens",
        "--admin-token",
        crate::support::ADMIN_TOKEN,
    ])
    .await;
    let with =
        |screens: Value| hs256(json!({"sub": "family", "exp": NOW + 3600, "screens": screens}));
    let one = with(json!(1));
    assert_eq!(start_with(&app, &one).await.status, 201);
    let full = start_with(&app, &one).await;
    assert_eq!(full.problem(409, "stream-limit-reached")["limit"], 1);
    let limit = app.get("/admin/users/family/limit").admin().send().await;
    assert_eq!(limit.json()["source"], "claim");
    assert_eq!(limit.json()["limit"], 1);

    let five = with(json!(5));
    assert_eq!(start_with(&app, &five).await.status, 201, "plan upgraded");

    let set = app
        .put("/admin/users/family/limit")
        .admin()
        .json(json!({"limit": 3}))
        .send()
        .await;
    assert_eq!(set.status, 200);
    assert_eq!(start_with(&app, &five).await.status, 201);
    let over = start_with(&app, &five).await;
    assert_eq!(
        over.problem(409, "stream-limit-reached")["limit"],
        3,
        "the admin override wins over the claim"
    );

    for bad in [
        json!(-1),
        json!(1001),
        json!("two"),
        json!(1.5),
        json!(null),
    ] {
        refused(&start_with(&app, &with(bad)).await);
    }
    // The limit claim twice: refused, as any claim named twice is.
    let twice = format!(
        r#"{{"sub":"family","exp":{},"screens":1,"screens":9}}"#,
        NOW + 3600
    );
    let message = format!("{}.{}", b64(br#"{"alg":"HS256"}"#), b64(twice.as_bytes()));
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), &key, jsonwebtoken::Algorithm::HS256)
            .unwrap();
    let body = refused(&start_with(&app, &format!("{message}.{signature}")).await);
    assert_eq!(body["detail"], "the token names a claim twice");
    // `2.0` is a whole number, as the admin API takes it.
    let whole = app.get("/streams").bearer(&with(json!(2.0))).send().await;
    assert_eq!(whole.status, 200, "{}", whole.text);
    let no_claim = hs256(json!({"sub": "solo", "exp": NOW + 3600}));
    let solo = app.get("/streams").bearer(&no_claim).send().await;
    assert_eq!(solo.json()["limit"], 3, "no claim: the default");
}

#[tokio::test]
async fn keys_rotate_in_the_jwks_file_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let app = jwks_app(&dir, &[Idp::Rsa], &[]).await;
    let path = dir.path().join("jwks.json");
    let old = Idp::Rsa.token(claims("alice"));
    let new = Idp::P256.token(claims("bob"));
    assert_eq!(start_with(&app, &old).await.status, 201);
    refused(&start_with(&app, &new).await);

    write_jwks(&path, &[Idp::Rsa, Idp::P256]);
    wait_for(|| async { start_with(&app, &new).await.status == 201 }).await;
    assert_eq!(
        app.get("/streams").bearer(&old).send().await.status,
        200,
        "old tokens keep working while their key is published"
    );

    write_jwks(&path, &[Idp::P256]);
    wait_for(|| async { app.get("/streams").bearer(&old).send().await.status == 401 }).await;
    assert_eq!(app.get("/streams").bearer(&new).send().await.status, 200);
}

#[tokio::test]
async fn a_jwks_url_is_fetched_and_unknown_kids_cannot_hammer_it() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let fetches = Arc::new(AtomicUsize::new(0));
    let document = Arc::new(std::sync::Mutex::new(
        serde_json::to_string(&jsonwebtoken::jwk::JwkSet {
            keys: vec![Idp::Rsa.jwk()],
        })
        .unwrap(),
    ));
    let served = {
        let fetches = fetches.clone();
        let document = document.clone();
        axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                fetches.fetch_add(1, Ordering::SeqCst);
                let body = document.lock().unwrap().clone();
                async move { body }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, served).await.unwrap() });

    let app = app(&["--auth", "jwt", "--jwt-jwks", &url]).await;
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "fetched at start");
    assert_eq!(
        start_with(&app, &Idp::Rsa.token(claims("alice")))
            .await
            .status,
        201
    );

    // The provider publishes a new key; the first token naming it makes
    // the service look again.
    *document.lock().unwrap() = serde_json::to_string(&jsonwebtoken::jwk::JwkSet {
        keys: vec![Idp::Rsa.jwk(), Idp::P256.jwk()],
    })
    .unwrap();
    assert_eq!(
        start_with(&app, &Idp::P256.token(claims("bob")))
            .await
            .status,
        201
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 2);

    // A flood of made-up key ids: refused, and the provider is not asked again.
    for n in 0..50 {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(format!("random-{n}"));
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(
            &std::fs::read(tokens::key_path("idp-rsa.pem")).unwrap(),
        )
        .unwrap();
        let token = jsonwebtoken::encode(&header, &claims("mallory"), &key).unwrap();
        refused(&start_with(&app, &token).await);
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 2, "rate-limited refreshes");
}

#[tokio::test]
async fn jwt_flags_without_jwt_mode_do_not_start_a_header_mode_service() {
    // Forgetting `--auth jwt` would leave a deployment that meant to verify
    // tokens trusting X-ID.
    for flags in [
        &["--jwt-secret", SECRET][..],
        &["--jwt-secret-file", "/nonexistent"],
        &["--jwt-jwks", "https://idp.example/jwks.json"],
        &["--jwt-issuer", "https://idp.example/"],
        &["--jwt-audience", "streamguard"],
        &["--jwt-limit-claim", "screens"],
    ] {
        let config = crate::support::config(flags);
        let clock = std::sync::Arc::new(crate::support::clock());
        let error = streamguard::app_state(&config, clock).await.err().unwrap();
        let text = error.to_string();
        assert!(
            text.contains(flags[0]) && text.contains("--auth jwt"),
            "{text}"
        );
        assert!(!text.contains(SECRET), "{text}");
    }
}

/// RFC 7518 §3.2: an HS256 key at least as long as the hash. A shorter one
/// stops the start, saying why, without showing it.
#[tokio::test]
async fn an_hs256_secret_shorter_than_32_bytes_does_not_start() {
    let short = "0123456789abcdef0123456789abcde";
    let config = crate::support::config(&["--auth", "jwt", "--jwt-secret", short]);
    let clock = std::sync::Arc::new(crate::support::clock());
    let error = streamguard::app_state(&config, clock.clone())
        .await
        .err()
        .unwrap();
    let text = error.to_string();
    assert!(
        text.contains("--jwt-secret") && text.contains("at least 32"),
        "{text}"
    );
    assert!(!text.contains(short), "{text}");
    let enough = format!("{short}f");
    let config = crate::support::config(&["--auth", "jwt", "--jwt-secret", &enough]);
    assert!(streamguard::app_state(&config, clock).await.is_ok());
}

#[tokio::test]
async fn a_jwks_url_over_plain_http_must_be_on_this_machine() {
    let config = crate::support::config(&[
        "--auth",
        "jwt",
        "--jwt-jwks",
        "http://reader:s3cret@idp.example/jwks.json",
    ]);
    let clock = std::sync::Arc::new(crate::support::clock());
    let error = streamguard::app_state(&config, clock).await.err().unwrap();
    let text = error.to_string();
    assert!(text.contains("use https://"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
    // A loopback address is fine (the tests above serve their JWKS so).
}

#[tokio::test]
async fn a_jwt_service_without_keys_does_not_start() {
    let config = crate::support::config(&["--auth", "jwt"]);
    let clock = std::sync::Arc::new(crate::support::clock());
    let error = streamguard::app_state(&config, clock).await.err().unwrap();
    assert!(error.to_string().contains("--jwt-secret"), "{error}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret");
    std::fs::write(&path, format!("{SECRET}\n")).unwrap();
    let app = app(&["--auth", "jwt", "--jwt-secret-file", path.to_str().unwrap()]).await;
    assert_eq!(
        start_with(&app, &hs256(claims("alice"))).await.status,
        201,
        "trailing newline trimmed"
    );
}

/// Polls `check` until it holds, for at most 10 s.
pub async fn wait_for<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "condition not met within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// RFC 7517 makes a key's `alg` optional: an RSA key without one verifies
/// every RSA algorithm (RS256/384/512, PS256/384/512), and still nothing
/// of another key type.
#[tokio::test]
async fn an_rsa_key_without_alg_verifies_every_rsa_algorithm_and_no_other() {
    use jsonwebtoken::Algorithm::*;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    let mut rsa = Idp::Rsa.jwk();
    rsa.common.key_algorithm = None;
    let set = jsonwebtoken::jwk::JwkSet {
        keys: vec![rsa, Idp::P256.jwk()],
    };
    std::fs::write(&path, serde_json::to_vec(&set).unwrap()).unwrap();
    let app = app(&["--auth", "jwt", "--jwt-jwks", path.to_str().unwrap()]).await;
    let signed = |alg, kid: Option<&str>| {
        let mut h = jsonwebtoken::Header::new(alg);
        h.kid = kid.map(Into::into);
        jsonwebtoken::encode(&h, &claims("alice"), &rsa_encoding_key()).unwrap()
    };
    for alg in [RS256, RS384, RS512, PS256, PS384, PS512] {
        for kid in [Some("rsa-1"), None] {
            let reply = app.get("/streams").bearer(&signed(alg, kid)).send().await;
            assert_eq!(reply.status, 200, "{alg:?} kid {kid:?}: {}", reply.text);
        }
    }
    // The EC key keeps its own algorithm; the RSA key verifies no ES256.
    refused(&start_with(&app, &reheader(json!({"alg": "ES256", "kid": "rsa-1"}))).await);
    let mut h = jsonwebtoken::Header::new(RS256);
    h.kid = Some(Idp::P256.kid().into());
    let across = jsonwebtoken::encode(&h, &claims("alice"), &rsa_encoding_key()).unwrap();
    refused(&start_with(&app, &across).await);
    assert!(app.live("alice").await.is_empty());
}
