//! Bearer token verification (`--auth jwt`) on arbitrary tokens: every one
//! is refused with a reason (nothing here knows the secret or the private
//! key, so nothing may be accepted), and none panics.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use streamguard::auth::{JwtSettings, JwtVerifier, TokenError};
use streamguard::domain::Timestamp;

struct Target {
    runtime: tokio::runtime::Runtime,
    verifier: JwtVerifier,
}

fn target() -> &'static Target {
    static TARGET: OnceLock<Target> = OnceLock::new();
    TARGET.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // An HS256 secret and a JWKS with one P-256 key (kid "fuzz-key"),
        // so inputs reach both the HMAC and the ECDSA paths.
        let jwks = concat!(env!("CARGO_MANIFEST_DIR"), "/jwks.json");
        let verifier = runtime.block_on(async {
            JwtVerifier::new(JwtSettings {
                secret: Some(b"fuzz-secret-nobody-can-guess-0123456789".to_vec()),
                jwks: Some(jwks.into()),
                issuer: Some("https://idp.example".into()),
                audience: vec!["streamguard".into()],
                leeway: Duration::from_secs(30),
                limit_claim: Some("screens".into()),
                plan_claim: Some("tier".into()),
            })
            .await
            .unwrap()
        });
        Target { runtime, verifier }
    })
}

fuzz_target!(|data: &[u8]| {
    let t = target();
    let token = String::from_utf8_lossy(data);
    let now = Timestamp::from_millis(1_800_000_000_000);
    match t.runtime.block_on(t.verifier.verify(&token, now)) {
        Err(TokenError::Invalid(reason)) => assert!(!reason.is_empty()),
        other => panic!("a token nobody could sign was not refused: {other:?}"),
    }
});
