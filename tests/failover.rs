//! State loss under load (issue 17): streamguard with signed grants on a
//! Redis store, a few hundred `streamguard-load` viewers heartbeating with
//! their latest grant, and the store losing everything mid-run. No viewer
//! may be stopped (every heartbeat after the loss resumes), no account may
//! hold more live streams than its limit (the tool's audit checks both),
//! and the run reports how many requests got 503, for how long, and when
//! the last viewer was re-admitted. Real processes on free ports; each
//! scenario takes about 15 s. Redis must be installed: a missing
//! redis-server fails the test, it never skips. The same on the DynamoDB
//! emulator (its table's items deleted) and on `file:` (its data directory
//! removed and the process restarted on its port).
#![cfg(all(feature = "load", feature = "redis"))]

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "common/server.rs"]
mod server;
#[allow(dead_code)]
#[path = "redis/support.rs"]
mod support;

use server::Server;
use support::OwnRedis;

const VIEWERS: &str = "300";
/// The emulator (moto, one thread) answers a few dozen decisions a second
/// on a busy machine.
#[cfg(feature = "dynamodb")]
const DYNAMODB_VIEWERS: &str = "20";
/// How long the tool runs, and when (after it began) the store is lost.
const RUN: Duration = Duration::from_secs(14);
const LOSS_AT: Duration = Duration::from_secs(5);

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn grant_key() -> String {
    format!(
        "{}/tests/fixtures/keys/grant-p256.pem",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// streamguard on a fixed port, so that a restarted process is found
/// where the viewers left it.
struct Streamguard {
    server: Server,
    listen: String,
    args: Vec<String>,
    envs: Vec<(String, String)>,
}

impl Streamguard {
    fn start(args: &[&str], envs: &[(&str, &str)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        Self {
            server: Server::start_on(&listen, args, envs),
            listen,
            args: args.iter().map(|a| a.to_string()).collect(),
            envs: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// Kills the process (SIGKILL), does `between`, starts it again.
    fn restart_after(&mut self, between: impl FnOnce()) {
        let _ = self.server.child.kill();
        let _ = self.server.child.wait();
        between();
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let envs: Vec<(&str, &str)> = self
            .envs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.server = Server::start_on(&self.listen, &args, &envs);
    }
}

/// The load tool against `server`: viewers on accounts of three devices
/// (the default limit), so every viewer has room and an over-grant could
/// only be the server's; sessions short enough that some end and start
/// again around the loss.
fn load(server: &Server, viewers: &str, out: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_streamguard-load"))
        .args(["--target", &server.url("")])
        .args(["--viewers", viewers, "--heartbeat", "1s", "--ramp", "1s"])
        .args([
            "--session",
            "8s",
            "--share",
            "0.6",
            "--devices-per-account",
            "3",
        ])
        .args(["--terminate", "0", "--connections", "16", "--quiet"])
        .args(["--seed", "17", "--duration", &format!("{}s", RUN.as_secs())])
        .arg("--out")
        .arg(out)
        .arg("--plot")
        .arg(out.with_extension("svg"))
        .spawn()
        .expect("streamguard-load starts")
}

/// Runs the tool against streamguard on `store`, calls `lose` at
/// `LOSS_AT`, and checks and prints what the run saw: at least
/// `min_resumed` viewers must have been resumed.
fn state_loss(name: &str, store: &str, min_resumed: u64, lose: impl FnOnce()) {
    state_loss_of(name, store, &[], VIEWERS, "250ms", min_resumed, |_| lose());
}

/// [`state_loss`] with the server's environment, the number of viewers,
/// its `--store-timeout`, and a `lose` that may restart the server.
fn state_loss_of(
    name: &str,
    store: &str,
    envs: &[(&str, &str)],
    viewers: &str,
    store_timeout: &str,
    min_resumed: u64,
    lose: impl FnOnce(&mut Streamguard),
) {
    // One scenario at a time: two at once on a small machine time out
    // store calls (503) that no loss caused.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let key = grant_key();
    let mut server = Streamguard::start(
        &[
            "--store",
            store,
            "--grant-key",
            &key,
            "--lease-ttl",
            "30s",
            "--store-timeout",
            store_timeout,
        ],
        envs,
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join(format!("{name}.json"));
    let mut tool = load(&server.server, viewers, &out);
    std::thread::sleep(LOSS_AT);
    let lost_unix_s = unix_now();
    lose(&mut server);
    let deadline = Instant::now() + RUN + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = tool.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = tool.kill();
            panic!("streamguard-load did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let result: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    // The loss on the tool's clock (seconds since its run began).
    let lost_at = lost_unix_s - result["started_unix_s"].as_f64().unwrap();
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let resumed = &result["resumed"];
    let unavailable = &result["unavailable"];
    let stopped_404 = n(&result["heartbeat_refused"]["unknown"]);
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    eprintln!(
        "{name}: {viewers} viewers, {} requests; loss at {lost_at:.2} s; \
         {} answered 503/failed from {:.2} s to {:.2} s ({:.2} s); \
         {} resumed from {:.2} s to {:.2} s (all re-admitted {:.2} s after the loss); \
         {} resumes refused; {stopped_404} stopped by 404; audit violations {}",
        result["requests"],
        n(&unavailable["count"]),
        f(&unavailable["first_s"]),
        f(&unavailable["last_s"]),
        f(&unavailable["last_s"]) - f(&unavailable["first_s"]),
        n(&resumed["count"]),
        f(&resumed["first_s"]),
        f(&resumed["last_s"]),
        f(&resumed["last_s"]) - lost_at,
        n(&result["resume_refused"]),
        result["audit"]["violations"],
    );
    assert!(status.success(), "the audit failed: {result:#}");
    assert_eq!(result["audit"]["violations"], 0, "{result:#}");
    assert_eq!(stopped_404, 0, "no viewer stopped by a 404: {result:#}");
    assert_eq!(
        n(&result["resume_refused"]),
        0,
        "every viewer had room: {result:#}"
    );
    assert!(n(&resumed["count"]) >= min_resumed, "{result:#}");
    if n(&resumed["count"]) > 0 {
        assert!(
            f(&resumed["last_s"]) - lost_at < 10.0,
            "every viewer re-admitted within 10 s: {result:#}"
        );
    }
}

/// Nearly every viewer is live at the loss (a few are between sessions):
/// each of them resumes once.
#[test]
fn redis_restarted_without_persistence_stops_no_viewer() {
    let mut redis = OwnRedis::start();
    let store = format!("{}?prefix=failover", redis.url());
    state_loss("restart", &store, 200, || {
        redis.shutdown_nosave();
        redis.restart();
    });
}

#[test]
fn flushall_under_load_stops_no_viewer() {
    let redis = OwnRedis::start();
    let store = format!("{}?prefix=failover", redis.url());
    state_loss("flushall", &store, 200, || {
        redis::cmd("FLUSHALL")
            .query::<()>(&mut redis.connection())
            .unwrap();
    });
}

/// One primary of a three-node Redis Cluster flushed: the accounts whose
/// slots it holds (about a third) resume, the others notice nothing.
#[test]
fn flushall_on_one_cluster_shard_stops_no_viewer() {
    let nodes: Vec<OwnRedis> = (0..3).map(|_| OwnRedis::cluster_node()).collect();
    let seeds: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let created = Command::new("redis-cli")
        .arg("--cluster")
        .arg("create")
        .args(&seeds)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("redis-cli runs (install it with: apt-get install -y redis-server)");
    assert!(created.status.success(), "{created:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    for node in &nodes {
        loop {
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query(&mut node.connection())
                .unwrap();
            if info.contains("cluster_state:ok") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not form: {info}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let store = format!("redis+cluster://{}", seeds.join(","));
    state_loss("cluster-shard", &store, 50, || {
        redis::cmd("FLUSHALL")
            .query::<()>(&mut nodes[0].connection())
            .unwrap();
    });
}

/// Child processes (Sentinels, the emulator), killed with the test.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits until `check` holds, for at most `within`.
fn wait_until(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen in {within:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A primary, its replica and three `redis-sentinel`s; the primary killed
/// with SIGKILL under load. Sentinel promotes the replica and streamguard,
/// on `redis+sentinel://`, follows it: 503s while there is no primary, then
/// the viewers go on (resuming whatever the replica had not received).
#[test]
fn a_sentinel_failover_stops_no_viewer() {
    sentinel_failover("sentinel", &[]);
}

/// The same with `min-replicas-to-write 1` on the primary (a write no
/// replica acknowledged within 10 s is refused rather than kept alone).
#[test]
fn a_sentinel_failover_with_min_replicas_to_write_stops_no_viewer() {
    sentinel_failover(
        "sentinel-min-replicas",
        &[
            "--min-replicas-to-write",
            "1",
            "--min-replicas-max-lag",
            "10",
        ],
    );
}

fn sentinel_failover(name: &str, primary_args: &[&str]) {
    let mut primary = OwnRedis::start_with(primary_args);
    let replica = OwnRedis::start_with(&["--replicaof", "127.0.0.1", &primary.port.to_string()]);
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..3).map(|_| support::free_port()).collect();
    let mut sentinels = Processes(Vec::new());
    for port in &ports {
        let conf = dir.path().join(format!("sentinel-{port}.conf"));
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor sg 127.0.0.1 {} 2\n\
                 sentinel down-after-milliseconds sg 1000\n\
                 sentinel failover-timeout sg 10000\n",
                dir.path().display(),
                primary.port
            ),
        )
        .unwrap();
        let child = Command::new("redis-sentinel")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-sentinel runs (install it with: apt-get install -y redis-sentinel)");
        sentinels.0.push(child);
    }
    let ask = |port: u16, cmd: &redis::Cmd| -> Option<redis::Value> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
        cmd.query(&mut client.get_connection().ok()?).ok()
    };
    let count = |v: Option<redis::Value>| match v {
        Some(redis::Value::Array(items)) => items.len(),
        _ => 0,
    };
    // Every Sentinel knows the replica and the two other Sentinels: a
    // failover then has its quorum and its majority.
    wait_until(
        "the Sentinels finding each other",
        Duration::from_secs(30),
        || {
            ports.iter().all(|&p| {
                count(ask(p, redis::cmd("SENTINEL").arg("REPLICAS").arg("sg"))) == 1
                    && count(ask(p, redis::cmd("SENTINEL").arg("SENTINELS").arg("sg"))) == 2
            })
        },
    );
    let store = format!(
        "redis+sentinel://{}/sg?prefix=failover",
        ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let promoted = replica.port;
    state_loss(name, &store, 0, || primary.kill());
    // The replica is the primary now, as the Sentinels say.
    let master = ask(
        ports[0],
        redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg("sg"),
    );
    assert!(
        format!("{master:?}").contains(&promoted.to_string()),
        "{master:?}"
    );
}

/// The `file:` store's data directory removed with the process killed
/// (the disk lost with the machine), and the process started again on its
/// port with an empty directory: every viewer resumes from its grant.
#[cfg(feature = "file")]
#[test]
fn a_file_store_restarted_on_an_empty_directory_stops_no_viewer() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = format!("file:{}", data.display());
    state_loss_of(
        "file-restart",
        &store,
        &[],
        VIEWERS,
        "250ms",
        200,
        |server| {
            server.restart_after(|| std::fs::remove_dir_all(&data).unwrap());
        },
    );
}

/// Every item of the DynamoDB table deleted under load (the emulator,
/// scripts/dynamodb-emulator.py): the accounts read as empty, and every
/// viewer resumes from its grant.
#[cfg(feature = "dynamodb")]
#[test]
fn dynamodb_items_deleted_under_load_stop_no_viewer() {
    let dir = tempfile::tempdir().unwrap();
    let port_file = dir.path().join("port");
    let root = env!("CARGO_MANIFEST_DIR");
    let mut emulator = Processes(vec![
        Command::new("python3")
            .arg(format!("{root}/scripts/dynamodb-emulator.py"))
            .arg("--port-file")
            .arg(&port_file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 starts"),
    ]);
    wait_until(
        "the DynamoDB emulator listening",
        Duration::from_secs(30),
        || {
            if let Ok(Some(status)) = emulator.0[0].try_wait() {
                panic!(
                    "the DynamoDB emulator exited ({status}); it needs: pip install \"moto[server]\""
                );
            }
            std::fs::read_to_string(&port_file).is_ok_and(|p| !p.trim().is_empty())
        },
    );
    let endpoint = format!(
        "http://127.0.0.1:{}",
        std::fs::read_to_string(&port_file).unwrap().trim()
    );
    let store = format!("dynamodb://failover?region=us-east-1&endpoint={endpoint}");
    let aws = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let init = Command::new(env!("CARGO_BIN_EXE_streamguard"))
        .args(["init", "--store", &store])
        .envs(aws)
        .output()
        .unwrap();
    assert!(init.status.success(), "streamguard init: {init:?}");
    state_loss_of(
        "dynamodb-delete",
        &store,
        &aws,
        DYNAMODB_VIEWERS,
        "2s",
        10,
        |_| {
            let deleted = Command::new("python3")
                .arg(format!("{root}/scripts/dynamodb-delete-items.py"))
                .args([&endpoint, "failover"])
                .output()
                .unwrap();
            assert!(deleted.status.success(), "{deleted:?}");
        },
    );
}
