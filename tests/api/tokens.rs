//! An identity provider for the tests: mints tokens with the test keys in
//! `tests/fixtures/keys` and writes the JWKS documents that publish them.

use std::path::{Path, PathBuf};

use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

pub const SECRET: &str = "a-test-hs256-secret-of-enough-length";
/// The manual clock's start (support::clock), in seconds.
pub const NOW: i64 = 1_800_000_000;

pub fn key_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keys")
        .join(name)
}

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(key_path(name)).unwrap()
}

/// One of the identity provider's signing keys.
#[derive(Clone, Copy)]
pub enum Idp {
    Rsa,
    P256,
    Ed25519,
}

impl Idp {
    pub fn alg(self) -> Algorithm {
        match self {
            Idp::Rsa => Algorithm::RS256,
            Idp::P256 => Algorithm::ES256,
            Idp::Ed25519 => Algorithm::EdDSA,
        }
    }

    pub fn kid(self) -> &'static str {
        match self {
            Idp::Rsa => "rsa-1",
            Idp::P256 => "p256-1",
            Idp::Ed25519 => "ed-1",
        }
    }

    fn encoding_key(self) -> EncodingKey {
        match self {
            Idp::Rsa => EncodingKey::from_rsa_pem(&pem("idp-rsa.pem")).unwrap(),
            Idp::P256 => EncodingKey::from_ec_pem(&pem("idp-p256.pem")).unwrap(),
            Idp::Ed25519 => EncodingKey::from_ed_pem(&pem("idp-ed25519.pem")).unwrap(),
        }
    }

    /// The public key as a JWK with this key's `kid`.
    pub fn jwk(self) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(&self.encoding_key(), self.alg()).unwrap();
        jwk.common.key_id = Some(self.kid().into());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(KeyAlgorithm::from(self.alg()));
        jwk
    }

    /// A token signed by this key, naming its `kid`.
    pub fn token(self, claims: Value) -> String {
        let mut header = Header::new(self.alg());
        header.kid = Some(self.kid().into());
        encode(&header, &claims, &self.encoding_key()).unwrap()
    }
}

/// Writes a JWKS document with `keys` to `path`.
pub fn write_jwks(path: &Path, keys: &[Idp]) {
    let set = JwkSet {
        keys: keys.iter().map(|k| k.jwk()).collect(),
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(&set).unwrap()).unwrap();
    std::fs::rename(tmp, path).unwrap();
}

/// Claims valid for an hour from the test clock's start.
pub fn claims(sub: &str) -> Value {
    json!({ "sub": sub, "iat": NOW, "exp": NOW + 3600 })
}

/// An HS256 token with `claims`.
pub fn hs256(claims: Value) -> String {
    hs256_with(SECRET.as_bytes(), claims)
}

pub fn hs256_with(secret: &[u8], claims: Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret).unwrap(),
    )
    .unwrap()
}

/// Base64url without padding, for hand-made tokens.
pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn unb64(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap()
}
