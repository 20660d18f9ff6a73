//! Outages of the shared stores, each on a private service started for the
//! test: a DynamoDB emulator and one Redis Cluster node stopped (SIGSTOP),
//! and `--on-store-error allow` in front of a Redis that hangs.
#![cfg(any(feature = "redis", feature = "dynamodb"))]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::client;
use crate::outage::{assert_fast_503, ready_req, send, start_req, wait_ready};
use crate::server::Server;

/// A child process stopped and continued by signals, killed on drop.
pub struct Service {
    pub child: Child,
}

impl Service {
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {}", self.child.id());
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.signal_quiet("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Service {
    fn signal_quiet(&self, sig: &str) -> std::io::Result<std::process::ExitStatus> {
        Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
    }
}

fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(feature = "redis")]
fn free_port() -> u16 {
    // A port free now whose cluster bus port (+10000) is free too.
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

#[cfg(feature = "redis")]
fn redis_server(dir: &std::path::Path, port: u16, extra: &[&str]) -> Service {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
        .args(["--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("redis-server does not start ({e}); install it with: apt-get install -y redis-server")
        });
    let service = Service { child };
    wait_until("redis-server answering", Duration::from_secs(10), || {
        redis_cli(port, &["ping"]).is_some_and(|o| o.trim() == "PONG")
    });
    service
}

#[cfg(feature = "redis")]
fn redis_cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(feature = "dynamodb")]
#[tokio::test]
async fn a_stopped_dynamodb_is_503_until_it_answers_again() {
    let dir = tempfile::tempdir().unwrap();
    let port_file = dir.path().join("port");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/dynamodb-emulator.py");
    let emulator = Service {
        child: Command::new("python3")
            .arg(script)
            .arg("--port-file")
            .arg(&port_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 starts"),
    };
    let mut emulator = emulator;
    wait_until(
        "the DynamoDB emulator listening",
        Duration::from_secs(30),
        || {
            if let Ok(Some(status)) = emulator.child.try_wait() {
                panic!(
                    "the DynamoDB emulator exited ({status}); it needs moto: pip install \"moto[server]\""
                );
            }
            std::fs::read_to_string(&port_file).is_ok_and(|p| !p.trim().is_empty())
        },
    );
    let port = std::fs::read_to_string(&port_file).unwrap();
    let store = format!(
        "dynamodb://outage?region=us-east-1&endpoint=http://127.0.0.1:{}",
        port.trim()
    );
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
    assert!(
        init.status.success(),
        "streamguard init on the private emulator"
    );
    // init says which multi-region mode the table is in (docs/regions.md).
    let said = String::from_utf8_lossy(&init.stdout);
    assert!(
        said.contains(r#""mode":"single-region""#),
        "init names the table's mode: {said}"
    );
    // 500 ms: room for a debug build on a busy machine, under the second.
    let server = Server::start(&["--store", &store, "--store-timeout", "500ms"], &aws);
    wait_ready(&server, 200, Duration::from_secs(10)).await;
    assert_eq!(send(start_req(&server, "u", "before")).await.status, 201);

    emulator.signal("-STOP");
    assert_fast_503(&send(start_req(&server, "u", "during")).await, "a start");
    assert_fast_503(&send(ready_req(&server)).await, "/readyz");
    let beat = client()
        .post(server.url("/streams/before/heartbeat"))
        .header("x-id", "u");
    assert_fast_503(&send(beat).await, "a heartbeat");

    emulator.signal("-CONT");
    wait_ready(&server, 200, Duration::from_secs(10)).await;
    let after = send(start_req(&server, "u", "after")).await;
    assert_eq!(after.status, 201, "{:?}", after.body);
}

/// A 3-node Redis Cluster of its own, without replicas.
#[cfg(feature = "redis")]
fn private_cluster(dir: &std::path::Path) -> (Vec<u16>, Vec<Service>) {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut nodes = Vec::new();
    for &port in &ports {
        let node_dir = dir.join(port.to_string());
        std::fs::create_dir_all(&node_dir).unwrap();
        nodes.push(redis_server(
            &node_dir,
            port,
            &["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"],
        ));
    }
    let seeds: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let created = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&seeds)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(created.success(), "redis-cli --cluster create");
    for &port in &ports {
        wait_until("the private cluster ok", Duration::from_secs(20), || {
            redis_cli(port, &["cluster", "info"]).is_some_and(|i| i.contains("cluster_state:ok"))
        });
    }
    (ports, nodes)
}

/// The port of the node serving `key`'s slot.
#[cfg(feature = "redis")]
fn owner(ports: &[u16], key: &str) -> u16 {
    let slot: u16 = redis_cli(ports[0], &["cluster", "keyslot", key])
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let nodes = redis_cli(ports[0], &["cluster", "nodes"]).unwrap();
    for line in nodes.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let port: u16 = fields[1].split(['@', ':']).nth(1).unwrap().parse().unwrap();
        for range in &fields[8..] {
            let (lo, hi) = match range.split_once('-') {
                Some((lo, hi)) => (lo.parse::<u16>().unwrap(), hi.parse::<u16>().unwrap()),
                None => {
                    let s = range.parse::<u16>().unwrap();
                    (s, s)
                }
            };
            if (lo..=hi).contains(&slot) {
                return port;
            }
        }
    }
    panic!("no node serves slot {slot}")
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn a_stopped_cluster_node_is_503_for_its_accounts_until_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (ports, nodes) = private_cluster(dir.path());
    let seeds: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let store = format!("redis+cluster://{}", seeds.join(","));
    let server = Server::start(&["--store", &store, "--store-timeout", "500ms"], &[]);
    wait_ready(&server, 200, Duration::from_secs(10)).await;

    // An account whose slot lives on the node that will stop.
    let victim = 0;
    let on = |user: &str| owner(&ports, &format!("streamguard:{{{user}}}"));
    let hit = (0..)
        .map(|i| format!("hit{i}"))
        .find(|u| on(u) == ports[victim])
        .unwrap();
    assert_eq!(send(start_req(&server, &hit, "before")).await.status, 201);

    nodes[victim].signal("-STOP");
    assert_fast_503(&send(start_req(&server, &hit, "during")).await, "a start");
    let beat = client()
        .post(server.url("/streams/before/heartbeat"))
        .header("x-id", &hit);
    assert_fast_503(&send(beat).await, "a heartbeat");
    assert_fast_503(&send(ready_req(&server)).await, "/readyz");

    nodes[victim].signal("-CONT");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let a = send(start_req(&server, &hit, "after")).await;
        if a.status == 201 {
            break;
        }
        assert_eq!(a.status, 503, "{:?}", a.body);
        assert!(
            Instant::now() < deadline,
            "the cluster never served the account again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_ready(&server, 200, Duration::from_secs(10)).await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn on_store_error_allow_lets_playback_through_a_hanging_redis() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let redis = redis_server(dir.path(), port, &[]);
    let store = format!("redis://127.0.0.1:{port}");
    let server = Server::start(
        &[
            "--store",
            &store,
            "--store-timeout",
            "300ms",
            "--on-store-error",
            "allow",
        ],
        &[],
    );
    wait_ready(&server, 200, Duration::from_secs(10)).await;
    assert_eq!(send(start_req(&server, "u", "before")).await.status, 201);

    redis.signal("-STOP");
    let start = send(start_req(&server, "u", "during")).await;
    assert_eq!(start.status, 201, "unenforced playback: {:?}", start.body);
    assert!(start.took < Duration::from_secs(1), "took {:?}", start.took);
    let beat = send(
        client()
            .post(server.url("/streams/before/heartbeat"))
            .header("x-id", "u"),
    )
    .await;
    assert_eq!(beat.status, 200, "{:?}", beat.body);
    assert!(beat.took < Duration::from_secs(1), "took {:?}", beat.took);
    // Reads are not playback: still a 503.
    let list = send(client().get(server.url("/streams")).header("x-id", "u")).await;
    assert_fast_503(&list, "a listing");
    assert_fast_503(&send(ready_req(&server)).await, "/readyz");

    redis.signal("-CONT");
    wait_ready(&server, 200, Duration::from_secs(10)).await;
    // No restart needed. (The start answered unenforced may still be
    // recorded: its command was sent before Redis hung, and Redis ran it
    // once continued, like any start whose answer timed out.)
    assert_eq!(send(start_req(&server, "u", "after")).await.status, 201);
}
