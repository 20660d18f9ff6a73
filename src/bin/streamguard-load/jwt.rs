//! HS256 tokens for `--auth jwt` servers: `sub` = the account, valid for a
//! day. Three base64url parts and one HMAC-SHA256; the `hmac` and `sha2`
//! crates do the cryptography.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

#[derive(Clone)]
pub struct Signer {
    key: Arc<[u8]>,
    header: Arc<str>,
}

impl Signer {
    pub fn new(secret: &str) -> Self {
        Self {
            key: secret.as_bytes().into(),
            header: URL_SAFE_NO_PAD
                .encode(br#"{"alg":"HS256","typ":"JWT"}"#)
                .into(),
        }
    }

    pub fn token(&self, account: &str) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let claims = serde_json::json!({ "sub": account, "iat": now, "exp": now + 86_400 });
        let signing_input = format!(
            "{}.{}",
            self.header,
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(signing_input.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{signature}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_the_rfc7515_way() {
        let token = Signer::new("secret").token("acct-1");
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["sub"], "acct-1");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"secret").unwrap();
        mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        mac.verify_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap())
            .expect("the signature verifies");
    }
}
