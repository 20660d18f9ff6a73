//! The real `streamguard` binary as a child process, found on its port by
//! reading its "listening" log line.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Server {
    /// Starts the binary with `args` (plus `--listen 127.0.0.1:0`) and
    /// waits until it listens.
    #[allow(dead_code)] // tests/failover.rs starts its servers on fixed ports
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Server {
        Self::start_on("127.0.0.1:0", args, envs)
    }

    /// The same on `listen` (a fixed port: a restarted server keeps it).
    pub fn start_on(listen: &str, args: &[&str], envs: &[(&str, &str)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_streamguard"))
            .args(["--listen", listen])
            .args(args)
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the binary starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) else {
                continue;
            };
            let log: Value = serde_json::from_str(&line).expect("log lines are JSON");
            if log["message"] == "listening" {
                let addr = log["addr"].as_str().unwrap().to_owned();
                // Keep draining stdout so the server never blocks on it.
                std::thread::spawn(move || while rx.recv().is_ok() {});
                return Server {
                    child,
                    base: format!("http://{addr}"),
                };
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the server did not log that it listens");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends SIGTERM (a graceful shutdown); does not wait for the exit.
    #[allow(dead_code)] // not every test binary stops its server this way
    pub fn terminate(&self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.unwrap().success(), "kill -TERM {pid}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
