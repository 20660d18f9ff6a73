//! Checking our own grants: the signature against the keys the
//! `--grant-key` file holds now (every published key, not only the one that
//! signs, so grants of a key being rotated out still pass until they
//! expire), then `exp`. Used by `GET /edge/verify`; anything else that is
//! handed a grant (a heartbeat resuming a stream) calls the same
//! [`GrantSigner::verify`].

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::signature::{ECDSA_P256_SHA256_FIXED, ED25519, UnparsedPublicKey, VerificationAlgorithm};
use serde::Deserialize;

use super::GrantSigner;
use crate::domain::{ContentId, DeviceId, SecretHash, StreamId, Tags, Timestamp, UserId};

/// Longest grant looked at: ours are about 400 bytes with 128-character
/// ids; anything much longer is refused before any decoding.
const MAX_GRANT_LEN: usize = 2048;

/// A published key's public half.
pub(super) struct PublicKey {
    kid: String,
    alg: &'static str,
    key: UnparsedPublicKey<Vec<u8>>,
}

impl PublicKey {
    /// `alg` is `EdDSA` (Ed25519, 32 bytes) or `ES256` (an uncompressed
    /// P-256 point).
    pub(super) fn new(kid: String, alg: &'static str, public: Vec<u8>) -> Self {
        let algorithm: &'static dyn VerificationAlgorithm = if alg == "EdDSA" {
            &ED25519
        } else {
            &ECDSA_P256_SHA256_FIXED
        };
        Self {
            kid,
            alg,
            key: UnparsedPublicKey::new(algorithm, public),
        }
    }
}

/// What a verified grant says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantClaims {
    /// `sub`: the account.
    pub user: UserId,
    /// `sid`: the stream.
    pub stream: StreamId,
    /// `did`, when the start named a device.
    pub device: Option<DeviceId>,
    /// `cid`, when the start named a content.
    pub content: Option<ContentId>,
    /// `tags`: the stream's tags.
    pub tags: Tags,
    /// `sh`: the hash of the lease secret, when the lease has one.
    pub secret: Option<SecretHash>,
    /// `iat`, in seconds since the epoch.
    pub issued_at: i64,
    /// `exp`, in seconds since the epoch: the lease's `expires_at` when
    /// the grant was issued, rounded down.
    pub expires_at: i64,
}

/// Why a grant was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GrantRefusal {
    /// Signed by one of our keys, but `exp` has passed.
    #[error("the grant has expired")]
    Expired,
    /// Not a grant of ours: malformed, an unknown key, a bad signature or
    /// claims we would never sign.
    #[error("{0}")]
    Invalid(&'static str),
}

impl GrantRefusal {
    /// `expired` or `invalid`.
    pub fn as_str(&self) -> &'static str {
        match self {
            GrantRefusal::Expired => "expired",
            GrantRefusal::Invalid(_) => "invalid",
        }
    }
}

#[derive(Deserialize)]
struct Header<'a> {
    alg: &'a str,
    kid: &'a str,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    sid: String,
    #[serde(default)]
    did: Option<String>,
    #[serde(default)]
    cid: Option<String>,
    #[serde(default)]
    tags: Option<serde_json::Value>,
    #[serde(default)]
    sh: Option<String>,
    iat: i64,
    exp: i64,
}

impl GrantSigner {
    /// Checks `token`, a grant this service signed: its signature against
    /// the key its `kid` names among the keys published now, then that
    /// `now` is before `exp`. The stream itself is not looked up.
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<GrantClaims, GrantRefusal> {
        use GrantRefusal::Invalid;
        if token.len() > MAX_GRANT_LEN {
            return Err(Invalid("the grant is too long"));
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Invalid("not a compact JWS"));
        };
        let decode = |part: &str| B64.decode(part).map_err(|_| Invalid("not base64url"));
        let header_json = decode(header)?;
        let header: Header<'_> =
            serde_json::from_slice(&header_json).map_err(|_| Invalid("unreadable header"))?;
        let ring = self.ring();
        let key = ring
            .verifiers
            .iter()
            .find(|k| k.kid == header.kid)
            .ok_or(Invalid("signed by a key that is not published"))?;
        if key.alg != header.alg {
            return Err(Invalid("the header's alg is not its key's"));
        }
        let signed = &token[..header_json_len(token)];
        key.key
            .verify(signed.as_bytes(), &decode(signature)?)
            .map_err(|_| Invalid("the signature does not verify"))?;
        let claims: Claims =
            serde_json::from_slice(&decode(payload)?).map_err(|_| Invalid("unreadable claims"))?;
        let id = |_| Invalid("a claim is not a valid id");
        let claims = GrantClaims {
            user: UserId::parse(&claims.sub).map_err(id)?,
            stream: StreamId::parse(&claims.sid).map_err(id)?,
            device: claims
                .did
                .as_deref()
                .map(DeviceId::parse)
                .transpose()
                .map_err(id)?,
            content: claims
                .cid
                .as_deref()
                .map(ContentId::parse)
                .transpose()
                .map_err(id)?,
            tags: match claims.tags {
                None => Tags::default(),
                Some(tags) => {
                    serde_json::from_value(tags).map_err(|_| Invalid("unreadable tags"))?
                }
            },
            secret: claims
                .sh
                .as_deref()
                .map(|hex| SecretHash::from_hex(hex).ok_or(Invalid("unreadable sh")))
                .transpose()?,
            issued_at: claims.iat,
            expires_at: claims.exp,
        };
        // A lease is live while now < expires_at; `exp` is expires_at
        // rounded down to the second, so this never outlives the lease.
        if now.as_millis() >= claims.expires_at.saturating_mul(1000) {
            return Err(GrantRefusal::Expired);
        }
        Ok(claims)
    }
}

/// Length of `header.payload`, the signed part of a compact JWS.
fn header_json_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::domain::Lease;

    fn signer(names: &[&str]) -> (tempfile::TempDir, PathBuf, std::sync::Arc<GrantSigner>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grant.pem");
        write(&path, names);
        let signer = GrantSigner::load(&path).unwrap();
        (dir, path, signer)
    }

    fn write(path: &std::path::Path, names: &[&str]) {
        let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keys/");
        let pem: Vec<u8> = names
            .iter()
            .flat_map(|n| std::fs::read(format!("{keys}{n}")).unwrap())
            .collect();
        std::fs::write(path, pem).unwrap();
    }

    const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);

    fn lease(content: Option<&str>) -> Lease {
        Lease {
            id: StreamId::parse("tv").unwrap(),
            device_id: Some(DeviceId::parse("box").unwrap()),
            content_id: content.map(|c| ContentId::parse(c).unwrap()),
            tags: Default::default(),
            secret: None,
            started_at: T0,
            expires_at: T0 + Duration::from_millis(90_500),
            seq: 0,
            pace: Default::default(),
        }
    }

    fn grant(signer: &GrantSigner, content: Option<&str>) -> String {
        let user = UserId::parse("alice").unwrap();
        signer.sign(&user, &lease(content), T0).unwrap()
    }

    #[test]
    fn our_grants_verify_with_both_key_types_until_exp() {
        for key in ["grant-p256.pem", "grant-ed25519.pem"] {
            let (_dir, _, signer) = signer(&[key]);
            let token = grant(&signer, Some("movie"));
            let claims = signer.verify(&token, T0).unwrap();
            assert_eq!(claims.user.as_str(), "alice");
            assert_eq!(claims.stream.as_str(), "tv");
            assert_eq!(claims.device.unwrap().as_str(), "box");
            assert_eq!(claims.content.unwrap().as_str(), "movie");
            assert_eq!(claims.issued_at, 1_800_000_000);
            assert_eq!(claims.expires_at, 1_800_000_090, "rounded down");
            let last = Timestamp::from_millis(1_800_000_089_999);
            assert!(signer.verify(&token, last).is_ok(), "{key}");
            let at_exp = Timestamp::from_millis(1_800_000_090_000);
            assert_eq!(signer.verify(&token, at_exp), Err(GrantRefusal::Expired));
            assert!(grant(&signer, None).len() < token.len());
            assert_eq!(
                signer.verify(&grant(&signer, None), T0).unwrap().content,
                None
            );
        }
    }

    #[test]
    fn anything_we_did_not_sign_is_invalid() {
        let (_dir, _, signer) = signer(&["grant-p256.pem"]);
        let (_other_dir, _, other) = signer_of("grant-ed25519.pem");
        let token = grant(&signer, Some("movie"));
        let [header, payload, signature]: [&str; 3] =
            token.split('.').collect::<Vec<_>>().try_into().unwrap();
        let forged_payload = B64.encode(
            String::from_utf8(B64.decode(payload).unwrap())
                .unwrap()
                .replace("movie", "other"),
        );
        let none_header = B64.encode(r#"{"alg":"none","kid":"x"}"#);
        let mut flipped = B64.decode(signature).unwrap();
        flipped[5] ^= 1;
        let cases = [
            String::new(),
            "a.b".into(),
            format!("{token}.x"),
            format!("{header}.{forged_payload}.{signature}"),
            format!("{header}.{payload}.{}", B64.encode(flipped)),
            format!("{none_header}.{payload}."),
            grant(&other, Some("movie")),
            format!("{header}.{payload}.{signature}{}", "A".repeat(3000)),
        ];
        for bad in cases {
            let refusal = signer.verify(&bad, T0).unwrap_err();
            assert_eq!(refusal.as_str(), "invalid", "{bad}: {refusal}");
        }
    }

    fn signer_of(key: &str) -> (tempfile::TempDir, PathBuf, std::sync::Arc<GrantSigner>) {
        signer(&[key])
    }

    #[tokio::test]
    async fn a_rotated_key_verifies_while_published() {
        use crate::refresh::Refresh;
        let (_dir, path, signer) = signer(&["grant-ed25519.pem"]);
        let old = grant(&signer, None);
        write(&path, &["grant-p256.pem", "grant-ed25519.pem"]);
        signer.refresh().await.unwrap();
        let new = grant(&signer, None);
        assert!(
            signer.verify(&old, T0).is_ok(),
            "the old key is still published"
        );
        assert!(signer.verify(&new, T0).is_ok());
        write(&path, &["grant-p256.pem"]);
        signer.refresh().await.unwrap();
        assert_eq!(signer.verify(&old, T0).unwrap_err().as_str(), "invalid");
        assert!(signer.verify(&new, T0).is_ok());
    }
}
