//! `streamguard edge-keys --jwks URL|FILE --out DIR`: writes the key files
//! an edge checks grants with, from the published JWKS.
//!
//! - `DIR/<kid>.pem`: each P-256 key as a PEM public key (SPKI), the form
//!   HAProxy's `jwt_verify` loads and the nginx (njs) check imports;
//! - `DIR/jwks.json`: the same keys as a JWK Set, for checks that take one.
//!
//! Only P-256 (ES256) keys are written: HAProxy 2.6's `jwt_verify` and
//! njs 0.7's WebCrypto cannot check Ed25519. Files of keys no longer
//! published are removed, so a rotation's last step reaches the edge.
//! Every file is replaced atomically (written aside, then renamed).

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use http_body_util::BodyExt;
use serde_json::{Value, json};

/// The DER prefix of a P-256 SubjectPublicKeyInfo (RFC 5480): the
/// id-ecPublicKey and prime256v1 OIDs, then a BIT STRING of the
/// uncompressed point that follows (0x04, x, y).
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

const MAX_JWKS_BYTES: usize = 1 << 20;
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// What [`write`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// The kids of the P-256 keys written.
    pub kids: Vec<String>,
    /// Keys left out, with why.
    pub skipped: Vec<String>,
    /// Key files removed because their key is no longer published.
    pub removed: Vec<PathBuf>,
}

/// Fetches the JWKS (`http(s)://…`) or reads it from a file, then writes
/// the edge's key files into `out`.
pub async fn run(jwks: &str, out: &Path) -> Result<Written, String> {
    let document = read(jwks)
        .await
        .map_err(|e| format!("--jwks {jwks}: {e}"))?;
    write(&document, out).map_err(|e| format!("--out {}: {e}", out.display()))
}

/// The subcommand: writes the files and says what it did on stderr.
pub async fn main(jwks: &str, out: &Path) -> Result<(), String> {
    let written = run(jwks, out).await?;
    for kid in &written.kids {
        eprintln!("edge-keys: key {kid} written");
    }
    for why in &written.skipped {
        eprintln!("edge-keys: skipped {why}");
    }
    for path in &written.removed {
        eprintln!(
            "edge-keys: removed {} (no longer published)",
            path.display()
        );
    }
    Ok(())
}

async fn read(location: &str) -> Result<Vec<u8>, String> {
    let lower = location.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return std::fs::read(location).map_err(|e| e.to_string());
    }
    let url: axum::http::Uri = location.parse().map_err(|e| format!("not a URL: {e}"))?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
        .map_err(|e| format!("no CA certificates: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, axum::body::Body>(https);
    let fetch = async {
        let response = client.get(url).await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        let body = http_body_util::Limited::new(response.into_body(), MAX_JWKS_BYTES);
        let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(bytes.to_vec())
    };
    tokio::time::timeout(FETCH_TIMEOUT, fetch)
        .await
        .map_err(|_| "timed out".to_string())?
}

/// Writes the key files for the JWK Set `document` into `out`.
pub fn write(document: &[u8], out: &Path) -> Result<Written, String> {
    let set: Value = serde_json::from_slice(document).map_err(|e| format!("not JSON: {e}"))?;
    let keys = set["keys"]
        .as_array()
        .ok_or("not a JWK Set (no \"keys\" array)")?;
    let mut written = Written::default();
    let mut pems = Vec::new();
    let mut jwks = Vec::new();
    for key in keys {
        let kid = key["kid"].as_str().unwrap_or("");
        match p256_spki(key) {
            Ok(spki) if safe_kid(kid) => {
                pems.push((kid.to_owned(), pem(&spki)));
                jwks.push(json!({
                    "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig",
                    "kid": kid, "x": key["x"], "y": key["y"],
                }));
                written.kids.push(kid.to_owned());
            }
            Ok(_) => written.skipped.push(format!(
                "{kid:?}: a kid must be 1-128 characters of A-Z a-z 0-9 - _"
            )),
            Err(why) => written.skipped.push(format!("{kid:?}: {why}")),
        }
    }
    if written.kids.is_empty() {
        return Err(format!(
            "no P-256 key to write ({}); the edges check ES256 grants only: make --grant-key a P-256 key",
            written.skipped.join("; ")
        ));
    }
    std::fs::create_dir_all(out).map_err(|e| e.to_string())?;
    for (kid, text) in &pems {
        replace(&out.join(format!("{kid}.pem")), text.as_bytes())?;
    }
    let set = json!({ "keys": jwks }).to_string();
    replace(&out.join("jwks.json"), set.as_bytes())?;
    for entry in std::fs::read_dir(out).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let is_pem = path.extension().is_some_and(|e| e == "pem");
        if is_pem && !written.kids.iter().any(|k| k == stem) {
            std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            written.removed.push(path);
        }
    }
    Ok(written)
}

/// The DER SubjectPublicKeyInfo of a P-256 JWK.
fn p256_spki(key: &Value) -> Result<Vec<u8>, &'static str> {
    if key["kty"] != "EC" || key["crv"] != "P-256" {
        return Err("not a P-256 key (HAProxy 2.6 and njs 0.7 check ES256 only)");
    }
    let coordinate = |name: &str| {
        key[name]
            .as_str()
            .and_then(|c| B64.decode(c).ok())
            .filter(|c| c.len() == 32)
            .ok_or("a coordinate is not 32 bytes of base64url")
    };
    let (x, y) = (coordinate("x")?, coordinate("y")?);
    let mut point = Vec::with_capacity(65);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    let mut der = P256_SPKI_PREFIX.to_vec();
    der.extend_from_slice(&point);
    Ok(der)
}

/// A kid that is safe as a file name and in a configuration line.
fn safe_kid(kid: &str) -> bool {
    (1..=128).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn pem(der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut text = String::from("-----BEGIN PUBLIC KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        text.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        text.push('\n');
    }
    text.push_str("-----END PUBLIC KEY-----\n");
    text
}

/// Writes `path` atomically: aside, then renamed over it. An unchanged
/// file is left alone (its modification time too).
fn replace(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    let aside = path.with_extension("tmp");
    std::fs::write(&aside, bytes).map_err(|e| format!("{}: {e}", aside.display()))?;
    std::fs::rename(&aside, path).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwks_of(names: &[&str]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grant.pem");
        let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keys/");
        let pem: Vec<u8> = names
            .iter()
            .flat_map(|n| std::fs::read(format!("{keys}{n}")).unwrap())
            .collect();
        std::fs::write(&path, pem).unwrap();
        super::super::GrantSigner::load(&path)
            .unwrap()
            .jwks()
            .into_bytes()
    }

    #[test]
    fn p256_keys_are_written_as_pem_and_jwks_and_ed25519_is_skipped() {
        let out = tempfile::tempdir().unwrap();
        let document = jwks_of(&["grant-p256.pem", "grant-ed25519.pem"]);
        let written = write(&document, out.path()).unwrap();
        assert_eq!(written.kids.len(), 1);
        assert_eq!(written.skipped.len(), 1, "{:?}", written.skipped);
        let kid = &written.kids[0];
        let text = std::fs::read_to_string(out.path().join(format!("{kid}.pem"))).unwrap();
        let block = ::pem::parse(&text).unwrap();
        assert_eq!(block.tag(), "PUBLIC KEY");
        // The same public key as the private key file's.
        let private = ::pem::parse(
            std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/keys/grant-p256.pem"
            ))
            .unwrap(),
        )
        .unwrap();
        let rng = ring::rand::SystemRandom::new();
        let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            private.contents(),
            &rng,
        )
        .unwrap();
        use ring::signature::KeyPair;
        assert_eq!(&block.contents()[26..], pair.public_key().as_ref());
        let set: Value =
            serde_json::from_slice(&std::fs::read(out.path().join("jwks.json")).unwrap()).unwrap();
        assert_eq!(set["keys"].as_array().unwrap().len(), 1);
        assert_eq!(set["keys"][0]["kid"], kid.as_str());
    }

    #[test]
    fn keys_no_longer_published_are_removed() {
        let out = tempfile::tempdir().unwrap();
        std::fs::write(out.path().join("old-kid.pem"), "stale").unwrap();
        let written = write(&jwks_of(&["grant-p256.pem"]), out.path()).unwrap();
        assert_eq!(written.removed, vec![out.path().join("old-kid.pem")]);
        let names: Vec<_> = std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn a_set_without_a_p256_key_is_an_error_and_writes_nothing() {
        let out = tempfile::tempdir().unwrap();
        let dir = out.path().join("keys");
        let error = write(&jwks_of(&["grant-ed25519.pem"]), &dir).unwrap_err();
        assert!(error.contains("P-256"), "{error}");
        assert!(!dir.exists());
        assert!(write(b"{}", &dir).is_err());
        assert!(write(b"not json", &dir).is_err());
        let traversal = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "../x",
            "x": B64.encode([1; 32]), "y": B64.encode([2; 32])}]});
        assert!(write(traversal.to_string().as_bytes(), &dir).is_err());
    }
}
