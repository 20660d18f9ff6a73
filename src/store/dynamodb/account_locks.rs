//! Decisions on one account made by this instance wait for each other.
//!
//! Only the conditional write makes a decision atomic; this lock only keeps
//! an instance from racing itself. Without it, N concurrent requests on one
//! account send N writes of which one wins and N-1 retry, again and again:
//! O(N²) requests for N decisions. With it, only other instances compete,
//! so conflicts and retries stay as few as the instances sharing the table.

use std::hash::{BuildHasher, RandomState};

use tokio::sync::{Mutex, MutexGuard};

/// Enough shards that unrelated accounts rarely wait for each other.
const SHARDS: usize = 1024;

pub struct AccountLocks {
    shards: Box<[Mutex<()>]>,
    hasher: RandomState,
}

impl AccountLocks {
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(())).collect(),
            hasher: RandomState::new(),
        }
    }

    /// Waits until no other decision of this instance holds `user`'s shard.
    pub async fn lock(&self, user: &str) -> MutexGuard<'_, ()> {
        let shard = self.hasher.hash_one(user) as usize % self.shards.len();
        self.shards[shard].lock().await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn one_account_waits_others_do_not() {
        let locks = AccountLocks::new();
        let held = locks.lock("alice").await;
        let again = tokio::time::timeout(Duration::from_millis(20), locks.lock("alice")).await;
        assert!(again.is_err(), "a second decision on alice waits");
        let other = (0..10)
            .map(|i| format!("user-{i}"))
            .find(|u| {
                let shard = |s: &str| locks.hasher.hash_one(s) as usize % SHARDS;
                shard(u) != shard("alice")
            })
            .unwrap();
        let _bob = locks.lock(&other).await;
        drop(held);
        let _alice = locks.lock("alice").await;
    }
}
