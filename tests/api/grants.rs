//! Signed playback grants, checked the way a CDN or licence server would:
//! with the published JWKS and an independent implementation (jsonwebtoken
//! on RustCrypto), not the library that signed them (ring).

use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};

use crate::support::{ADMIN_TOKEN, TestApp, app};
use crate::tokens::{key_path, unb64};

async fn granting(key: &str, extra: &[&str]) -> TestApp {
    let path = key_path(key);
    let mut args = vec![
        "--grant-key",
        path.to_str().unwrap(),
        "--admin-token",
        ADMIN_TOKEN,
    ];
    args.extend_from_slice(extra);
    app(&args).await
}

/// Verifies a compact JWS against a JWK Set; returns its header and claims.
fn verify(jws: &str, jwks: &Value) -> (Value, Value) {
    let parts: Vec<&str> = jws.split('.').collect();
    assert_eq!(parts.len(), 3, "compact JWS");
    let header: Value = serde_json::from_slice(&unb64(parts[0])).unwrap();
    let claims: Value = serde_json::from_slice(&unb64(parts[1])).unwrap();
    let kid = header["kid"].as_str().expect("grant header names its key");
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .expect("the grant's key is published");
    let jwk: Jwk = serde_json::from_value(jwk.clone()).expect("a valid JWK");
    assert_eq!(
        jwk.thumbprint(ThumbprintHash::SHA256).unwrap(),
        kid,
        "the kid is the key's RFC 7638 thumbprint"
    );
    let alg: Algorithm = header["alg"].as_str().unwrap().parse().unwrap();
    assert!(
        matches!(alg, Algorithm::EdDSA | Algorithm::ES256),
        "{alg:?}"
    );
    let mut validation = Validation::new(alg);
    validation.validate_exp = false; // the test clock is not the wall clock
    validation.required_spec_claims.clear();
    let verified =
        jsonwebtoken::decode::<Value>(jws, &DecodingKey::from_jwk(&jwk).unwrap(), &validation)
            .expect("the grant's signature verifies with the published key");
    assert_eq!(verified.claims, claims);
    (header, claims)
}

fn expiry_seconds(stream: &Value) -> i64 {
    let text = stream["expires_at"].as_str().unwrap();
    let t =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap();
    t.unix_timestamp()
}

async fn grants_follow_the_lease(key: &str, alg: &str) {
    let app = granting(key, &[]).await;
    let jwks_reply = app.get("/.well-known/jwks.json").send().await;
    assert_eq!(jwks_reply.status, 200);
    assert_eq!(jwks_reply.content_type(), "application/jwk-set+json");
    let jwks = jwks_reply.json();
    assert!(
        jwks["keys"][0].get("d").is_none(),
        "the private key is never published"
    );

    let started = app
        .post("/streams")
        .user("alice")
        .json(json!({"stream_id": "tv-1", "device_id": "living-room", "content_id": "movie-42"}))
        .send()
        .await;
    assert_eq!(started.status, 201);
    let body = started.json();
    let (header, claims) = verify(body["grant"].as_str().unwrap(), &jwks);
    assert_eq!(header["alg"], alg);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["sid"], "tv-1");
    assert_eq!(claims["did"], "living-room");
    assert_eq!(claims["cid"], "movie-42");
    assert!(claims.get("tags").is_none(), "no tags, no claim");
    assert_eq!(
        claims["exp"],
        expiry_seconds(&body["stream"]),
        "exp is the lease's end"
    );
    assert_eq!(claims["iat"], crate::tokens::NOW);

    let retry = app
        .post("/streams")
        .user("alice")
        .json(json!({"stream_id": "tv-1", "device_id": "living-room", "content_id": "movie-42"}))
        .send()
        .await;
    assert_eq!(retry.status, 200);
    verify(retry.json()["grant"].as_str().unwrap(), &jwks);

    app.clock.advance(std::time::Duration::from_secs(30));
    let beat = app
        .post("/streams/tv-1/heartbeat")
        .user("alice")
        .send()
        .await;
    assert_eq!(beat.status, 200);
    let beat = beat.json();
    let (_, renewed) = verify(beat["grant"].as_str().unwrap(), &jwks);
    assert_eq!(renewed["exp"], expiry_seconds(&beat["stream"]));
    assert_eq!(
        renewed["exp"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap() + 30
    );

    let revoked = app
        .delete("/admin/users/alice/streams/tv-1")
        .admin()
        .send()
        .await;
    assert_eq!(revoked.status, 204);
    let ended = app
        .post("/streams/tv-1/heartbeat")
        .user("alice")
        .send()
        .await;
    let problem = ended.problem(410, "stream-ended");
    assert!(
        problem.get("grant").is_none(),
        "an ended stream gets no grant"
    );
    assert!(
        !ended.text.contains("eyJ"),
        "no token anywhere in the answer"
    );
}

#[tokio::test]
async fn ed25519_grants_verify_with_the_published_key() {
    grants_follow_the_lease("grant-ed25519.pem", "EdDSA").await;
}

#[tokio::test]
async fn p256_grants_verify_with_the_published_key() {
    grants_follow_the_lease("grant-p256.pem", "ES256").await;
}

#[tokio::test]
async fn without_a_grant_key_there_is_no_grant_and_no_jwks() {
    let app = app(&[]).await;
    let started = app.post("/streams").user("alice").send().await;
    assert_eq!(started.status, 201);
    assert!(started.json().get("grant").is_none());
    app.get("/.well-known/jwks.json")
        .send()
        .await
        .problem(404, "not-found");
}

#[tokio::test]
async fn unusable_grant_keys_stop_the_start_naming_the_flag() {
    for key in [
        "grant-p384.pem",
        "idp-rsa.pem",
        "idp-rsa.pub.pem",
        "missing.pem",
    ] {
        let path = key_path(key);
        let config = crate::support::config(&["--grant-key", path.to_str().unwrap()]);
        let clock = std::sync::Arc::new(crate::support::clock());
        let error = streamguard::app_state(&config, clock).await.err().unwrap();
        assert!(error.to_string().contains("--grant-key"), "{key}: {error}");
    }
}

#[tokio::test]
async fn a_live_stream_id_cannot_be_taken_over_by_another_device() {
    let app = app(&[]).await;
    let tv = json!({"stream_id": "s-1", "device_id": "tv"});
    assert_eq!(
        app.post("/streams")
            .user("alice")
            .json(tv.clone())
            .send()
            .await
            .status,
        201
    );
    for other in [
        json!({"stream_id": "s-1", "device_id": "phone"}),
        json!({"stream_id": "s-1"}),
    ] {
        app.post("/streams")
            .user("alice")
            .json(other)
            .send()
            .await
            .problem(409, "stream-id-conflict");
    }
    assert_eq!(
        app.post("/streams")
            .user("alice")
            .json(tv)
            .send()
            .await
            .status,
        200
    );
    assert_eq!(app.live("alice").await, ["s-1"]);
}

/// Replaces the key file the way an operator should: write aside, rename.
fn install_keys(path: &std::path::Path, keys: &[&str]) {
    let pems: Vec<u8> = keys
        .iter()
        .flat_map(|k| std::fs::read(key_path(k)).unwrap())
        .collect();
    let aside = path.with_extension("new");
    std::fs::write(&aside, pems).unwrap();
    std::fs::rename(aside, path).unwrap();
}

#[tokio::test]
async fn the_grant_key_rotates_in_its_file_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grant.pem");
    install_keys(&path, &["grant-ed25519.pem"]);
    let app = app(&["--grant-key", path.to_str().unwrap()]).await;
    let jwks = || async { app.get("/.well-known/jwks.json").send().await.json() };
    let grant = |stream: &'static str| {
        let app = &app;
        async move {
            let beat = app
                .post(&format!("/streams/{stream}/heartbeat"))
                .user("alice")
                .send()
                .await;
            assert_eq!(beat.status, 200);
            beat.json()["grant"].as_str().unwrap().to_owned()
        }
    };
    let kid = |jws: &str, published: &Value| verify(jws, published).0["kid"].clone();
    let started = app
        .post("/streams")
        .user("alice")
        .json(json!({"stream_id": "tv"}))
        .send()
        .await;
    let old_grant = started.json()["grant"].as_str().unwrap().to_owned();
    let old_kid = kid(&old_grant, &jwks().await);

    // 1. Publish the new key next to the old one: the old still signs.
    install_keys(&path, &["grant-ed25519.pem", "grant-p256.pem"]);
    crate::identity::wait_for(|| async { jwks().await["keys"].as_array().unwrap().len() == 2 })
        .await;
    assert_eq!(kid(&grant("tv").await, &jwks().await), old_kid);

    // 2. The new key signs; grants signed before still verify.
    install_keys(&path, &["grant-p256.pem", "grant-ed25519.pem"]);
    // Polled by the key set, not by heartbeats: twenty of them a second
    // for the second the file takes to reload are over the flood limit.
    crate::identity::wait_for(|| async { jwks().await["keys"][0]["kid"] != old_kid }).await;
    assert_ne!(kid(&grant("tv").await, &jwks().await), old_kid);
    verify(&old_grant, &jwks().await);

    // 3. The old key goes: only the new one is published.
    install_keys(&path, &["grant-p256.pem"]);
    crate::identity::wait_for(|| async { jwks().await["keys"].as_array().unwrap().len() == 1 })
        .await;
    let published = jwks().await;
    assert_ne!(published["keys"][0]["kid"], old_kid);
    verify(&grant("tv").await, &published);
}

#[tokio::test]
async fn a_grant_carries_the_streams_content_and_tags() {
    let app = granting("grant-p256.pem", &[]).await;
    let jwks = app.get("/.well-known/jwks.json").send().await.json();
    let started = app
        .post("/streams")
        .user("alice")
        .json(json!({"stream_id": "ch-1", "content_id": "live-7",
            "tags": {"channel": "eurosport", "kind": "live"}}))
        .send()
        .await;
    assert_eq!(started.status, 201);
    let (_, claims) = verify(started.json()["grant"].as_str().unwrap(), &jwks);
    assert_eq!(claims["cid"], "live-7");
    assert_eq!(
        claims["tags"],
        json!({"channel": "eurosport", "kind": "live"})
    );
    let beat = app
        .post("/streams/ch-1/heartbeat")
        .user("alice")
        .send()
        .await;
    let (_, claims) = verify(beat.json()["grant"].as_str().unwrap(), &jwks);
    assert_eq!(claims["tags"]["channel"], "eurosport");
}
