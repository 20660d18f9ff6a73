//! The accept loop: HTTP/1.1 and HTTP/2 (h2c) by hyper, with bounds on
//! what one client can hold — headers (count, bytes, time to send them),
//! concurrent connections — and a drain with a deadline.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// Most bytes of request line and headers (HTTP/1) or of the header list
/// (HTTP/2); a larger request gets 431 or a closed connection.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// A client must send a request's headers within this time (slowloris).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

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
        let service = TowerToHyperService::new(router.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(tcp), service)
            .into_owned();
        let connection = graceful.watch(connection);
        connections.spawn(async move {
            let _ = connection.await;
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
