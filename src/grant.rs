//! Signed playback grants (`--grant-key`): a compact JWS per granted start
//! and renewed heartbeat, which a CDN edge or a DRM licence server checks
//! offline against `GET /.well-known/jwks.json`. A grant expires with its
//! lease, so an ended stream's last grant dies within one lease.

use std::path::Path;

use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde::Serialize;

use crate::domain::{Lease, Timestamp, UserId};

/// The private key grants are signed with, and its published half.
pub struct GrantSigner {
    key: EncodingKey,
    header: Header,
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
        let (key, alg) = match EncodingKey::from_ed_pem(pem) {
            Ok(key) => (key, Algorithm::EdDSA),
            Err(_) => match EncodingKey::from_ec_pem(pem) {
                Ok(key) => (key, Algorithm::ES256),
                Err(_) => {
                    return Err(
                        "not an Ed25519 or P-256 private key in PKCS#8 PEM (openssl genpkey)"
                            .into(),
                    );
                }
            },
        };
        let mut jwk = Jwk::from_encoding_key(&key, alg)
            .map_err(|e| format!("cannot derive the public key ({e}); is it P-256?"))?;
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|e| e.to_string())?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(KeyAlgorithm::from(alg));
        let jwks = serde_json::to_string(&JwkSet { keys: vec![jwk] }).map_err(|e| e.to_string())?;
        let mut header = Header::new(alg);
        header.kid = Some(kid);
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
        encode(&self.header, claims, &self.key).map_err(|e| e.to_string())
    }

    /// The public key set, as JSON.
    pub fn jwks(&self) -> &str {
        &self.jwks
    }
}
