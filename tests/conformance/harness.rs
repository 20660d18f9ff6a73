//! How the suite gets a fresh, isolated store of each backend.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use streamguard::domain::{Limit, ManualClock, OnLimit, Policy, Timestamp};
use streamguard::store::{self, StoreUrl, StreamStore};

/// A store under test and the clock that drives it.
pub struct Harness {
    pub store: Arc<dyn StreamStore>,
    pub clock: ManualClock,
    /// Whatever must live as long as the store (a temporary directory).
    pub _keep: Box<dyn Any + Send>,
}

impl Harness {
    /// Moves time forward for the store.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }
}

pub type Make = fn(Policy) -> Pin<Box<dyn Future<Output = Harness> + Send>>;

pub fn policy(limit: u32, on_limit: OnLimit) -> Policy {
    Policy {
        default_limit: Limit::new(limit).unwrap(),
        lease_ttl: Duration::from_secs(90),
        on_limit,
    }
}

pub fn start_clock() -> ManualClock {
    ManualClock::new(Timestamp::from_millis(1_800_000_000_000))
}

pub fn memory(policy: Policy) -> Pin<Box<dyn Future<Output = Harness> + Send>> {
    Box::pin(async move {
        let clock = start_clock();
        let store = store::connect(&StoreUrl::Memory, policy, Arc::new(clock.clone()))
            .await
            .expect("memory store opens");
        Harness {
            store,
            clock,
            _keep: Box::new(()),
        }
    })
}

#[cfg(feature = "embedded")]
pub fn file(policy: Policy) -> Pin<Box<dyn Future<Output = Harness> + Send>> {
    Box::pin(async move {
        let dir = tempfile::tempdir().expect("temporary directory");
        let clock = start_clock();
        let url = StoreUrl::File(dir.path().join("data"));
        let store = store::connect(&url, policy, Arc::new(clock.clone()))
            .await
            .expect("file store opens");
        Harness {
            store,
            clock,
            _keep: Box::new(dir),
        }
    })
}
