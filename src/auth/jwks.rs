//! The identity provider's public keys (`--jwt-jwks`): a JWKS file, re-read
//! when it changes, or an `https://` URL, fetched at start, refreshed
//! periodically and when a token names a key id we do not know (at most
//! once per [`UNKNOWN_KID_REFRESH`], so a flood of random `kid`s cannot
//! hammer the provider). Rotation needs no restart.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use super::AuthSetupError;
use super::cache::digest;
use crate::refresh::Refresh;

/// How often a JWKS URL is fetched again.
const URL_REFRESH: Duration = Duration::from_secs(300);
/// How often a JWKS file is checked for changes (a `stat`).
const FILE_REFRESH: Duration = Duration::from_secs(1);
/// Fewest seconds between two refreshes caused by unknown key ids.
pub const UNKNOWN_KID_REFRESH: Duration = Duration::from_secs(30);
/// Longest a JWKS fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// One verification key.
pub struct Key {
    pub kid: Option<String>,
    /// The algorithms it verifies: the key's `alg`, or when the key names
    /// none, every one its type allows (RSA: RS* and PS*).
    pub algs: &'static [Algorithm],
    pub key: DecodingKey,
}

impl Key {
    pub fn verifies(&self, alg: Algorithm) -> bool {
        self.algs.contains(&alg)
    }
}

/// What an RSA key without `alg` verifies (RFC 7517 makes `alg` optional).
const RSA: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// The keys of one version of the document.
pub struct KeySet {
    pub keys: Vec<Key>,
    /// Changes whenever the document does; verified tokens remember it.
    pub generation: u64,
}

impl KeySet {
    /// The key a token's header names: by `kid`, or the only key of the
    /// token's algorithm when the token names none.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<&Key> {
        match kid {
            Some(kid) => self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
            None => {
                let mut of_alg = self.keys.iter().filter(|k| k.verifies(alg));
                let only = of_alg.next()?;
                of_alg.next().is_none().then_some(only)
            }
        }
    }
}

type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Empty<axum::body::Bytes>,
>;

enum Source {
    File(PathBuf),
    Url {
        url: axum::http::Uri,
        client: Box<HttpClient>,
    },
}

pub struct Jwks {
    source: Source,
    current: RwLock<Arc<KeySet>>,
    /// Digest of the document behind `current`.
    document: Mutex<[u8; 32]>,
    generations: AtomicU64,
    last_unknown_kid_refresh: Mutex<Option<Instant>>,
}

impl Jwks {
    /// Loads the keys `location` names (a path, or an `http(s)://` URL);
    /// fails when there is no usable key.
    pub async fn load(location: &str) -> Result<Arc<Self>, AuthSetupError> {
        let scheme = location
            .split_once("://")
            .map(|(s, _)| s.to_ascii_lowercase());
        let source = if matches!(scheme.as_deref(), Some("https" | "http")) {
            let url: axum::http::Uri = location
                .parse()
                .map_err(|e| setup(location, format!("not a URL: {e}")))?;
            // Over plain HTTP anyone on the path could swap in their own
            // key and speak for every account: tests on this machine only.
            let loopback = url.host().is_some_and(|host| {
                host == "localhost"
                    || host
                        .trim_matches(['[', ']'])
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            });
            if url.scheme_str() == Some("http") && !loopback {
                return Err(setup(
                    location,
                    "use https:// (plain http:// is accepted only for a loopback address, for tests)"
                        .into(),
                ));
            }
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
                .map_err(|e| setup(location, format!("no CA certificates: {e}")))?
                .https_or_http()
                .enable_http1()
                .build();
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build(https);
            Source::Url {
                url,
                client: Box::new(client),
            }
        } else {
            Source::File(PathBuf::from(location))
        };
        let jwks = Arc::new(Self {
            source,
            current: RwLock::new(Arc::new(KeySet {
                keys: Vec::new(),
                generation: 0,
            })),
            document: Mutex::new([0; 32]),
            generations: AtomicU64::new(0),
            last_unknown_kid_refresh: Mutex::new(None),
        });
        jwks.refresh().await.map_err(|e| setup(location, e))?;
        if jwks.current().keys.is_empty() {
            return Err(setup(location, "no usable RS/PS/ES/EdDSA key".into()));
        }
        Ok(jwks)
    }

    pub fn current(&self) -> Arc<KeySet> {
        self.current.read().expect("key set lock").clone()
    }

    /// A token named a key we do not have: look again, unless we did so
    /// recently. Returns whether a refresh ran.
    pub async fn refresh_for_unknown_kid(&self) -> bool {
        {
            let mut last = self.last_unknown_kid_refresh.lock().expect("refresh lock");
            if last.is_some_and(|t| t.elapsed() < UNKNOWN_KID_REFRESH) {
                return false;
            }
            *last = Some(Instant::now());
        }
        if let Err(error) = self.refresh().await {
            tracing::warn!(%error, "JWKS refresh for an unknown key id failed");
        }
        true
    }

    /// Keeps the keys fresh in the background for as long as they are used.
    pub fn keep_fresh(self: &Arc<Self>) {
        let every = match self.source {
            Source::File(_) => FILE_REFRESH,
            Source::Url { .. } => URL_REFRESH,
        };
        crate::refresh::every(every, self);
    }

    async fn read(&self) -> Result<Vec<u8>, String> {
        match &self.source {
            Source::File(path) => {
                let bytes = tokio::fs::read(path).await.map_err(|e| e.to_string())?;
                if bytes.len() > MAX_JWKS_BYTES {
                    return Err("document larger than 1 MiB".into());
                }
                Ok(bytes)
            }
            Source::Url { url, client } => {
                use http_body_util::BodyExt;
                let fetch = async {
                    let response = client
                        .get(url.clone())
                        .await
                        .map_err(|e| format!("fetching the JWKS failed: {e}"))?;
                    if !response.status().is_success() {
                        return Err(format!("fetching the JWKS answered {}", response.status()));
                    }
                    let body = http_body_util::Limited::new(response.into_body(), MAX_JWKS_BYTES);
                    let bytes = body
                        .collect()
                        .await
                        .map_err(|e| format!("reading the JWKS failed: {e}"))?
                        .to_bytes();
                    Ok(bytes.to_vec())
                };
                tokio::time::timeout(FETCH_TIMEOUT, fetch)
                    .await
                    .map_err(|_| "fetching the JWKS timed out".to_string())?
            }
        }
    }
}

impl crate::refresh::Refresh for Jwks {
    const WHAT: &'static str = "JWKS";

    /// Reads the document again; installs it when it changed.
    async fn refresh(&self) -> Result<(), String> {
        let bytes = self.read().await?;
        let fresh = digest(&bytes);
        if *self.document.lock().expect("document lock") == fresh {
            return Ok(());
        }
        let keys = parse(&bytes)?;
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::info!(
            keys = keys.len(),
            generation,
            "JWT verification keys loaded"
        );
        *self.current.write().expect("key set lock") = Arc::new(KeySet { keys, generation });
        *self.document.lock().expect("document lock") = fresh;
        Ok(())
    }
}

fn setup(location: &str, reason: String) -> AuthSetupError {
    AuthSetupError::Keys {
        what: format!("--jwt-jwks {}", crate::secret::redact_userinfo(location)),
        reason,
    }
}

#[derive(Deserialize)]
struct Document {
    keys: Vec<serde_json::Value>,
}

/// The usable keys of a JWKS document. Keys we cannot use (symmetric keys,
/// encryption keys, unknown types) are skipped, so one odd key does not
/// take the others down.
fn parse(bytes: &[u8]) -> Result<Vec<Key>, String> {
    let document: Document =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut keys = Vec::new();
    for value in document.keys {
        match key(value) {
            Ok(k) => keys.push(k),
            Err(reason) => tracing::warn!(%reason, "skipping a JWKS key"),
        }
    }
    Ok(keys)
}

fn key(value: serde_json::Value) -> Result<Key, String> {
    let jwk: Jwk = serde_json::from_value(value).map_err(|e| e.to_string())?;
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != jsonwebtoken::jwk::PublicKeyUse::Signature)
    {
        return Err("not a signature key".into());
    }
    // What the key's type allows; `alg` may narrow it, never widen it.
    let allowed: &'static [Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => &RSA,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => return Err("unsupported curve".into()),
        },
        AlgorithmParameters::OctetKeyPair(_) => &[Algorithm::EdDSA],
        AlgorithmParameters::OctetKey(_) => {
            return Err("symmetric keys are not taken from a JWKS".into());
        }
        _ => return Err("unsupported key type".into()),
    };
    let algs = match jwk.common.key_algorithm {
        Some(declared) => {
            let alg = declared
                .to_string()
                .parse::<Algorithm>()
                .map_err(|_| format!("alg {declared} is not a signature algorithm"))?;
            let at = allowed
                .iter()
                .position(|a| *a == alg)
                .ok_or_else(|| format!("alg {alg:?} does not fit the key type"))?;
            &allowed[at..=at]
        }
        None => allowed,
    };
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
    Ok(Key {
        kid: jwk.common.key_id,
        algs,
        key,
    })
}
