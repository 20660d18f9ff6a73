//! `--auth jwt`: bearer tokens verified with a shared secret (HS256) or the
//! identity provider's public keys (RS*, PS*, ES256/384, EdDSA from a JWKS).
//!
//! A token's algorithm must be the one its key is for, so an RSA public key
//! can never be used as an HMAC secret, and `alg: none` names no key at all.
//! `exp` (required) and `nbf` are checked against the service's clock with
//! a small leeway; `iss` and `aud` when configured. Verified tokens are
//! cached until they expire (see [`super::cache`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::{Map, Value};

use super::cache::{TokenCache, Verified, digest};
use super::jwks::Jwks;
use super::{AuthSetupError, Caller, TokenError};
use crate::domain::{Limit, PlanName, Timestamp, UserId};

/// Largest bearer token accepted.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Shortest HS256 secret accepted: a key as long as the hash (RFC 7518
/// §3.2); a shorter one can be guessed offline from any token.
pub const MIN_SECRET_BYTES: usize = 32;

/// Asymmetric algorithms a JWKS key may verify.
const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// What `--jwt-*` configure.
#[derive(Clone, Debug, Default)]
pub struct JwtSettings {
    pub secret: Option<Vec<u8>>,
    /// A JWKS file path or URL.
    pub jwks: Option<String>,
    pub issuer: Option<String>,
    pub audience: Vec<String>,
    pub leeway: Duration,
    pub limit_claim: Option<String>,
    /// `--jwt-plan-claim`: a string claim naming the account's plan.
    pub plan_claim: Option<String>,
}

pub struct JwtVerifier {
    secret: Option<DecodingKey>,
    jwks: Option<Arc<Jwks>>,
    validations: HashMap<Algorithm, Validation>,
    leeway_ms: i64,
    limit_claim: Option<String>,
    plan_claim: Option<String>,
    cache: TokenCache,
}

impl JwtVerifier {
    /// Loads the keys (fetching a JWKS URL now) and starts keeping them fresh.
    pub async fn new(settings: JwtSettings) -> Result<Self, AuthSetupError> {
        if settings.secret.is_none() && settings.jwks.is_none() {
            return Err(AuthSetupError::NoKeys);
        }
        let secret = match &settings.secret {
            Some(bytes) if bytes.len() < MIN_SECRET_BYTES => {
                return Err(AuthSetupError::Keys {
                    what: "--jwt-secret".into(),
                    reason: format!(
                        "the secret has {} bytes; HS256 needs at least {MIN_SECRET_BYTES} (RFC 7518 §3.2), e.g. `openssl rand -base64 32`",
                        bytes.len()
                    ),
                });
            }
            Some(bytes) => {
                Some(
                    DecodingKey::from_secret(bytes).map_err(|e| AuthSetupError::Keys {
                        what: "--jwt-secret".into(),
                        reason: e.to_string(),
                    })?,
                )
            }
            None => None,
        };
        let jwks = match &settings.jwks {
            Some(location) => {
                let jwks = Jwks::load(location).await?;
                jwks.keep_fresh();
                Some(jwks)
            }
            None => None,
        };
        let validations = ASYMMETRIC
            .into_iter()
            .chain([Algorithm::HS256])
            .map(|alg| (alg, validation(alg, &settings)))
            .collect();
        Ok(Self {
            secret,
            jwks,
            validations,
            leeway_ms: settings.leeway.as_millis() as i64,
            limit_claim: settings.limit_claim,
            plan_claim: settings.plan_claim,
            cache: TokenCache::new(),
        })
    }

    /// The caller a bearer token proves, checked at `now`.
    pub async fn verify(&self, token: &str, now: Timestamp) -> Result<Caller, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::invalid("the token is larger than 8 KiB"));
        }
        let keys = self.jwks.as_ref().map(|j| j.current());
        let generation = keys.as_ref().map_or(0, |k| k.generation);
        let digest = digest(token.as_bytes());
        if let Some(caller) = self.cache.get(&digest, now, generation) {
            return Ok(caller);
        }

        let header =
            decode_header(token).map_err(|_| TokenError::invalid("the token is malformed"))?;
        let claims = match header.alg {
            Algorithm::HS256 => {
                let key = self
                    .secret
                    .as_ref()
                    .ok_or_else(|| TokenError::invalid("HS256 tokens are not accepted here"))?;
                self.decode(token, key, Algorithm::HS256)?
            }
            alg if ASYMMETRIC.contains(&alg) => {
                let jwks = self.jwks.as_ref().ok_or_else(|| {
                    TokenError::invalid(format!("{alg:?} tokens are not accepted here"))
                })?;
                let mut keys = keys.expect("keys come with a JWKS");
                if keys.find(header.kid.as_deref(), alg).is_none()
                    && header.kid.is_some()
                    && jwks.refresh_for_unknown_kid().await
                {
                    keys = jwks.current();
                }
                let key = keys
                    .find(header.kid.as_deref(), alg)
                    .ok_or_else(|| TokenError::invalid("the token's key id is unknown"))?;
                if !key.verifies(alg) {
                    return Err(TokenError::invalid(
                        "the token's algorithm is not the one its key is for",
                    ));
                }
                self.decode(token, &key.key, alg)?
            }
            alg => {
                return Err(TokenError::invalid(format!(
                    "{alg:?} tokens are not accepted here"
                )));
            }
        };
        let verified = self.check(&claims, now, generation)?;
        let caller = verified.caller.clone();
        self.cache.insert(digest, verified);
        Ok(caller)
    }

    fn decode(
        &self,
        token: &str,
        key: &DecodingKey,
        alg: Algorithm,
    ) -> Result<Map<String, Value>, TokenError> {
        let validation = &self.validations[&alg];
        decode::<Claims>(token, key, validation)
            .map(|data| data.claims.0)
            .map_err(|e| TokenError::invalid(describe(e.kind())))
    }

    /// The time and identity claims, which the library is told not to check
    /// so that they are checked against the service's own clock.
    fn check(
        &self,
        claims: &Map<String, Value>,
        now: Timestamp,
        generation: u64,
    ) -> Result<Verified, TokenError> {
        let exp = seconds(claims, "exp")?
            .ok_or_else(|| TokenError::invalid("the token has no exp claim"))?;
        let until = exp.saturating_add(self.leeway_ms);
        if now.as_millis() >= until {
            return Err(TokenError::invalid("the token has expired"));
        }
        let from = seconds(claims, "nbf")?.map(|nbf| nbf.saturating_sub(self.leeway_ms));
        if from.is_some_and(|f| now.as_millis() < f) {
            return Err(TokenError::invalid("the token is not valid yet"));
        }
        // RFC 7519: one issuer, a string (the library takes any of a list).
        if claims.get("iss").is_some_and(|iss| !iss.is_string()) {
            return Err(TokenError::invalid("the token's iss is not a string"));
        }
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or_else(|| TokenError::invalid("the token has no sub claim"))?;
        let user = UserId::parse(sub).map_err(|e| {
            TokenError::invalid(format!("the token's sub is not an account id: {e}"))
        })?;
        let limit_claim = match &self.limit_claim {
            Some(name) => plan_limit(claims, name)?,
            None => None,
        };
        let plan = match &self.plan_claim {
            Some(name) => plan_name(claims, name)?,
            None => None,
        };
        Ok(Verified {
            caller: Caller {
                user,
                limit_claim,
                plan,
            },
            until: Timestamp::from_millis(until),
            from: from.map(Timestamp::from_millis),
            keys: generation,
        })
    }
}

fn validation(alg: Algorithm, settings: &JwtSettings) -> Validation {
    let mut v = Validation::new(alg);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.required_spec_claims.clear();
    v.validate_aud = !settings.audience.is_empty();
    if !settings.audience.is_empty() {
        v.set_audience(&settings.audience);
    }
    if let Some(issuer) = &settings.issuer {
        v.set_issuer(&[issuer]);
        v.required_spec_claims.insert("iss".into());
    }
    if !settings.audience.is_empty() {
        v.required_spec_claims.insert("aud".into());
    }
    v
}

/// A NumericDate claim in milliseconds.
fn seconds(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e13)
            .map(|s| Some((s * 1000.0) as i64))
            .ok_or_else(|| TokenError::invalid(format!("the token's {name} is not a date"))),
    }
}

fn plan_limit(claims: &Map<String, Value>, name: &str) -> Result<Option<Limit>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        // `null` too: a claim that is there but no whole number.
        Some(v) => v
            .as_number()
            .and_then(crate::domain::Limit::from_json)
            .map(Some)
            .ok_or_else(|| {
                TokenError::invalid(format!(
                    "the token's {name} claim must be a whole number from 0 to 1000"
                ))
            }),
    }
}

/// The plan a string claim names; whether `--plans` defines it is checked
/// where the plans are known.
fn plan_name(claims: &Map<String, Value>, name: &str) -> Result<Option<PlanName>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_str()
            .and_then(|s| PlanName::parse(s).ok())
            .map(Some)
            .ok_or_else(|| {
                TokenError::invalid(format!("the token's {name} claim must name a plan"))
            }),
    }
}

/// A token's claims, refused when one is named twice: RFC 7519 lets a
/// parser take the last or refuse, and two verifiers of one token must not
/// read it differently. One rule for every claim (the library's own
/// struct refuses duplicates only of the claims it knows).
struct Claims(Map<String, Value>);

impl<'de> serde::Deserialize<'de> for Claims {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Unique;
        impl<'de> serde::de::Visitor<'de> for Unique {
            type Value = Claims;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object of claims")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Claims, A::Error> {
                let mut claims = Map::new();
                while let Some((name, value)) = map.next_entry::<String, Value>()? {
                    if claims.contains_key(&name) {
                        return Err(serde::de::Error::custom(format!("duplicate claim {name}")));
                    }
                    claims.insert(name, value);
                }
                Ok(Claims(claims))
            }
        }
        deserializer.deserialize_map(Unique)
    }
}

/// A client-safe reason for a library refusal.
fn describe(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidSignature => "the token's signature does not verify",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "the token's algorithm is not the one its key is for"
        }
        ErrorKind::InvalidIssuer => "the token's issuer is not accepted",
        ErrorKind::InvalidAudience => "the token's audience is not accepted",
        ErrorKind::MissingRequiredClaim(_) => "the token lacks a required claim",
        ErrorKind::Json(e) if e.to_string().starts_with("duplicate") => {
            "the token names a claim twice"
        }
        _ => "the token is malformed",
    }
}
