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
    /// For stores shared by instances (Redis, DynamoDB): opens another
    /// instance on the same data, as a restarted service would.
    pub reopen: Option<Reopen>,
}

pub type Reopen =
    Box<dyn Fn() -> Pin<Box<dyn Future<Output = Arc<dyn StreamStore>> + Send>> + Send + Sync>;

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
        plans: None,
    }
}

/// Held by the cases that load a store hard (the large account) or time
/// it (the hot account), so that they never run at the same time: the
/// DynamoDB emulator serves one request at a time, and a large account's
/// reads would push a timed case past its timeout.
pub async fn heavy_or_timed() -> tokio::sync::MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    ONE_AT_A_TIME.lock().await
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
            reopen: None,
        }
    })
}

#[cfg(feature = "file")]
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
            reopen: None,
        }
    })
}

/// Where the test Redis is; a missing service fails the test, loudly.
#[cfg(feature = "redis")]
pub fn service_url(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set. Run the tests with scripts/test, which starts Redis \
             (install it with: apt-get install -y redis-server)"
        )
    })
}

/// A prefix no other test uses, so tests share one server safely.
#[cfg(feature = "redis")]
pub fn unique_prefix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("t{nanos:x}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

#[cfg(feature = "redis")]
async fn redis_harness(var: &str, policy: Policy) -> Harness {
    use streamguard::store::{RedisStore, RedisTime};
    let url = service_url(var);
    let url = match url.split_once('#') {
        Some((base, fragment)) => format!("{base}?prefix={}#{fragment}", unique_prefix()),
        None => format!("{url}?prefix={}", unique_prefix()),
    };
    let StoreUrl::Redis(target) = url.parse().unwrap() else {
        unreachable!("a redis URL parses as redis")
    };
    let clock = start_clock();
    let store = RedisStore::open(
        &target,
        policy.clone(),
        RedisTime::Clock(Arc::new(clock.clone())),
    )
    .await
    .expect("Redis answers");
    let again = clock.clone();
    let reopen: Reopen = Box::new(move || {
        let (target, clock, policy) = (target.clone(), again.clone(), policy.clone());
        Box::pin(async move {
            let store: Arc<dyn StreamStore> =
                RedisStore::open(&target, policy, RedisTime::Clock(Arc::new(clock)))
                    .await
                    .expect("Redis answers");
            store
        })
    });
    Harness {
        store,
        clock,
        _keep: Box::new(()),
        reopen: Some(reopen),
    }
}

#[cfg(feature = "redis")]
pub fn redis(policy: Policy) -> Pin<Box<dyn Future<Output = Harness> + Send>> {
    Box::pin(redis_harness("STREAMGUARD_TEST_REDIS_URL", policy))
}

#[cfg(feature = "redis")]
pub fn redis_cluster(policy: Policy) -> Pin<Box<dyn Future<Output = Harness> + Send>> {
    Box::pin(redis_harness("STREAMGUARD_TEST_REDIS_CLUSTER_URL", policy))
}

#[cfg(feature = "redis")]
pub fn rediss(policy: Policy) -> Pin<Box<dyn Future<Output = Harness> + Send>> {
    Box::pin(redis_harness("STREAMGUARD_TEST_REDISS_URL", policy))
}
#[cfg(feature = "dynamodb")]
pub use crate::emulator::config as dynamodb_config;

/// A table name no other test uses.
#[cfg(feature = "dynamodb")]
pub fn unique_table() -> String {
    crate::cases::user("sg-test").to_string()
}

/// A fresh table of its own, created as `streamguard init` does.
#[cfg(feature = "dynamodb")]
pub fn dynamodb(policy: Policy) -> Pin<Box<dyn Future<Output = Harness> + Send>> {
    Box::pin(async move {
        let config = dynamodb_config().await;
        let table = unique_table();
        store::DynamoDbStore::create_table(&config, &table)
            .await
            .expect("the test table is created on the emulator");
        let clock = start_clock();
        let store =
            store::DynamoDbStore::open(&config, &table, policy.clone(), Arc::new(clock.clone()))
                .await
                .expect("dynamodb store opens");
        let again = clock.clone();
        let reopen: Reopen = Box::new(move || {
            let (table, clock, policy) = (table.clone(), again.clone(), policy.clone());
            Box::pin(async move {
                let config = dynamodb_config().await;
                let store: Arc<dyn StreamStore> =
                    store::DynamoDbStore::open(&config, &table, policy, Arc::new(clock))
                        .await
                        .expect("dynamodb store opens");
                store
            })
        });
        Harness {
            store,
            clock,
            _keep: Box::new(()),
            reopen: Some(reopen),
        }
    })
}
