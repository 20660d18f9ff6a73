//! The accept loop: HTTP/1.1 and HTTP/2 (h2c) by hyper, with bounds on
//! what one client can hold — headers (count, bytes, time to send them),
//! time without sending anything, concurrent connections — and a drain
//! with a deadline.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// Most bytes of request line and headers (HTTP/1) or of the header list
/// (HTTP/2); a larger request gets 431 or a closed connection.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// A client must send a request's headers within this time (slowloris),
/// and a new connection its first bytes.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection that has sent nothing for this long is closed (an idle
/// HTTP/2 connection; HTTP/1 ones are closed sooner, by the header
/// timeout). Longer than the longest `--store-timeout` (60 s), so a request
/// waiting for its answer is never cut.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(75);

#[derive(Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub drain_for: Duration,
}

/// Serves `router` on `listener` until `stopping` turns true; then drains
/// for at most `limits.drain_for` and closes what is left.
pub async fn run(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    mut stopping: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        // At most 100 header lines: hyper's own limit. Setting another with
        // `max_headers` makes hyper fill a header array of that size at
        // every request, ≈ 1 % of a heartbeat's CPU.
        // hyper's smallest read buffer is 8 KiB; headers must fit in it.
        .max_buf_size(MAX_HEADER_BYTES.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .max_concurrent_streams(100);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = JoinSet::new();

    loop {
        // Past the cap, new connections wait in the kernel's backlog.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("never closed"),
            () = stopped(&mut stopping) => break,
        };
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait, go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut stopping) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let _ = tcp.set_nodelay(true);
        let (tcp, reads) = Watched::new(tcp);
        let service = TowerToHyperService::new(router.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(tcp), service)
            .into_owned();
        let connection = graceful.watch(connection);
        connections.spawn(async move {
            until_silent(connection, &reads).await;
            drop(slot);
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);

    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.drain_for) => {
            tracing::warn!(
                connections = connections.len(),
                "shutdown timeout: closing connections still busy"
            );
        }
    }
    connections.shutdown().await;
    Ok(())
}

async fn stopped(stopping: &mut watch::Receiver<bool>) {
    // An error means the sender is gone: stop as well.
    let _ = stopping.wait_for(|stop| *stop).await;
}

/// Runs `connection` until it ends, or until the client has sent nothing
/// for too long: [`HEADER_READ_TIMEOUT`] before its first bytes (hyper's
/// own header timeout starts only once a request begins), then
/// [`IDLE_TIMEOUT`]. Dropping the connection closes the socket.
async fn until_silent(connection: impl Future, reads: &Reads) {
    tokio::pin!(connection);
    loop {
        let allowed = if reads.any() {
            IDLE_TIMEOUT
        } else {
            HEADER_READ_TIMEOUT
        };
        let left = allowed.saturating_sub(reads.silent_for());
        if left.is_zero() {
            tracing::debug!("closing a connection that sent nothing for {allowed:?}");
            return;
        }
        tokio::select! {
            _ = &mut connection => return,
            () = tokio::time::sleep(left) => {}
        }
    }
}

/// When a connection last received bytes.
struct Reads {
    opened: Instant,
    /// Milliseconds from `opened` to the last read that returned bytes,
    /// plus one; 0 before the first.
    last: AtomicU64,
}

impl Reads {
    fn any(&self) -> bool {
        self.last.load(Ordering::Relaxed) != 0
    }

    fn silent_for(&self) -> Duration {
        let since_open = self.opened.elapsed();
        match self.last.load(Ordering::Relaxed) {
            0 => since_open,
            at => since_open.saturating_sub(Duration::from_millis(at - 1)),
        }
    }
}

/// A client's socket that notes in [`Reads`] when bytes arrive.
struct Watched {
    tcp: TcpStream,
    reads: Arc<Reads>,
}

impl Watched {
    fn new(tcp: TcpStream) -> (Self, Arc<Reads>) {
        let reads = Arc::new(Reads {
            opened: Instant::now(),
            last: AtomicU64::new(0),
        });
        let reads2 = reads.clone();
        (Self { tcp, reads }, reads2)
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if buf.filled().len() > before {
            let at = self.reads.opened.elapsed().as_millis() as u64 + 1;
            self.reads.last.store(at, Ordering::Relaxed);
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
