//! Mints test tokens for benchmarks and manual tries of `--auth jwt`:
//!
//!     mint_token hs256 SECRET SUB            an HS256 token valid for a day
//!     mint_token es256 KEY.pem KID SUB       an ES256 token valid for a day
//!     mint_token jwks KEY.pem KID            the JWKS publishing KEY's public half

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};

fn claims(sub: &str) -> serde_json::Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    serde_json::json!({ "sub": sub, "iat": now, "exp": now + 86_400 })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let pem = |path: &str| std::fs::read(path).expect("key file");
    let out = match args.as_slice() {
        ["hs256", secret, sub] => encode(
            &Header::new(Algorithm::HS256),
            &claims(sub),
            &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
        )
        .unwrap(),
        ["es256", key, kid, sub] => {
            let mut header = Header::new(Algorithm::ES256);
            header.kid = Some((*kid).to_owned());
            let key = EncodingKey::from_ec_pem(&pem(key)).unwrap();
            encode(&header, &claims(sub), &key).unwrap()
        }
        ["jwks", key, kid] => {
            let key = EncodingKey::from_ec_pem(&pem(key)).unwrap();
            let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
            jwk.common.key_id = Some((*kid).to_owned());
            serde_json::to_string(&JwkSet { keys: vec![jwk] }).unwrap()
        }
        _ => {
            eprintln!(
                "usage: mint_token hs256 SECRET SUB | es256 KEY.pem KID SUB | jwks KEY.pem KID"
            );
            std::process::exit(2);
        }
    };
    println!("{out}");
}
