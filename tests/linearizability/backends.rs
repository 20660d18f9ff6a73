//! Every backend, opened as `tests/conformance/harness.rs` opens it: unique
//! account ids (or key prefix, or table) per run, and a missing service
//! fails the test with the command that starts it.

use std::sync::Arc;
use std::time::Duration;

use streamguard::domain::{
    Limit, ManualClock, OnLimit, PlanBook, Plans, Policy, Timestamp, UserId,
};
#[cfg(any(feature = "redis", feature = "dynamodb"))]
use streamguard::store::StreamStore;
use streamguard::store::{self, StoreUrl};

use crate::workload::{Backend, Time};

/// Plans are on; `workload::check` draws the file the stores decide with
/// (and edits it between rounds).
pub fn policy(limit: u32, on_limit: OnLimit, lease_ttl: Duration) -> Policy {
    Policy {
        default_limit: Limit::new(limit).unwrap(),
        lease_ttl,
        on_limit,
        plans: Some(Arc::new(PlanBook::new(Plans::implicit(
            Limit::new(limit).unwrap(),
        )))),
    }
}

pub fn start_clock() -> ManualClock {
    ManualClock::new(Timestamp::from_millis(1_800_000_000_000))
}

/// Account ids no other run uses.
pub fn users(n: usize) -> Vec<UserId> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    (0..n)
        .map(|_| {
            let k = NEXT.fetch_add(1, Ordering::Relaxed);
            UserId::parse(&format!("lin-{run:x}-{k}")).unwrap()
        })
        .collect()
}

const ACCOUNTS: usize = 3;

pub async fn memory(on_limit: OnLimit) -> Backend {
    let clock = start_clock();
    let policy = policy(2, on_limit, Duration::from_secs(90));
    let store = store::connect(&StoreUrl::Memory, policy.clone(), Arc::new(clock.clone()))
        .await
        .expect("memory store opens");
    Backend {
        name: "memory",
        stores: vec![store],
        time: Time::Manual(clock),
        policy,
        users: users(ACCOUNTS),
        plan_edits: true,
        _keep: Box::new(()),
    }
}

#[cfg(feature = "file")]
pub async fn file(on_limit: OnLimit) -> Backend {
    let dir = tempfile::tempdir().expect("temporary directory");
    let clock = start_clock();
    let policy = policy(2, on_limit, Duration::from_secs(90));
    let url = StoreUrl::File(dir.path().join("data"));
    let store = store::connect(&url, policy.clone(), Arc::new(clock.clone()))
        .await
        .expect("file store opens");
    Backend {
        name: "file",
        stores: vec![store],
        time: Time::Manual(clock),
        policy,
        users: users(ACCOUNTS),
        plan_edits: true,
        _keep: Box::new(dir),
    }
}

#[cfg(feature = "redis")]
fn service_url(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set. Run the tests with scripts/test (or scripts/linearizability), \
             which start Redis and the cluster (install Redis with: apt-get install -y redis-server)"
        )
    })
}

/// Two store instances on one Redis (or Redis Cluster): two connections
/// made by two `RedisStore::open` calls, which share nothing in-process but
/// the clock (when the clock is injected), under a key prefix of their own.
#[cfg(feature = "redis")]
pub async fn redis(
    name: &'static str,
    var: &str,
    on_limit: OnLimit,
    server_clock: bool,
) -> Backend {
    use streamguard::store::{RedisStore, RedisTime};
    let url = service_url(var);
    let prefix = users(1).remove(0);
    let url = match url.split_once('#') {
        Some((base, fragment)) => format!("{base}?prefix={prefix}#{fragment}"),
        None => format!("{url}?prefix={prefix}"),
    };
    let StoreUrl::Redis(target) = url.parse().unwrap() else {
        unreachable!("a redis URL parses as redis")
    };
    let clock = start_clock();
    // With the server's clock nothing may expire during the test.
    let ttl = if server_clock { 3600 } else { 90 };
    let policy = policy(2, on_limit, Duration::from_secs(ttl));
    let mut stores: Vec<Arc<dyn StreamStore>> = Vec::new();
    for _ in 0..2 {
        let time = if server_clock {
            RedisTime::Server
        } else {
            RedisTime::Clock(Arc::new(clock.clone()))
        };
        stores.push(
            RedisStore::open(&target, policy.clone(), time)
                .await
                .unwrap_or_else(|e| panic!("{var} does not answer: {e}")),
        );
    }
    Backend {
        name,
        stores,
        time: if server_clock {
            Time::Server
        } else {
            Time::Manual(clock)
        },
        policy,
        users: users(ACCOUNTS),
        plan_edits: true,
        _keep: Box::new(()),
    }
}

/// Two `DynamoDbStore` instances (two SDK clients, two sets of
/// per-instance account locks) on one fresh table of the local emulator.
#[cfg(feature = "dynamodb")]
pub async fn dynamodb(on_limit: OnLimit) -> Backend {
    let config = crate::emulator::config().await;
    let table = users(1).remove(0).to_string();
    store::DynamoDbStore::create_table(&config, &table)
        .await
        .expect("the test table is created on the emulator");
    let clock = start_clock();
    let policy = policy(2, on_limit, Duration::from_secs(90));
    let mut stores: Vec<Arc<dyn StreamStore>> = Vec::new();
    for _ in 0..2 {
        // Each instance gets its own SDK client, as two processes would.
        stores.push(
            store::DynamoDbStore::open(&config, &table, policy.clone(), Arc::new(clock.clone()))
                .await
                .expect("dynamodb store opens"),
        );
    }
    Backend {
        name: "dynamodb",
        stores,
        time: Time::Manual(clock),
        policy,
        users: users(ACCOUNTS),
        plan_edits: false,
        _keep: Box::new(()),
    }
}
