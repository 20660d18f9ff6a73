//! HS256 tokens for `--auth jwt` servers: `sub` = the account, valid for a
//! day, signed by `jsonwebtoken` (the crate the server verifies with).

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header};

#[derive(Clone)]
pub struct Signer {
    key: EncodingKey,
}

#[derive(serde::Serialize)]
struct Claims<'a> {
    sub: &'a str,
    iat: u64,
    exp: u64,
}

impl Signer {
    pub fn new(secret: &str) -> anyhow::Result<Self> {
        Ok(Self {
            key: EncodingKey::from_secret(secret.as_bytes())?,
        })
    }

    pub fn token(&self, account: &str) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let claims = Claims {
            sub: account,
            iat: now,
            exp: now + 86_400,
        };
        jsonwebtoken::encode(&Header::default(), &claims, &self.key)
            .expect("HS256 signs any claims")
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{DecodingKey, Validation};

    use super::*;

    #[test]
    fn tokens_verify_with_the_secret_and_name_the_account() {
        let token = Signer::new("secret").unwrap().token("acct-1");
        let data = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &DecodingKey::from_secret(b"secret").unwrap(),
            &Validation::default(),
        )
        .expect("the token verifies");
        assert_eq!(data.claims["sub"], "acct-1");
        assert!(
            jsonwebtoken::decode::<serde_json::Value>(
                &token,
                &DecodingKey::from_secret(b"other").unwrap(),
                &Validation::default()
            )
            .is_err()
        );
    }
}
