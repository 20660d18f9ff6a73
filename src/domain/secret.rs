//! Lease secrets: a random string only the player that started a stream
//! knows. The store keeps a hash of it, never the secret; heartbeats and
//! idempotent retries of a lease started with one must present it.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// Shortest secret accepted: 22 base64url characters carry 128 bits.
pub const MIN_SECRET_LEN: usize = 22;
/// Longest secret accepted.
pub const MAX_SECRET_LEN: usize = 128;

/// Why a string is not a lease secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a lease secret is {MIN_SECRET_LEN}-{MAX_SECRET_LEN} characters of A-Z a-z 0-9 - _ (128 random bits or more)"
)]
pub struct InvalidSecret;

/// What the store keeps of a lease secret: the first 16 bytes of its
/// SHA-256. The secret carries at least 128 random bits, so the hash can
/// neither be reversed nor guessed; it may appear in a grant (`sh`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecretHash([u8; 16]);

impl SecretHash {
    /// Checks a secret as a player sends it, and hashes it.
    pub fn of(secret: &str) -> Result<Self, InvalidSecret> {
        let well_formed = (MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&secret.len())
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !well_formed {
            return Err(InvalidSecret);
        }
        let digest = Sha256::digest(secret.as_bytes());
        let mut hash = [0; 16];
        hash.copy_from_slice(&digest[..16]);
        Ok(Self(hash))
    }

    pub fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut hash = [0; 16];
        for (i, byte) in hash.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Self(hash))
    }

    /// Whether `presented` opens a lease bound by `bound`: a lease with no
    /// secret is open to any; one with a secret only to the same secret.
    pub fn opens(bound: Option<&SecretHash>, presented: Option<&SecretHash>) -> bool {
        match bound {
            None => true,
            Some(bound) => presented.is_some_and(|p| {
                // Constant time: the comparison reveals nothing of the hash.
                subtle::ConstantTimeEq::ct_eq(&bound.0[..], &p.0[..]).into()
            }),
        }
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretHash({})", self.to_hex())
    }
}

impl Serialize for SecretHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for SecretHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let hex = String::deserialize(d)?;
        SecretHash::from_hex(&hex).ok_or_else(|| serde::de::Error::custom("not a secret hash"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_checked_hashed_and_compared() {
        let secret = "AAAAAAAAAAAAAAAAAAAAAA";
        let hash = SecretHash::of(secret).unwrap();
        assert_eq!(SecretHash::from_hex(&hash.to_hex()), Some(hash));
        assert_ne!(hash, SecretHash::of("AAAAAAAAAAAAAAAAAAAAAB").unwrap());
        for bad in [
            "short",
            &"x".repeat(129),
            "AAAAAAAAAAAAAAAAAAAAA=",
            "AAAAAAAAAAAAAAAAAAAAA/",
        ] {
            assert_eq!(SecretHash::of(bad), Err(InvalidSecret), "{bad}");
        }
        assert!(SecretHash::of(&"x".repeat(128)).is_ok());
        assert!(SecretHash::opens(None, None));
        assert!(SecretHash::opens(None, Some(&hash)));
        assert!(SecretHash::opens(Some(&hash), Some(&hash)));
        assert!(!SecretHash::opens(Some(&hash), None));
        let other = SecretHash::of("BBBBBBBBBBBBBBBBBBBBBB").unwrap();
        assert!(!SecretHash::opens(Some(&hash), Some(&other)));
        assert_eq!(
            serde_json::to_string(&hash).unwrap(),
            format!("\"{}\"", hash.to_hex())
        );
        assert!(!format!("{hash:?}").contains(secret));
    }
}
