//! The real binary as an operator runs it: flags and environment, crash
//! recovery after `kill -9`, and a clean exit on SIGTERM.
#![cfg(feature = "file")]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

const ADMIN: &str = "process-test-admin-token";

mod crash;
mod outage;
#[path = "../common/server.rs"]
mod server;
mod shared_outage;

use server::Server;

/// The binary on a `file:` store in `data`, with an admin token and a
/// generous store timeout (the subject here is not the timeout), plus
/// `extra` flags and `envs`.
fn serve(data: &Path, extra: &[&str], envs: &[(&str, &str)]) -> Server {
    let store = format!("file:{}", data.display());
    let mut args = vec![
        "--admin-token",
        ADMIN,
        "--store",
        &store,
        "--store-timeout",
        "10s",
    ];
    args.extend_from_slice(extra);
    Server::start(&args, envs)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn start(s: &Server, user: &str, id: &str) -> u16 {
    client()
        .post(s.url("/streams"))
        .header("x-id", user)
        .json(&json!({ "stream_id": id }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn live(s: &Server, user: &str) -> Vec<String> {
    let body: Value = client()
        .get(s.url("/streams"))
        .header("x-id", user)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn acknowledged_state_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &[], &[("STREAMGUARD_DEFAULT_LIMIT", "2")]);

    assert_eq!(start(&server, "family", "tv").await, 201);
    assert_eq!(start(&server, "family", "phone").await, 201);
    assert_eq!(
        start(&server, "family", "tablet").await,
        409,
        "the env sets the limit to 2"
    );
    let set = client()
        .put(server.url("/admin/users/solo/limit"))
        .bearer_auth(ADMIN)
        .json(&json!({ "limit": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    assert_eq!(start(&server, "solo", "only").await, 201);
    let stop = client()
        .delete(server.url("/streams/phone"))
        .header("x-id", "family")
        .send()
        .await
        .unwrap();
    assert_eq!(stop.status(), 204);
    assert_eq!(start(&server, "family", "laptop").await, 201);

    let mut server = server;
    server.child.kill().unwrap(); // SIGKILL: no flush, no goodbye
    server.child.wait().unwrap();
    drop(server);

    let server = serve(dir.path(), &[], &[("STREAMGUARD_DEFAULT_LIMIT", "2")]);
    assert_eq!(live(&server, "family").await, ["tv", "laptop"]);
    assert_eq!(live(&server, "solo").await, ["only"]);
    assert_eq!(
        start(&server, "family", "tablet").await,
        409,
        "the limit still holds"
    );
    assert_eq!(
        start(&server, "solo", "second").await,
        409,
        "the override survived"
    );
    let beat = client()
        .post(server.url("/streams/phone/heartbeat"))
        .header("x-id", "family")
        .send()
        .await
        .unwrap();
    assert_eq!(
        beat.status(),
        410,
        "the stopped stream's tombstone survived"
    );
    let beat = client()
        .post(server.url("/streams/tv/heartbeat"))
        .header("x-id", "family")
        .send()
        .await
        .unwrap();
    assert_eq!(beat.status(), 200);
}

#[tokio::test]
async fn sigterm_drains_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path(), &[], &[]);
    assert_eq!(start(&server, "u", "s").await, 201);
    server.terminate();
    let status = server.child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn a_bad_flag_fails_at_start_naming_the_flag() {
    let output = Command::new(env!("CARGO_BIN_EXE_streamguard"))
        .args(["--store", "memory", "--lease-ttl", "forever"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--lease-ttl"), "{stderr}");
}

#[test]
fn a_bad_environment_value_fails_at_start() {
    let output = Command::new(env!("CARGO_BIN_EXE_streamguard"))
        .args(["--store", "memory"])
        .env("STREAMGUARD_ON_LIMIT", "sometimes")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--on-limit"));
}

#[test]
fn init_creates_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fresh");
    let status = Command::new(env!("CARGO_BIN_EXE_streamguard"))
        .args(["init", "--store"])
        .arg(format!("file:{}", data.display()))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert!(data.join("streamguard.sqlite3").is_file());
}

#[test]
fn version_lists_the_stores_built_in() {
    let output = Command::new(env!("CARGO_BIN_EXE_streamguard"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(output.status.success());
    let version = String::from_utf8(output.stdout).unwrap();
    let stores: Vec<&str> = [
        (true, "memory"),
        (cfg!(feature = "file"), "file"),
        (cfg!(feature = "redis"), "redis"),
        (cfg!(feature = "dynamodb"), "dynamodb"),
    ]
    .into_iter()
    .filter_map(|(built, name)| built.then_some(name))
    .collect();
    let lambda = if cfg!(feature = "lambda") {
        "; lambda"
    } else {
        ""
    };
    assert_eq!(
        version,
        format!(
            "streamguard {} (stores: {}{lambda})\n",
            env!("CARGO_PKG_VERSION"),
            stores.join(", ")
        )
    );
}

#[test]
fn healthcheck_succeeds_while_the_server_runs_and_fails_after() {
    let healthcheck = |addr: &str| {
        Command::new(env!("CARGO_BIN_EXE_streamguard"))
            .args(["healthcheck", "--listen", addr])
            .output()
            .unwrap()
    };
    let server = Server::start(&["--store", "memory"], &[]);
    let addr = server.base.trim_start_matches("http://").to_owned();
    let up = healthcheck(&addr);
    assert!(up.status.success(), "{up:?}");
    assert!(up.stdout.is_empty(), "a passing check prints nothing");
    drop(server);
    let down = healthcheck(&addr);
    assert!(!down.status.success());
    assert!(!down.stderr.is_empty(), "a failing check says why");
}
