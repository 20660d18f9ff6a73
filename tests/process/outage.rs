//! Store outages seen from outside: answers are 503 with `Retry-After`
//! within a second, `/readyz` fails, and the service recovers by itself,
//! without a restart, once the store is back.
//!
//! Each outage is real: a `file:` journal whose files are made immutable
//! (`chattr +i`; the tests run as root, so a read-only directory would not
//! stop the writes, and an immutable inode refuses them even through the
//! descriptor SQLite already holds), a DynamoDB emulator and a node of a
//! Redis Cluster stopped with SIGSTOP (they then neither answer nor refuse:
//! the hardest case, only the store timeout ends the wait), each started
//! privately for the test so that no other test is disturbed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::client;
use crate::server::Server;

/// One request's status, `Retry-After` and how long it took.
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub took: Duration,
    pub body: Value,
}

pub async fn send(request: reqwest::RequestBuilder) -> Answer {
    let began = Instant::now();
    let reply = request.send().await.unwrap();
    let status = reply.status().as_u16();
    let retry_after = reply
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = reply.text().await.unwrap();
    Answer {
        status,
        retry_after,
        took: began.elapsed(),
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

pub fn start_req(s: &Server, user: &str, id: &str) -> reqwest::RequestBuilder {
    client()
        .post(s.url("/streams"))
        .header("x-id", user)
        .json(&json!({ "stream_id": id }))
}

pub fn ready_req(s: &Server) -> reqwest::RequestBuilder {
    client().get(s.url("/readyz"))
}

/// The outage as a client sees it: a fast 503 with `Retry-After`.
pub fn assert_fast_503(a: &Answer, what: &str) {
    assert_eq!(a.status, 503, "{what}: {:?}", a.body);
    assert_eq!(a.retry_after.as_deref(), Some("1"), "{what}");
    assert!(
        a.took < Duration::from_secs(1),
        "{what} took {:?}: a 503 must come within a second",
        a.took
    );
}

/// Polls `/readyz` until it answers `want`, for at most `within`.
pub async fn wait_ready(s: &Server, want: u16, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let a = send(ready_req(s)).await;
        if a.status == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed {} instead of {want} for {within:?}",
            a.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Files made immutable for as long as this lives.
struct Immutable(Vec<PathBuf>);

impl Immutable {
    fn set(paths: Vec<PathBuf>) -> Self {
        for p in &paths {
            let out = Command::new("chattr").arg("+i").arg(p).output().unwrap();
            assert!(
                out.status.success(),
                "chattr +i {} failed ({}): this test needs root and a file system \
                 with the immutable attribute (ext4, xfs, btrfs; not tmpfs)",
                p.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Self(paths)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = Command::new("chattr").arg("-i").arg(p).status();
        }
    }
}

fn journal_files(data: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.push(data.to_path_buf());
    files
}

#[tokio::test]
async fn a_file_journal_that_cannot_write_is_503_until_it_can_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = format!("file:{}", data.display());
    let server = Server::start(&["--store", &store, "--store-timeout", "5s"], &[]);
    assert_eq!(send(start_req(&server, "u", "before")).await.status, 201);

    let outage = Immutable::set(journal_files(&data));
    // The first write the disk refuses: its answer is a 503 at once.
    assert_fast_503(&send(start_req(&server, "u", "during")).await, "a start");
    assert_fast_503(&send(ready_req(&server)).await, "/readyz");
    let beat = client()
        .post(server.url("/streams/before/heartbeat"))
        .header("x-id", "u");
    assert_fast_503(&send(beat).await, "a heartbeat");
    assert_fast_503(
        &send(start_req(&server, "v", "x")).await,
        "another account's start",
    );

    drop(outage);
    wait_ready(&server, 200, Duration::from_secs(10)).await;
    assert_eq!(send(start_req(&server, "u", "after")).await.status, 201);

    // What the service answers after the outage is what is on disk.
    let list = |s: &Server| client().get(s.url("/streams")).header("x-id", "u").send();
    let before_crash: Value = list(&server).await.unwrap().json().await.unwrap();
    let mut server = server;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    drop(server);
    let server = Server::start(&["--store", &store, "--store-timeout", "5s"], &[]);
    let after_crash: Value = list(&server).await.unwrap().json().await.unwrap();
    let ids = |v: &Value| -> Vec<String> {
        v["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&before_crash), ids(&after_crash));
    assert!(ids(&after_crash).contains(&"after".to_owned()));
}
