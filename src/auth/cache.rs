//! Tokens already verified, so a heartbeat does not pay for a signature
//! check again: a player sends the same token for its whole session.
//!
//! Keyed by the token's SHA-256, bounded, and each entry valid only until
//! the token's `exp` and only for the key set it was verified against.

use quick_cache::sync::Cache;
use sha2::{Digest, Sha256};

use super::Caller;
use crate::domain::Timestamp;

/// Most tokens remembered per instance (about 150 bytes each).
pub const CAPACITY: usize = 100_000;

#[derive(Clone)]
pub struct Verified {
    pub caller: Caller,
    /// The token is refused from this instant on (`exp` plus leeway).
    pub until: Timestamp,
    /// The token is refused before this instant (`nbf` minus leeway).
    pub from: Option<Timestamp>,
    /// The key set generation that verified it.
    pub keys: u64,
}

pub struct TokenCache(Cache<[u8; 32], Verified>);

pub fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl TokenCache {
    pub fn new() -> Self {
        Self(Cache::new(CAPACITY))
    }

    /// The caller of a token verified before, if it is still valid at `now`
    /// under key set generation `keys`.
    pub fn get(&self, digest: &[u8; 32], now: Timestamp, keys: u64) -> Option<Caller> {
        let hit = self.0.get(digest)?;
        let valid = hit.keys == keys && now < hit.until && hit.from.is_none_or(|f| now >= f);
        if valid {
            Some(hit.caller)
        } else {
            if now >= hit.until || hit.keys != keys {
                self.0.remove(digest);
            }
            None
        }
    }

    pub fn insert(&self, digest: [u8; 32], verified: Verified) {
        self.0.insert(digest, verified);
    }
}
