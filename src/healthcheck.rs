//! `streamguard healthcheck`: asks the server on this host for `/healthz`
//! (on `--metrics-listen` when set, whose connection slots API clients
//! cannot take, else on `--listen`) and succeeds on 200. Container images
//! without a shell or curl (scratch, distroless) run it as their health
//! check.
//!
//! One request to our own server over loopback, so plain HTTP/1.1 on a
//! `TcpStream` rather than an HTTP client dependency.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

use crate::config::Config;

/// How long the check waits to connect, and then for the answer.
const TIMEOUT: Duration = Duration::from_secs(3);

/// Checks the server `config` describes: on its metrics address when it
/// has one, else on its API address.
pub fn check_configured(config: &Config) -> io::Result<()> {
    check(config.ops.metrics_listen.unwrap_or(config.listen))
}

/// Checks the server listening on `listen`; a wildcard address (`0.0.0.0`,
/// `[::]`) is reached through loopback.
pub fn check(listen: SocketAddr) -> io::Result<()> {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    let mut conn = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    conn.set_read_timeout(Some(TIMEOUT))?;
    conn.set_write_timeout(Some(TIMEOUT))?;
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    // "HTTP/1.1 200": the status code is the three bytes after the version.
    let mut head = [0u8; 12];
    conn.read_exact(&mut head)?;
    if &head[9..] == b"200" {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{addr}/healthz answered {:?}",
            String::from_utf8_lossy(&head)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-shot server on loopback that answers the first request with
    /// `response`; returns its address.
    fn answer_once(response: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = [0u8; 256];
            let n = conn.read(&mut request).unwrap();
            assert!(request[..n].starts_with(b"GET /healthz HTTP/1.1\r\n"));
            conn.write_all(response.as_bytes()).unwrap();
        });
        addr
    }

    #[test]
    fn passes_on_200_and_fails_on_anything_else() {
        assert!(check(answer_once("HTTP/1.1 200 OK\r\n\r\n")).is_ok());
        let err = check(answer_once("HTTP/1.1 503 Service Unavailable\r\n\r\n")).unwrap_err();
        assert!(err.to_string().contains("503"), "{err}");
    }

    #[test]
    fn fails_when_nothing_listens() {
        let free = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert!(check(free).is_err());
    }

    #[test]
    fn a_wildcard_address_is_checked_on_loopback() {
        let served = answer_once("HTTP/1.1 200 OK\r\n\r\n");
        let wildcard = SocketAddr::from((Ipv4Addr::UNSPECIFIED, served.port()));
        assert!(check(wildcard).is_ok());
    }
}
