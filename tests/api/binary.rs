//! The real binary under attack and at shutdown: secrets stay out of its
//! output, slow or greedy clients cannot hold it, `/metrics` can move to its
//! own port, and SIGTERM drains for a bounded time and still closes the
//! store.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[allow(dead_code)]
#[path = "../common/server.rs"]
mod server;

use server::Server;

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_streamguard"))
}

fn host(s: &Server) -> String {
    s.base.trim_start_matches("http://").to_owned()
}

/// Sends `request` on a fresh connection and reads what comes back until
/// the server closes or `wait` passes.
fn raw(addr: &str, request: &[u8], wait: Duration) -> String {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(wait)).unwrap();
    tcp.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = tcp.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn help_and_errors_never_show_secrets() {
    let help = binary()
        .arg("--help")
        .env("STREAMGUARD_ADMIN_TOKEN", "hunter2-admin-secret")
        .env("STREAMGUARD_JWT_SECRET", "hunter2-jwt-secret")
        .env("STREAMGUARD_STORE", "memory://user:pw-in-store-url@x")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("--admin-token"), "{text}");
    assert!(!text.contains("hunter2-admin-secret"), "{text}");
    assert!(!text.contains("hunter2-jwt-secret"), "{text}");
    assert!(!text.contains("pw-in-store-url"), "{text}");

    let bad = binary()
        .args(["--store", "postgres://app:pw-in-bad-url@db:5432/x"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let out = String::from_utf8_lossy(&bad.stderr) + String::from_utf8_lossy(&bad.stdout);
    assert!(out.contains("--store"), "{out}");
    assert!(!out.contains("pw-in-bad-url"), "{out}");
}

/// A Redis URL with a password, pointing at a closed port: the start fails
/// and says so, without the password.
#[cfg(feature = "redis")]
#[test]
fn a_failed_redis_connection_does_not_print_its_password() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let out = binary()
        .args(["--listen", "127.0.0.1:0", "--store"])
        .arg(format!("redis://:pw-redis-secret@127.0.0.1:{port}"))
        .env("STREAMGUARD_LOG", "debug")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr) + String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&port.to_string()), "{text}");
    assert!(!text.contains("pw-redis-secret"), "{text}");
}

#[test]
fn the_admin_token_can_come_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "from-a-file-0123\n").unwrap();
    let server = Server::start(
        &[
            "--store",
            "memory",
            "--admin-token-file",
            file.to_str().unwrap(),
        ],
        &[],
    );
    let reply = raw(
        &host(&server),
        b"GET /admin/users/u/limit HTTP/1.1\r\nHost: x\r\nAuthorization: bearer from-a-file-0123\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

#[test]
fn oversized_or_too_many_headers_are_refused() {
    let server = Server::start(&["--store", "memory"], &[]);
    let long = format!(
        "GET /streams HTTP/1.1\r\nHost: x\r\nX-ID: u\r\nX-Request-Id: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(400_000)
    );
    let reply = raw(&host(&server), long.as_bytes(), Duration::from_secs(5));
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 431"),
        "{}",
        &reply[..reply.len().min(200)]
    );
    // Host, X-ID and Connection, and fillers up to the limit (100 header
    // lines, hyper's limit; see src/server.rs) or one past it.
    const MAX_HEADERS: usize = 100;
    let request = |fillers: usize| {
        let mut text = String::from("GET /streams HTTP/1.1\r\nHost: x\r\nX-ID: u\r\n");
        for i in 0..fillers {
            text.push_str(&format!("X-Filler-{i}: 1\r\n"));
        }
        text + "Connection: close\r\n\r\n"
    };
    let at_limit = request(MAX_HEADERS - 3);
    let reply = raw(&host(&server), at_limit.as_bytes(), Duration::from_secs(5));
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let over = request(MAX_HEADERS - 2);
    let reply = raw(&host(&server), over.as_bytes(), Duration::from_secs(5));
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 431"),
        "{reply}"
    );
    // The server still answers.
    let ok = raw(
        &host(&server),
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
}

#[test]
fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let server = Server::start(&["--store", "memory"], &[]);
    let started = Instant::now();
    let reply = raw(
        &host(&server),
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ",
        Duration::from_secs(30),
    );
    let held = started.elapsed();
    assert!(
        held < Duration::from_secs(20),
        "held for {held:?}, got {reply:?}"
    );
}

#[test]
fn connections_that_send_nothing_are_closed_and_free_their_slot() {
    // Two silent sockets fill the cap; hyper's header timeout alone never
    // starts on a connection that has sent no byte.
    let server = Server::start(&["--store", "memory", "--max-connections", "2"], &[]);
    let addr = host(&server);
    let started = Instant::now();
    let silent: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    for mut tcp in silent {
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buf = [0u8; 64];
        let closed = matches!(tcp.read(&mut buf), Ok(0) | Err(_));
        assert!(closed, "the server closes a silent connection");
    }
    let held = started.elapsed();
    assert!(
        held >= Duration::from_secs(9) && held < Duration::from_secs(20),
        "closed after {held:?}"
    );
    let reply = raw(
        &addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

#[test]
fn connections_beyond_the_cap_wait() {
    let server = Server::start(&["--store", "memory", "--max-connections", "2"], &[]);
    let addr = host(&server);
    let get = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut tcp = TcpStream::connect(&addr).unwrap();
        tcp.write_all(get).unwrap();
        let mut buf = [0u8; 512];
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = tcp.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(tcp);
    }
    let mut third = TcpStream::connect(&addr).unwrap();
    third.write_all(get).unwrap();
    third
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let mut buf = [0u8; 512];
    assert!(
        third.read(&mut buf).is_err(),
        "a third connection is not served while two are open"
    );
    drop(held.pop());
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let n = third.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
}

/// A request whose body trickles (a byte every 2 s of 16 000 announced) is
/// answered 408 and its connection closed 30 s after its headers; before,
/// each byte kept it open, and a few thousand such clients held every slot.
#[test]
fn a_body_trickling_in_is_cut_30_s_after_the_headers() {
    let server = Server::start(&["--store", "memory"], &[]);
    let mut tcp = TcpStream::connect(host(&server)).unwrap();
    tcp.write_all(
        b"POST /streams HTTP/1.1\r\nHost: x\r\nX-ID: u\r\nContent-Type: application/json\r\nContent-Length: 16000\r\n\r\n",
    )
    .unwrap();
    let started = Instant::now();
    tcp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut out = Vec::new();
    while started.elapsed() < Duration::from_secs(45) {
        let _ = tcp.write_all(b" ");
        let mut buf = [0u8; 1024];
        match tcp.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    let held = started.elapsed();
    let reply = String::from_utf8_lossy(&out);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply:?}");
    assert!(
        held >= Duration::from_secs(29) && held < Duration::from_secs(36),
        "closed after {held:?}"
    );
}

/// Reads the API's and the metrics listener's addresses from the log.
fn api_and_metrics(child: &mut std::process::Child) -> (String, String) {
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let mut metrics = String::new();
    let api = loop {
        let line = lines.next().unwrap().unwrap();
        let log: serde_json::Value = serde_json::from_str(&line).unwrap();
        if log["message"] == "serving /metrics" {
            metrics = log["addr"].as_str().unwrap().to_owned();
        }
        if log["message"] == "listening" {
            break log["addr"].as_str().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (api, metrics)
}

/// Clients holding every API connection (slow bodies) do not make the
/// health check fail: `/healthz` and `/readyz` are also served on
/// `--metrics-listen`, whose connections are counted apart, and
/// `streamguard healthcheck` asks there when it is set.
#[test]
fn health_is_answered_on_the_metrics_port_while_api_connections_are_exhausted() {
    let mut child = binary()
        .args(["--listen", "127.0.0.1:0", "--store", "memory"])
        .args(["--metrics-listen", "127.0.0.1:0", "--max-connections", "2"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (api, metrics) = api_and_metrics(&mut child);
    let slow = b"POST /streams HTTP/1.1\r\nHost: x\r\nX-ID: u\r\nContent-Length: 100\r\n\r\n{";
    let held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut tcp = TcpStream::connect(&api).unwrap();
            tcp.write_all(slow).unwrap();
            tcp
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let on_api = raw(&api, get("/healthz").as_bytes(), Duration::from_secs(1));
    let healthz = raw(&metrics, get("/healthz").as_bytes(), Duration::from_secs(5));
    let readyz = raw(&metrics, get("/readyz").as_bytes(), Duration::from_secs(5));
    let check = binary()
        .arg("healthcheck")
        .env("STREAMGUARD_LISTEN", &api)
        .env("STREAMGUARD_METRICS_LISTEN", &metrics)
        .output()
        .unwrap();
    drop(held);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(on_api, "", "the API's slots are all held");
    assert!(healthz.starts_with("HTTP/1.1 200"), "{healthz}");
    assert!(readyz.starts_with("HTTP/1.1 200"), "{readyz}");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

/// Out of file descriptors, the accept loop says so once and backs off
/// (it logged "accept failed" about 20 times a second), and serves again
/// once descriptors are free.
#[cfg(target_os = "linux")]
#[test]
fn running_out_of_file_descriptors_is_logged_once_and_backed_off() {
    use std::os::unix::process::CommandExt;
    const NOFILE: u64 = 64;
    let mut command = binary();
    command
        .args(["--listen", "127.0.0.1:0", "--store", "memory"])
        .stdout(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: NOFILE,
                rlim_max: NOFILE,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
            let _ = tx.send(serde_json::from_str(&line).unwrap());
        }
    });
    let api = loop {
        let log = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        if log["message"] == "listening" {
            break log["addr"].as_str().unwrap().to_owned();
        }
    };
    // More connections than the process may hold descriptors.
    let held: Vec<TcpStream> = (0..NOFILE + 8)
        .map(|_| TcpStream::connect(&api).unwrap())
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let failed = rx
        .try_iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("accept failed"))
        })
        .count();
    drop(held);
    std::thread::sleep(Duration::from_millis(1500));
    let reply = raw(
        &api,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    let again = rx
        .try_iter()
        .any(|l| l["message"] == "accepting connections again");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(failed, 1, "one line for the whole run of failures");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(again, "the recovery is logged");
}

#[test]
fn metrics_can_have_their_own_port() {
    let mut child = binary()
        .args([
            "--listen",
            "127.0.0.1:0",
            "--store",
            "memory",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let mut metrics = String::new();
    let api = loop {
        let line = lines.next().unwrap().unwrap();
        let log: serde_json::Value = serde_json::from_str(&line).unwrap();
        if log["message"] == "serving /metrics" {
            metrics = log["addr"].as_str().unwrap().to_owned();
        }
        if log["message"] == "listening" {
            break log["addr"].as_str().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let (api, metrics) = (api.as_str(), metrics.as_str());
    let req = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let on_api = raw(api, req, Duration::from_secs(5));
    let on_own = raw(metrics, req, Duration::from_secs(5));
    let _ = child.kill();
    let _ = child.wait();
    assert!(on_api.starts_with("HTTP/1.1 404"), "{on_api}");
    assert!(on_own.starts_with("HTTP/1.1 200"), "{on_own}");
    assert!(on_own.contains("# HELP streamguard_build_info"), "{on_own}");
}

/// SIGTERM with a request that never completes: the drain gives up after
/// `--shutdown-timeout`, the process exits 0, and the file store was
/// closed (what it acknowledged is there on the next start).
#[cfg(all(unix, feature = "file"))]
#[test]
fn with_a_shutdown_delay_readyz_fails_while_requests_are_still_served() {
    // A delay long enough that a test thread starved by a loaded machine
    // (every test binary runs at once in CI) still acts within it.
    let mut server = Server::start(&["--store", "memory", "--shutdown-delay", "6s"], &[]);
    let addr = host(&server);
    let get = |path: &str| {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nX-ID: u\r\nConnection: close\r\n\r\n");
        raw(&addr, request.as_bytes(), Duration::from_secs(5))
    };
    assert!(get("/readyz").starts_with("HTTP/1.1 200"));
    let term = Instant::now();
    server.terminate();
    // New connections are still accepted: a balancer polling /readyz sees
    // the 503, and players it has not moved yet are served.
    let mut draining = get("/readyz");
    while !draining.starts_with("HTTP/1.1 503") {
        assert!(term.elapsed() < Duration::from_secs(4), "{draining}");
        std::thread::sleep(Duration::from_millis(20));
        draining = get("/readyz");
    }
    assert!(draining.contains("draining"), "{draining}");
    let started = raw(
        &addr,
        b"POST /streams HTTP/1.1\r\nHost: x\r\nX-ID: u\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(started.starts_with("HTTP/1.1 201"), "{started}");
    assert!(
        term.elapsed() < Duration::from_secs(6),
        "checked within the delay"
    );
    let status = server.child.wait().unwrap();
    let took = term.elapsed();
    assert!(status.success(), "{status}");
    assert!(
        took >= Duration::from_secs(6) && took < Duration::from_secs(12),
        "exited after {took:?}"
    );
    assert!(TcpStream::connect(&addr).is_err(), "no longer accepting");
}

#[test]
fn shutdown_is_bounded_by_its_timeout_and_still_closes_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("file:{}", dir.path().display());
    let args = [
        "--store",
        store.as_str(),
        "--shutdown-timeout",
        "1s",
        "--store-timeout",
        "10s",
    ];
    let mut server = Server::start(&args, &[]);
    let addr = host(&server);
    let started = raw(
        &addr,
        b"POST /streams HTTP/1.1\r\nHost: x\r\nX-ID: u\r\nContent-Type: application/json\r\nContent-Length: 17\r\nConnection: close\r\n\r\n{\"stream_id\":\"a\"}",
        Duration::from_secs(5),
    );
    assert!(started.starts_with("HTTP/1.1 201"), "{started}");

    // Headers sent, body promised and never sent: the handler waits.
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(b"POST /streams HTTP/1.1\r\nHost: x\r\nX-ID: u\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));

    let term = Instant::now();
    server.terminate();
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(term.elapsed() < Duration::from_secs(10), "still running");
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = term.elapsed();
    assert!(status.success(), "{status}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "exited after {took:?}"
    );
    drop(slow);

    let again = Server::start(&args, &[]);
    let list = raw(
        &host(&again),
        b"GET /streams HTTP/1.1\r\nHost: x\r\nX-ID: u\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(list.contains("\"id\":\"a\""), "{list}");
}

#[test]
fn a_bad_log_filter_is_reported_and_text_logs_are_text() {
    let out = binary()
        .args(["init", "--store", "memory"])
        .env("STREAMGUARD_LOG", "streamguard=[[nonsense")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let warning: serde_json::Value = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|l| l["level"] == "WARN")
        .unwrap_or_else(|| panic!("no warning in {text}"));
    assert!(
        warning["message"]
            .as_str()
            .unwrap()
            .contains("STREAMGUARD_LOG=\"streamguard=[[nonsense\" is not a log filter"),
        "{warning}"
    );
    assert!(text.contains("store is ready"), "{text}");

    let out = binary()
        .args(["init", "--store", "memory", "--log-format", "text"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("INFO") && text.contains("store is ready"),
        "{text}"
    );
    assert!(!text.trim_start().starts_with('{'), "{text}");
}

/// Sends `n` heartbeats of one stream on one connection, 64 at a time
/// (pipelined), and waits for every answer.
fn heartbeats(addr: &str, n: usize) {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let one = b"POST /streams/mem/heartbeat HTTP/1.1\r\nHost: x\r\nX-ID: mem\r\n\r\n";
    let batch: Vec<u8> = one.repeat(64);
    let mut buf = vec![0u8; 64 * 1024];
    let mut sent = 0;
    while sent < n {
        tcp.write_all(&batch).unwrap();
        sent += 64;
        let mut answered = 0;
        let mut pending = Vec::new();
        while answered < 64 {
            let got = tcp.read(&mut buf).unwrap();
            assert!(got > 0, "the server closed the connection");
            pending.extend_from_slice(&buf[..got]);
            let mut consumed = 0;
            while let Some(pos) = pending[consumed..]
                .windows(9)
                .position(|w| w == b"HTTP/1.1 ")
            {
                let at = consumed + pos;
                if pending.len() < at + 12 {
                    break;
                }
                assert_eq!(&pending[at + 9..at + 12], b"200");
                answered += 1;
                consumed = at + 12;
            }
            // A status line cut in two stays for the next read.
            let keep_from = consumed.max(pending.len().saturating_sub(11));
            pending.drain(..keep_from);
        }
    }
}

fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Histograms used to keep every sample until a scrape: about 39 bytes a
/// request that nobody ever got back. Heartbeats with no scrape must leave
/// resident memory where it was.
#[cfg(target_os = "linux")]
#[test]
fn memory_stays_flat_without_scrapes() {
    let server = Server::start(
        &[
            "--store",
            "memory",
            "--rate-per-stream",
            "0",
            "--rate-per-account",
            "0",
        ],
        &[],
    );
    let addr = host(&server);
    let created = raw(
        &addr,
        b"POST /streams HTTP/1.1\r\nHost: x\r\nX-ID: mem\r\nContent-Type: application/json\r\nContent-Length: 19\r\nConnection: close\r\n\r\n{\"stream_id\":\"mem\"}",
        Duration::from_secs(5),
    );
    assert!(created.starts_with("HTTP/1.1 201"), "{created}");
    let drive = |total: usize| {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let addr = addr.clone();
                std::thread::spawn(move || heartbeats(&addr, total / 4))
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    };
    // A warm-up, then two equal batches, each followed by an upkeep pass
    // (every 5 s). The allocator may keep what the first batch's peak
    // needed, and resident memory moves by a few MB either way from one
    // batch to the next; a leak (39 bytes a heartbeat before the upkeep
    // ran: 15.6 MB a batch of 400 000) grows again with the second, by
    // more than half of that. Seen failing with the upkeep call removed:
    // 40 → 54 → 70 MB; passing with it: 39.9 → 41.8 → 41.9 MB.
    const BATCH: usize = 400_000;
    let settled = |total: usize| {
        drive(total);
        std::thread::sleep(Duration::from_secs(6));
        resident_kib(server.child.id())
    };
    let warm = settled(50_000);
    let first = settled(BATCH);
    let second = settled(BATCH);
    eprintln!(
        "resident memory: {warm} KiB warm, {first} KiB and {second} KiB after two batches of {BATCH} heartbeats"
    );
    let half_a_leak_kib = BATCH as u64 * 39 / 2 / 1024;
    assert!(
        second < first + half_a_leak_kib,
        "resident memory grew from {first} KiB to {second} KiB in the second batch"
    );
}
