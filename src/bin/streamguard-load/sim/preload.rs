//! Before the run: the target must answer, and `--preload` fills it with
//! streams that are not renewed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::Method;

use crate::client::{Call, Connection, Identity};
use crate::{Args, jwt};

pub(super) fn identity(args: &Args) -> Identity {
    match &args.jwt_secret {
        Some(secret) => Identity::Jwt(jwt::Signer::new(secret).expect("checked in main")),
        None => Identity::Header,
    }
}

/// Fills the server with `count` live streams, one per account.
pub(super) async fn preload(args: &Args, addr: SocketAddr, run: u32) -> (u64, Duration, u64) {
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let bar = crate::report::bar(args, args.preload, "preload");
    let tasks: Vec<_> = (0..args.connections)
        .map(|_| {
            let (next, failed, bar) = (next.clone(), failed.clone(), bar.clone());
            let mut conn = Connection::new(addr, identity(args));
            let count = args.preload;
            tokio::spawn(async move {
                use std::sync::atomic::Ordering::Relaxed;
                loop {
                    let i = next.fetch_add(1, Relaxed);
                    if i >= count {
                        break;
                    }
                    let call = Call {
                        method: Method::POST,
                        path: "/streams".into(),
                        account: format!("pre{:03x}-{i:07}", run & 0xfff),
                        body: Some(format!(
                            r#"{{"stream_id":"{:04x}p{i:017x}"}}"#,
                            run & 0xffff
                        )),
                        headers: Vec::new(),
                    };
                    if conn.send(&call).await.status != 201 {
                        failed.fetch_add(1, Relaxed);
                    }
                    if i % 1024 == 0 {
                        bar.set_position(i);
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    bar.finish_and_clear();
    let failed = failed.load(std::sync::atomic::Ordering::Relaxed);
    (args.preload, started.elapsed(), failed)
}

/// The target must answer before anything is measured (`GET /` is
/// streamguard's legacy health check, and the hello server's route).
pub(super) async fn probe(args: &Args, addr: SocketAddr) -> anyhow::Result<()> {
    let mut probe = Connection::new(addr, Identity::Header);
    let health = probe
        .send(&Call {
            method: Method::GET,
            path: "/".into(),
            account: String::new(),
            body: None,
            headers: Vec::new(),
        })
        .await;
    if health.status != 200 {
        anyhow::bail!("{} does not answer GET /", args.target);
    }
    Ok(())
}

/// Runs `--preload` (if any) and says how it went.
pub(super) async fn preload_reported(
    args: &Args,
    addr: SocketAddr,
    run: u32,
) -> Option<(u64, Duration, u64)> {
    if args.preload == 0 {
        return None;
    }
    let p = preload(args, addr, run).await;
    eprintln!(
        "preloaded {} streams in {:.1} s ({:.0}/s), {} refused",
        p.0,
        p.1.as_secs_f64(),
        p.0 as f64 / p.1.as_secs_f64(),
        p.2
    );
    Some(p)
}
