//! The accept loop: HTTP/1.1 and HTTP/2 (h2c) by hyper, with bounds on
//! what one client can hold — headers (count, bytes, time to send them),
//! time without sending anything, concurrent connections — and a drain
//! with a deadline.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::{AbortHandle, JoinSet};

/// Most bytes of request line and headers (HTTP/1) or of the header list
/// (HTTP/2); a larger request gets 431 or a closed connection.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// A client must send a request's headers within this time (slowloris),
/// and a new connection its first bytes.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection that has sent nothing for this long (up to a third more)
/// is closed: an idle HTTP/2 connection; HTTP/1 ones are closed sooner, by
/// the header timeout. Longer than the longest `--store-timeout` (60 s), so
/// a request waiting for its answer is never cut.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// How many checks of a connection's silence make [`IDLE_TIMEOUT`].
const IDLE_CHECKS: u32 = 3;
/// After a failed accept (out of file descriptors), the first wait before
/// the next try; it doubles while accepts keep failing, up to the most.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(50);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

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
        // every request, a visible share of a heartbeat's CPU (BENCHMARKS.md,
        // where a heartbeat's CPU goes).
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
    // Accepts failing in a row, and how long to wait before the next try.
    let mut failing: Option<(u64, Duration)> = None;

    loop {
        // Past the cap, new connections wait in the kernel's backlog.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("never closed"),
            () = stopped(&mut stopping) => break,
        };
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    if let Some((failures, _)) = failing.take() {
                        tracing::info!(failures, "accepting connections again");
                    }
                    accepted
                }
                Err(e) => {
                    // Out of file descriptors and the like: logged once
                    // per run of failures, then tried again less and less
                    // often (the waiting connection keeps the listener
                    // ready, so a retry at once would spin).
                    let wait = match failing {
                        None => {
                            tracing::warn!(error = %e, "accept failed; retrying quietly until it works");
                            ACCEPT_BACKOFF_MIN
                        }
                        Some((_, wait)) => (wait * 2).min(ACCEPT_BACKOFF_MAX),
                    };
                    failing = Some((failing.map_or(1, |(n, _)| n + 1), wait));
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = stopped(&mut stopping) => break,
                    }
                    continue;
                }
            },
            () = stopped(&mut stopping) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let _ = tcp.set_nodelay(true);
        let read = Arc::new(AtomicBool::new(false));
        let tcp = Watched {
            tcp,
            read: read.clone(),
        };
        let service = TowerToHyperService::new(router.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(tcp), service)
            .into_owned();
        let connection = graceful.watch(connection);
        let served = connections.spawn(async move {
            let _ = connection.await;
            drop(slot);
        });
        tokio::spawn(close_when_silent(read, served));
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

/// Closes a connection whose client sends nothing: no first byte within
/// [`HEADER_READ_TIMEOUT`] (hyper's own header timeout starts only once a
/// request begins), or no byte in [`IDLE_CHECKS`] checks in a row, one
/// every [`IDLE_TIMEOUT`] / [`IDLE_CHECKS`]: silent for between that and a
/// third more. A task of its own, so serving a request never touches a
/// timer.
async fn close_when_silent(read: Arc<AtomicBool>, connection: AbortHandle) {
    tokio::time::sleep(HEADER_READ_TIMEOUT).await;
    let mut silent = IDLE_CHECKS - 1; // no first byte: close at once
    loop {
        if connection.is_finished() {
            return;
        }
        if read.swap(false, Ordering::Relaxed) {
            silent = 0;
        } else {
            silent += 1;
            if silent >= IDLE_CHECKS {
                tracing::debug!("closing a connection whose client sends nothing");
                connection.abort();
                return;
            }
        }
        tokio::time::sleep(IDLE_TIMEOUT / IDLE_CHECKS).await;
    }
}

/// A client's socket that notes when bytes arrive.
struct Watched {
    tcp: TcpStream,
    /// Set at every read that returned bytes; the watchdog clears it.
    read: Arc<AtomicBool>,
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
            self.read.store(true, Ordering::Relaxed);
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
