//! Resident memory per live stream, and heartbeat throughput as the table
//! grows, in process (no HTTP).
//!
//! `cargo bench --bench live_memory -- STORE MIX COUNTS...`
//! - STORE: `memory`, or `file:DIR` (a fresh directory; starts are durable,
//!   so filling takes as long as that many group commits), or
//!   `reopen:DIR` (opens an existing `file:` directory and reports the time
//!   to ready and the memory of the restored table: the restart).
//! - MIX: `one` (one stream per account, no device or content id) or
//!   `mix` (accounts of 1–3 streams, each with device and content ids).
//! - COUNTS: live-stream counts to measure at, ascending, e.g. `1000000 10000000`.
//!
//! Ids are the load tool's: `acct-0001234567`, 22-character stream ids,
//! `dev-000123456-1`, `title-004711`. Leases last two hours so nothing
//! expires while the table is filled.

use std::sync::Arc;
use std::time::{Duration, Instant};

use streamguard::domain::{
    ContentId, DeviceId, Limit, OnLimit, Policy, StartDecision, StartRequest, StreamId,
    SystemClock, UserId,
};
use streamguard::store::{FileStore, MemoryStore, StreamStore};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn policy() -> Policy {
    Policy {
        default_limit: Limit::new(3).unwrap(),
        lease_ttl: Duration::from_secs(7200),
        on_limit: OnLimit::Reject,
        plans: None,
    }
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

fn account(n: u64) -> UserId {
    UserId::parse(&format!("acct-{n:010}")).unwrap()
}

/// Streams of account `n` in the `mix` layout: 70 % hold one, 20 % two, 10 % three.
fn streams_of(n: u64) -> u64 {
    match n % 10 {
        0 => 3,
        1 | 2 => 2,
        _ => 1,
    }
}

fn request(n: u64, k: u64, mix: bool) -> StartRequest {
    let mut req = StartRequest::new(StreamId::random());
    if mix {
        req.device_id = Some(DeviceId::parse(&format!("dev-{n:09}-{k}")).unwrap());
        req.content_id = Some(ContentId::parse(&format!("title-{:06}", n % 20_000)).unwrap());
    }
    req
}

/// Starts streams on accounts from `next_account` until `target` streams
/// are live; returns the next unused account and the heartbeat keys.
async fn fill(
    store: &Arc<dyn StreamStore>,
    mix: bool,
    live: &mut u64,
    next_account: &mut u64,
    target: u64,
    sample: &mut Vec<(UserId, StreamId)>,
) {
    const TASKS: u64 = 256;
    while *live < target {
        let batch = (target - *live).min(TASKS * 64);
        let mut tasks = Vec::new();
        let mut planned = 0;
        let first = *next_account;
        while planned < batch {
            let n = *next_account;
            *next_account += 1;
            planned += if mix { streams_of(n) } else { 1 };
        }
        let last = *next_account;
        let per_task = (last - first).div_ceil(TASKS);
        for t in 0..TASKS {
            let store = store.clone();
            let (lo, hi) = (first + t * per_task, (first + (t + 1) * per_task).min(last));
            tasks.push(tokio::spawn(async move {
                let mut keys = Vec::new();
                for n in lo..hi {
                    let user = account(n);
                    for k in 0..if mix { streams_of(n) } else { 1 } {
                        let req = request(n, k, mix);
                        let id = req.stream_id.clone();
                        let decision = store.start(&user, req).await.unwrap();
                        assert!(matches!(decision, StartDecision::Granted(_)));
                        if n % 1024 == 0 {
                            keys.push((user.clone(), id));
                        }
                    }
                }
                keys
            }));
        }
        for t in tasks {
            sample.extend(t.await.unwrap());
        }
        *live += planned;
    }
}

/// Heartbeats on `keys` (round robin, one task) for two seconds.
async fn heartbeat_rate(store: &Arc<dyn StreamStore>, keys: &[(UserId, StreamId)]) -> f64 {
    let started = Instant::now();
    let mut n = 0usize;
    while started.elapsed() < Duration::from_secs(2) {
        for _ in 0..256 {
            let (user, id) = &keys[n % keys.len()];
            store.heartbeat(user, id).await.unwrap();
            n += 1;
        }
    }
    n as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let (spec, mix) = (args[0].as_str(), args[1] == "mix");
    let counts: Vec<u64> = args[2..].iter().map(|c| c.parse().unwrap()).collect();
    let base = rss_bytes();
    let clock = Arc::new(SystemClock);
    let opened = Instant::now();
    let store: Arc<dyn StreamStore> = if spec == "memory" {
        MemoryStore::open(policy(), clock)
    } else if let Some(dir) = spec.strip_prefix("file:") {
        FileStore::open(dir.as_ref(), policy(), clock)
            .await
            .unwrap()
    } else if let Some(dir) = spec.strip_prefix("reopen:") {
        let store = FileStore::open(dir.as_ref(), policy(), clock)
            .await
            .unwrap();
        store.ping().await.unwrap();
        let report = |what: String| {
            let rss = rss_bytes();
            println!(
                "{what}: RSS {:.0} MB ({:.0} MB over the empty process)",
                rss as f64 / 1e6,
                (rss - base) as f64 / 1e6
            );
            for &count in &counts {
                println!(
                    "  at {count} live streams: {:.0} bytes per stream",
                    (rss - base) as f64 / count as f64
                );
            }
        };
        report(format!(
            "reopen {dir}: ready in {:.1} s",
            opened.elapsed().as_secs_f64()
        ));
        // What the server does once its store is open.
        streamguard::give_back_freed_memory();
        report("after giving freed memory back".into());
        return;
    } else {
        panic!("STORE is memory, file:DIR or reopen:DIR");
    };
    let empty = rss_bytes();
    let mut small = Vec::new();
    for n in 0..1000 {
        let req = request(u64::MAX / 2 + n, 0, mix);
        let user = account(9_000_000_000 + n);
        small.push((user.clone(), req.stream_id.clone()));
        store.start(&user, req).await.unwrap();
    }
    let rate_empty = heartbeat_rate(&store, &small).await;
    println!(
        "{spec} {}: empty store RSS {:.1} MB; heartbeats over 1000 streams: {rate_empty:.0}/s",
        args[1],
        empty as f64 / 1e6
    );
    let (mut live, mut next_account, mut sample) = (0, 0, Vec::new());
    for &count in &counts {
        let began = Instant::now();
        fill(
            &store,
            mix,
            &mut live,
            &mut next_account,
            count,
            &mut sample,
        )
        .await;
        let filled = began.elapsed();
        let rss = rss_bytes();
        let rate = heartbeat_rate(&store, &sample).await;
        println!(
            "{live} live streams in {next_account} accounts (filled in {:.0} s): RSS {:.0} MB, {:.0} bytes per stream; heartbeats on random accounts {rate:.0}/s ({:.2}x the empty store)",
            filled.as_secs_f64(),
            rss as f64 / 1e6,
            (rss - empty) as f64 / live as f64,
            rate / rate_empty
        );
    }
    store.close().await.unwrap();
}
