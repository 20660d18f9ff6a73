//! Signed playback grants (`--grant-key`): a compact JWS per granted start
//! and renewed heartbeat, which a CDN edge or a DRM licence server checks
//! offline against `GET /.well-known/jwks.json`. A grant expires with its
//! lease, so an ended stream's last grant dies within one lease.
//!
//! Grants are signed with ring, not through jsonwebtoken: a heartbeat signs
//! one, and ring signs P-256 twelve times and Ed25519 1.6 times faster than
//! the RustCrypto backend jsonwebtoken is built with (BENCHMARKS.md). Only
//! the compact serialisation (RFC 7515 §7.1: two base64url JSON parts and
//! the signature) is written here; the cryptography is ring's.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::domain::{Lease, Timestamp, UserId};

enum SigningKey {
    Ed25519(Ed25519KeyPair),
    P256(EcdsaKeyPair, SystemRandom),
}

/// The private key grants are signed with, and its published half.
pub struct GrantSigner {
    key: SigningKey,
    /// The protected header, already base64url-encoded.
    header: String,
    /// `{"keys":[…]}` as served at `/.well-known/jwks.json`.
    jwks: String,
}

#[derive(Debug, thiserror::Error)]
#[error("--grant-key {path}: {reason}")]
pub struct GrantKeyError {
    path: String,
    reason: String,
}

/// The claims of a grant.
#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    sid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    did: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cid: Option<&'a str>,
    iat: i64,
    exp: i64,
}

const NOT_A_KEY: &str =
    "not an Ed25519 or P-256 private key in PKCS#8 PEM (make one with openssl genpkey)";

impl GrantSigner {
    /// Reads an Ed25519 or P-256 private key (PKCS#8 PEM).
    pub fn load(path: &Path) -> Result<Self, GrantKeyError> {
        let fail = |reason: String| GrantKeyError {
            path: path.display().to_string(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
        Self::from_pem(&pem).map_err(fail)
    }

    pub fn from_pem(pem: &[u8]) -> Result<Self, String> {
        let block = pem::parse(pem).map_err(|_| NOT_A_KEY.to_string())?;
        if block.tag() != "PRIVATE KEY" {
            return Err(NOT_A_KEY.into());
        }
        let der = block.contents();
        let (key, alg, jwk) = if let Ok(pair) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            let x = B64.encode(pair.public_key().as_ref());
            let jwk = json!({"crv": "Ed25519", "kty": "OKP", "x": x});
            (SigningKey::Ed25519(pair), "EdDSA", jwk)
        } else {
            let rng = SystemRandom::new();
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
                .map_err(|_| NOT_A_KEY.to_string())?;
            // An uncompressed point: 0x04, then x and y, 32 bytes each.
            let point = pair.public_key().as_ref();
            let (x, y) = (B64.encode(&point[1..33]), B64.encode(&point[33..65]));
            let jwk = json!({"crv": "P-256", "kty": "EC", "x": x, "y": y});
            (SigningKey::P256(pair, rng), "ES256", jwk)
        };
        // RFC 7638: the SHA-256 of the required members, written in
        // lexicographic order above, with no whitespace.
        let kid = B64.encode(Sha256::digest(jwk.to_string().as_bytes()));
        let mut published = jwk;
        published["kid"] = json!(kid);
        published["use"] = json!("sig");
        published["alg"] = json!(alg);
        let jwks = json!({ "keys": [published] }).to_string();
        let header = B64.encode(json!({"alg": alg, "kid": kid, "typ": "JWT"}).to_string());
        let signer = Self { key, header, jwks };
        // A key that cannot sign fails here, not on the first grant.
        signer.sign_claims(&Claims {
            sub: "probe",
            sid: "probe",
            did: None,
            cid: None,
            iat: 0,
            exp: 0,
        })?;
        Ok(signer)
    }

    /// The grant for `lease` of `user`, issued at `now`; it expires with
    /// the lease (`exp` is `expires_at` in whole seconds, rounded down).
    pub fn sign(&self, user: &UserId, lease: &Lease, now: Timestamp) -> Result<String, String> {
        self.sign_claims(&Claims {
            sub: user.as_str(),
            sid: lease.id.as_str(),
            did: lease.device_id.as_ref().map(|d| d.as_str()),
            cid: lease.content_id.as_ref().map(|c| c.as_str()),
            iat: now.as_millis().div_euclid(1000),
            exp: lease.expires_at.as_millis().div_euclid(1000),
        })
    }

    fn sign_claims(&self, claims: &Claims<'_>) -> Result<String, String> {
        let payload = serde_json::to_vec(claims).map_err(|e| e.to_string())?;
        let mut jws = String::with_capacity(self.header.len() + payload.len() * 4 / 3 + 100);
        jws.push_str(&self.header);
        jws.push('.');
        B64.encode_string(&payload, &mut jws);
        let signature = match &self.key {
            SigningKey::Ed25519(pair) => pair.sign(jws.as_bytes()).as_ref().to_vec(),
            SigningKey::P256(pair, rng) => pair
                .sign(rng, jws.as_bytes())
                .map_err(|_| "ECDSA signing failed".to_string())?
                .as_ref()
                .to_vec(),
        };
        jws.push('.');
        B64.encode_string(signature, &mut jws);
        Ok(jws)
    }

    /// The public key set, as JSON.
    pub fn jwks(&self) -> &str {
        &self.jwks
    }
}
