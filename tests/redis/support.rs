//! Redis servers of the tests' own (to kill and restart) and the shared one.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The shared test Redis that scripts/test starts.
pub fn shared_url() -> String {
    std::env::var("STREAMGUARD_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!(
            "STREAMGUARD_TEST_REDIS_URL is not set. Run the tests with scripts/test, which \
             starts Redis (install it with: apt-get install -y redis-server)"
        )
    })
}

/// A key prefix no other test uses.
pub fn unique_prefix(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}-{nanos:x}")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A redis-server owned by one test, on its own port.
pub struct OwnRedis {
    pub port: u16,
    child: Option<Child>,
    args: Vec<String>,
    /// Its working directory: an append-only file (a test may turn it on)
    /// is written there, never into the source tree.
    dir: tempfile::TempDir,
}

impl OwnRedis {
    pub fn start() -> OwnRedis {
        Self::start_with(&[])
    }

    /// Started with extra `redis-server` arguments.
    pub fn start_with(args: &[&str]) -> OwnRedis {
        let mut redis = OwnRedis {
            port: free_port(),
            child: None,
            args: args.iter().map(|a| a.to_string()).collect(),
            dir: tempfile::tempdir().expect("a temporary directory"),
        };
        redis.restart();
        redis
    }

    /// A node for a Redis Cluster (not yet part of one): on a port whose
    /// bus port (+10000) is free too, its node file in its own directory.
    #[allow(dead_code)] // the failover test's
    pub fn cluster_node() -> OwnRedis {
        let port = loop {
            let port = free_port();
            if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
                break port;
            }
        };
        let mut redis = OwnRedis {
            port,
            child: None,
            args: ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"]
                .iter()
                .map(|a| a.to_string())
                .collect(),
            dir: tempfile::tempdir().expect("a temporary directory"),
        };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and waits until it answers.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--dir",
            ])
            .arg(self.dir.path())
            .args(["--appendonly", "no"])
            .args(&self.args)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs (install it with: apt-get install -y redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if redis::Client::open(self.url())
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server on port {} did not come up", self.port);
    }

    /// `SHUTDOWN NOSAVE`: the server exits and everything it held is lost
    /// (it runs without persistence); waits for the exit.
    #[allow(dead_code)] // the failover test's
    pub fn shutdown_nosave(&mut self) {
        let _ = redis::cmd("SHUTDOWN")
            .arg("NOSAVE")
            .query::<()>(&mut self.connection());
        if let Some(mut child) = self.child.take() {
            child.wait().unwrap();
        }
    }

    /// Kills the server at once (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
