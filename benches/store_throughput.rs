//! Decisions per second of the in-process stores, without HTTP.
//!
//! `cargo bench --bench store_throughput` prints, for the memory and file
//! stores: heartbeats on one task, and durable starts with 1 and with 64
//! concurrent tasks (one task waits for every fsync alone; 64 share them:
//! group commit).

use std::sync::Arc;
use std::time::{Duration, Instant};

use streamguard::domain::{Limit, OnLimit, Policy, StartRequest, StreamId, SystemClock, UserId};
use streamguard::store::{self, StoreUrl, StreamStore};

const RUN_FOR: Duration = Duration::from_secs(3);

fn policy() -> Policy {
    Policy {
        default_limit: Limit::new(3).unwrap(),
        lease_ttl: Duration::from_secs(90),
        on_limit: OnLimit::EvictOldest,
        plans: None,
    }
}

/// Runs `tasks` loops of `op` for RUN_FOR; returns operations per second.
async fn rate<F, Fut>(tasks: usize, op: F) -> f64
where
    F: Fn(usize, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while started.elapsed() < RUN_FOR {
                    op(t, n).await;
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for h in handles {
        total += h.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

async fn bench(name: &str, store: Arc<dyn StreamStore>) {
    let user = |t: usize| UserId::parse(&format!("user-{t}")).unwrap();
    let s = store.clone();
    s.start(&user(0), StartRequest::new(StreamId::parse("hb").unwrap()))
        .await
        .unwrap();
    let heartbeats = rate(1, move |_, _| {
        let s = s.clone();
        async move {
            s.heartbeat(
                &UserId::parse("user-0").unwrap(),
                &StreamId::parse("hb").unwrap(),
            )
            .await
            .unwrap();
        }
    })
    .await;
    println!("{name:8} heartbeat, 1 task          {heartbeats:>10.0} /s");
    for tasks in [1, 64] {
        let s = store.clone();
        let starts = rate(tasks, move |t, n| {
            let s = s.clone();
            async move {
                // A fresh account each time: one stream, as most accounts hold.
                let account = UserId::parse(&format!("u{tasks}-{t}-{n}")).unwrap();
                s.start(&account, StartRequest::new(StreamId::parse("s").unwrap()))
                    .await
                    .unwrap();
            }
        })
        .await;
        println!("{name:8} start, {tasks:2} concurrent tasks {starts:>10.0} /s");
    }
}

#[tokio::main]
async fn main() {
    let clock = Arc::new(SystemClock);
    let memory = store::connect(&StoreUrl::Memory, policy(), clock.clone())
        .await
        .unwrap();
    bench("memory", memory).await;

    let dir = std::env::var("STREAMGUARD_BENCH_DIR").map_or_else(
        |_| tempfile::tempdir_in(".").unwrap(),
        |d| tempfile::tempdir_in(d).unwrap(),
    );
    let file = store::connect(&StoreUrl::File(dir.path().into()), policy(), clock)
        .await
        .unwrap();
    bench("file", file.clone()).await;
    file.close().await.unwrap();
}
