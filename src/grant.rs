//! Signed playback grants (`--grant-key`): a compact JWS per granted start
//! and renewed heartbeat, which a CDN edge or a DRM licence server checks
//! offline against `GET /.well-known/jwks.json`. A grant expires with its
//! lease, so an ended stream's last grant dies within one lease.
//!
//! The key file may hold several keys: the first signs, all are published.
//! It is re-read when it changes, so a key rotates without a restart:
//! publish the new key after the current one, let every cache of the JWKS
//! expire, move it first, and drop the old one a lease later.
//!
//! Grants are signed with ring, not through jsonwebtoken: a heartbeat signs
//! one, and ring signs both P-256 and Ed25519 faster than the RustCrypto
//! backend jsonwebtoken is built with (BENCHMARKS.md, identity and
//! grants). Only
//! the compact serialisation (RFC 7515 §7.1: two base64url JSON parts and
//! the signature) is written here; the cryptography is ring's.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::domain::{Lease, Tags, Timestamp, UserId};

pub mod edge_keys;
mod verify;

pub use verify::{GrantClaims, GrantRefusal};

enum SigningKey {
    Ed25519(Ed25519KeyPair),
    P256(EcdsaKeyPair, SystemRandom),
}

/// How often the key file is checked for changes.
const FILE_REFRESH: Duration = Duration::from_secs(1);

/// The keys of one version of the key file.
struct KeyRing {
    /// The first key: it signs.
    key: SigningKey,
    /// Its protected header, already base64url-encoded.
    header: String,
    /// `{"keys":[…]}`, every key's public half, as served at
    /// `/.well-known/jwks.json`.
    jwks: String,
    /// How many keys `jwks` holds.
    published: usize,
    /// Every published key's public half, to check grants with.
    verifiers: Vec<verify::PublicKey>,
}

/// One key of the file.
struct ParsedKey {
    key: SigningKey,
    public: verify::PublicKey,
    alg: &'static str,
    /// Its RFC 7638 thumbprint.
    kid: String,
    /// Its public half, as a JWK.
    jwk: serde_json::Value,
}

/// Signs grants with the key file's current first key (`--grant-key`).
pub struct GrantSigner {
    path: PathBuf,
    current: RwLock<Arc<KeyRing>>,
    /// Digest of the file behind `current`.
    file: Mutex<[u8; 32]>,
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
    /// The stream's tags, so an edge can check a live channel's path.
    #[serde(skip_serializing_if = "Tags::is_empty")]
    tags: &'a Tags,
    /// The hash of the lease secret, when the lease has one: a resume from
    /// this grant keeps the lease bound to its player.
    #[serde(skip_serializing_if = "Option::is_none")]
    sh: Option<String>,
    iat: i64,
    exp: i64,
}

const NOT_A_KEY: &str =
    "not an Ed25519 or P-256 private key in PKCS#8 PEM (make one with openssl genpkey)";

impl GrantSigner {
    /// Reads the key file: Ed25519 or P-256 private keys (PKCS#8 PEM), the
    /// signing key first. Call [`GrantSigner::keep_fresh`] to follow changes.
    pub fn load(path: &Path) -> Result<Arc<Self>, GrantKeyError> {
        let fail = |reason: String| GrantKeyError {
            path: path.display().to_string(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
        let ring = KeyRing::from_pem(&pem).map_err(fail)?;
        Ok(Arc::new(Self {
            path: path.to_owned(),
            current: RwLock::new(Arc::new(ring)),
            file: Mutex::new(Sha256::digest(&pem).into()),
        }))
    }

    /// Re-reads the key file every second for as long as the signer is used.
    pub fn keep_fresh(self: &Arc<Self>) {
        crate::refresh::every(FILE_REFRESH, self);
    }

    fn ring(&self) -> Arc<KeyRing> {
        self.current.read().expect("grant key lock").clone()
    }

    /// The grant for `lease` of `user`, issued at `now`; it expires with
    /// the lease (`exp` is `expires_at` in whole seconds, rounded down).
    pub fn sign(&self, user: &UserId, lease: &Lease, now: Timestamp) -> Result<String, String> {
        self.ring().sign(&Claims {
            sub: user.as_str(),
            sid: lease.id.as_str(),
            did: lease.device_id.as_ref().map(|d| d.as_str()),
            cid: lease.content_id.as_ref().map(|c| c.as_str()),
            tags: &lease.tags,
            sh: lease.secret.as_ref().map(|s| s.to_hex()),
            iat: now.as_millis().div_euclid(1000),
            exp: lease.expires_at.as_millis().div_euclid(1000),
        })
    }

    /// The public key set, as JSON.
    pub fn jwks(&self) -> String {
        self.ring().jwks.clone()
    }
}

impl crate::refresh::Refresh for GrantSigner {
    const WHAT: &'static str = "grant key";

    /// Reads the key file again; installs its keys when it changed. A file
    /// that does not parse leaves the keys in use alone.
    async fn refresh(&self) -> Result<(), String> {
        let pem = tokio::fs::read(&self.path)
            .await
            .map_err(|e| format!("--grant-key {}: {e}", self.path.display()))?;
        let fresh: [u8; 32] = Sha256::digest(&pem).into();
        if *self.file.lock().expect("grant key lock") == fresh {
            return Ok(());
        }
        let ring = KeyRing::from_pem(&pem)
            .map_err(|reason| format!("--grant-key {}: {reason}", self.path.display()))?;
        tracing::info!(keys = ring.published, "grant keys loaded");
        *self.current.write().expect("grant key lock") = Arc::new(ring);
        *self.file.lock().expect("grant key lock") = fresh;
        Ok(())
    }
}

impl KeyRing {
    fn from_pem(pem: &[u8]) -> Result<Self, String> {
        let blocks = pem::parse_many(pem).map_err(|_| NOT_A_KEY.to_string())?;
        // Text around the blocks is allowed; a block cut short (a file
        // caught half-written) is not silently skipped.
        let begins = pem.windows(11).filter(|w| w == b"-----BEGIN ").count();
        if begins != blocks.len() {
            return Err("a PEM block is incomplete".into());
        }
        let mut keys = Vec::with_capacity(blocks.len());
        for block in &blocks {
            if block.tag() != "PRIVATE KEY" {
                return Err(NOT_A_KEY.into());
            }
            keys.push(signing_key(block.contents())?);
        }
        let mut keys = keys.into_iter();
        let first = keys.next().ok_or_else(|| NOT_A_KEY.to_string())?;
        let mut published = vec![first.jwk];
        let mut verifiers = vec![first.public];
        for other in keys {
            // The same key twice is published once.
            if !published.iter().any(|p| p["kid"] == other.kid) {
                published.push(other.jwk);
                verifiers.push(other.public);
            }
        }
        let header =
            B64.encode(json!({"alg": first.alg, "kid": first.kid, "typ": "JWT"}).to_string());
        let ring = Self {
            key: first.key,
            header,
            published: published.len(),
            jwks: json!({ "keys": published }).to_string(),
            verifiers,
        };
        // A key that cannot sign fails here, not on the first grant.
        ring.sign(&Claims {
            sub: "probe",
            sid: "probe",
            did: None,
            cid: None,
            tags: &Tags::default(),
            sh: None,
            iat: 0,
            exp: 0,
        })?;
        Ok(ring)
    }

    fn sign(&self, claims: &Claims<'_>) -> Result<String, String> {
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
}

/// An Ed25519 or P-256 private key from its PKCS#8 DER.
fn signing_key(der: &[u8]) -> Result<ParsedKey, String> {
    let (key, alg, jwk, public) = if let Ok(pair) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
    {
        let x = B64.encode(pair.public_key().as_ref());
        let jwk = json!({"crv": "Ed25519", "kty": "OKP", "x": x});
        let public = pair.public_key().as_ref().to_vec();
        (SigningKey::Ed25519(pair), "EdDSA", jwk, public)
    } else {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
            .map_err(|_| NOT_A_KEY.to_string())?;
        // An uncompressed point: 0x04, then x and y, 32 bytes each.
        let point = pair.public_key().as_ref();
        let (x, y) = (B64.encode(&point[1..33]), B64.encode(&point[33..65]));
        let jwk = json!({"crv": "P-256", "kty": "EC", "x": x, "y": y});
        let public = point.to_vec();
        (SigningKey::P256(pair, rng), "ES256", jwk, public)
    };
    // RFC 7638: the SHA-256 of the required members, written in
    // lexicographic order above, with no whitespace.
    let kid = B64.encode(Sha256::digest(jwk.to_string().as_bytes()));
    let mut jwk = jwk;
    jwk["kid"] = json!(kid);
    jwk["use"] = json!("sig");
    jwk["alg"] = json!(alg);
    let public = verify::PublicKey::new(kid.clone(), alg, public);
    Ok(ParsedKey {
        key,
        public,
        alg,
        kid,
        jwk,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::refresh::Refresh;

    fn fixture(name: &str) -> Vec<u8> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keys/");
        std::fs::read(format!("{dir}{name}")).unwrap()
    }

    fn kids(signer: &GrantSigner) -> Vec<String> {
        let jwks: serde_json::Value = serde_json::from_str(&signer.jwks()).unwrap();
        let keys = jwks["keys"].as_array().unwrap();
        keys.iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The `kid` in the header of a grant the signer makes now.
    fn signing_kid(signer: &GrantSigner) -> String {
        let user = UserId::parse("alice").unwrap();
        let now = Timestamp::from_millis(1_000);
        let lease = Lease {
            id: crate::domain::StreamId::parse("tv").unwrap(),
            device_id: None,
            content_id: None,
            tags: Default::default(),
            secret: None,
            started_at: now,
            expires_at: now + Duration::from_secs(90),
            seq: 0,
            pace: Default::default(),
        };
        let grant = signer.sign(&user, &lease, now).unwrap();
        let header = grant.split('.').next().unwrap();
        let header: serde_json::Value =
            serde_json::from_slice(&B64.decode(header).unwrap()).unwrap();
        header["kid"].as_str().unwrap().to_owned()
    }

    fn file(dir: &tempfile::TempDir, pems: &[&[u8]]) -> PathBuf {
        let path = dir.path().join("grant.pem");
        std::fs::write(&path, pems.concat()).unwrap();
        path
    }

    #[test]
    fn the_first_key_signs_and_every_key_is_published_once() {
        let dir = tempfile::tempdir().unwrap();
        let (ed, p256) = (fixture("grant-ed25519.pem"), fixture("grant-p256.pem"));
        let ed_only = GrantSigner::load(&file(&dir, &[&ed])).unwrap();
        let both = GrantSigner::load(&file(&dir, &[&p256, &ed, &p256])).unwrap();
        let ed_kid = kids(&ed_only).remove(0);
        let listed = kids(&both);
        assert_eq!(listed.len(), 2, "the repeated key is published once");
        assert_eq!(listed[1], ed_kid);
        assert_eq!(signing_kid(&both), listed[0], "the first key signs");
        assert_eq!(signing_kid(&ed_only), ed_kid);
    }

    #[test]
    fn a_file_with_anything_but_usable_private_keys_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ed = fixture("grant-ed25519.pem");
        for bad in [
            fixture("grant-p384.pem"),
            fixture("idp-rsa.pub.pem"),
            b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI".to_vec(),
        ] {
            let error = GrantSigner::load(&file(&dir, &[&ed, &bad])).err();
            assert!(error.is_some(), "{}", String::from_utf8_lossy(&bad));
        }
        let empty = GrantSigner::load(&file(&dir, &[b"# no key yet\n"])).err();
        assert!(empty.is_some(), "a file without a key");
        let commented = GrantSigner::load(&file(&dir, &[b"# signs first\n", &ed]));
        assert!(commented.is_ok(), "text around the blocks is allowed");
    }

    #[tokio::test]
    async fn a_changed_file_is_taken_up_and_a_broken_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let (ed, p256) = (fixture("grant-ed25519.pem"), fixture("grant-p256.pem"));
        let path = file(&dir, &[&ed]);
        let signer = GrantSigner::load(&path).unwrap();
        let before = kids(&signer);

        std::fs::write(&path, b"-----BEGIN PRIVATE KEY-----\ntruncated").unwrap();
        assert!(signer.refresh().await.is_err());
        assert_eq!(kids(&signer), before, "a broken file keeps the keys in use");

        file(&dir, &[&p256, &ed]);
        signer.refresh().await.unwrap();
        let after = kids(&signer);
        assert_eq!(after.len(), 2);
        assert_eq!(after[1], before[0], "the old key stays published");
        assert_eq!(signing_kid(&signer), after[0], "the new key signs");
    }
}
