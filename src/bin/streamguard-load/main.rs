//! `streamguard-load`: a viewer simulator for streamguard.
//!
//! Viewers (an account and a device) start a stream, heartbeat every
//! `--heartbeat`, and stop after a session drawn around `--session`; a share
//! of them share accounts, so limits, denials, `terminate` and evictions
//! happen. Or a fixed `--mix start:heartbeat:stop`. Open loop by default:
//! each request has a scheduled time, and its latency counts from there, so
//! a server that falls behind shows its queue (no coordinated omission).
//! `--loop closed` keeps `--connections` requests in flight to find the
//! maximum rate. The run fails (exit 1) when the audit finds an account
//! over its limit or a heartbeat refused without a cause.
//!
//! Each stream is started with a lease secret of its viewer, and when the
//! server gives signed grants (`--grant-key`), every heartbeat carries the
//! stream's latest grant: a store that forgot the stream resumes it
//! (`resumed`, a renewal for the viewer). A heartbeat answered 404 stopped
//! a viewer who did nothing wrong and fails the audit.

mod audit;
mod client;
mod jwt;
mod load_plans;
mod report;
mod sim;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Loop {
    /// Requests leave on schedule; latency counts from the schedule.
    Open,
    /// `--connections` requests always in flight: the maximum rate.
    Closed,
}

/// A start:heartbeat:stop weighting, e.g. `1:8:1`.
#[derive(Clone, Copy, Debug)]
pub struct Mix {
    pub start: u32,
    pub heartbeat: u32,
    pub stop: u32,
}

fn parse_mix(s: &str) -> Result<Mix, String> {
    let parts: Vec<u32> = s
        .split(':')
        .map(|p| p.parse().map_err(|_| format!("{p:?} is not a number")))
        .collect::<Result<_, _>>()?;
    match parts[..] {
        [start, heartbeat, stop] if start + heartbeat + stop > 0 => Ok(Mix {
            start,
            heartbeat,
            stop,
        }),
        _ => Err("expected START:HEARTBEAT:STOP weights, e.g. 1:8:1".into()),
    }
}

#[derive(Parser, Debug, Clone)]
#[command(version, about = "Viewer simulator and load generator for streamguard")]
pub struct Args {
    /// The server under test (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub target: String,
    /// Simulated viewers (account + device).
    #[arg(long, default_value_t = 1_000_000)]
    pub viewers: u32,
    /// Heartbeat interval of a viewer.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub heartbeat: Duration,
    /// Mean session length; each session is drawn from 0.5× to 1.5× of it.
    #[arg(long, default_value = "40m", value_parser = humantime::parse_duration)]
    pub session: Duration,
    /// Share of viewers that share an account with others (0..=1).
    #[arg(long, default_value_t = 0.2)]
    pub share: f64,
    /// Viewers on each shared account (more than its limit gives denials).
    #[arg(long, default_value_t = 4)]
    pub devices_per_account: u32,
    /// Chance that a denied viewer retries at once with `terminate` naming
    /// the account's oldest stream ("watch here, stop the TV").
    #[arg(long, default_value_t = 0.5)]
    pub terminate: f64,
    /// Fixed request mix START:HEARTBEAT:STOP over the viewers instead of
    /// their sessions.
    #[arg(long, value_parser = parse_mix)]
    pub mix: Option<Mix>,
    /// Open-loop request rate per second. With viewers it sets the heartbeat
    /// interval (viewers / rate); with `--mix` it paces the mix.
    #[arg(long)]
    pub rate: Option<f64>,
    /// `open` (scheduled sends) or `closed` (as fast as `--connections` allow).
    #[arg(long = "loop", value_enum, default_value_t = Loop::Open)]
    pub mode: Loop,
    /// HTTP/1.1 keep-alive connections.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// How long to run (after the preload).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// The first starts are spread over this long (default: one heartbeat).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub ramp: Option<Duration>,
    /// Before the run, fill the server with this many live streams, one per
    /// account, as fast as `--connections` allow. They are not renewed: run
    /// the server with a `--lease-ttl` long enough for the measurement.
    #[arg(long, default_value_t = 0)]
    pub preload: u64,
    /// Identify with HS256 JWTs (`sub` = account) signed with this secret
    /// instead of `X-ID` (for a server started with `--auth jwt`).
    #[arg(long, env = "STREAMGUARD_LOAD_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Where to write the JSON result.
    #[arg(long, default_value = "streamguard-load.json")]
    pub out: PathBuf,
    /// Where to write the SVG plot of throughput and latency over time.
    #[arg(long, default_value = "streamguard-load.svg")]
    pub plot: PathBuf,
    /// The service's `--plans` file: the tool reads each account's plan
    /// from it, draws `content_id` and tags so that its rules refuse
    /// sometimes, and audits every rule as it audits the limit.
    #[arg(long)]
    pub plans: Option<PathBuf>,
    /// The service's `--plan-header`: accounts take the file's plans in
    /// turn and name theirs in this header (default: every account has the
    /// file's `default`).
    #[arg(long, requires = "plans")]
    pub plan_header: Option<String>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Seed of the random choices (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// The target's socket address; anything but loopback is refused.
fn loopback(target: &str) -> anyhow::Result<SocketAddr> {
    let rest = target
        .strip_prefix("http://")
        .context("--target must be an http:// URL")?;
    let hostport = rest.split('/').next().unwrap_or(rest);
    let addr = hostport
        .to_socket_addrs()
        .with_context(|| format!("resolving {hostport}"))?
        .next()
        .context("no address")?;
    if !addr.ip().is_loopback() {
        bail!("load runs only against this machine (127.0.0.1 or ::1), not {addr}");
    }
    Ok(addr)
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    let addr = loopback(&args.target)?;
    if !(0.0..=1.0).contains(&args.share) || !(0.0..=1.0).contains(&args.terminate) {
        bail!("--share and --terminate are shares between 0 and 1");
    }
    if let Some(secret) = &args.jwt_secret {
        jwt::Signer::new(secret).context("--jwt-secret")?;
    }
    if args.viewers == 0 || args.connections == 0 {
        bail!("--viewers and --connections must be at least 1");
    }
    if let (Some(rate), None) = (args.rate, args.mix) {
        args.heartbeat = Duration::from_secs_f64(f64::from(args.viewers) / rate);
        eprintln!(
            "--rate {rate}/s over {} viewers: heartbeat every {:?}",
            args.viewers, args.heartbeat
        );
    }
    let plans = match &args.plans {
        Some(path) => load_plans::LoadPlans::load(path, args.plan_header.clone())?,
        None => load_plans::LoadPlans::implicit(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(sim::run(args.clone(), addr, plans))?;
    report::print_table(&outcome);
    report::write_json(&args, &outcome, &args.out)?;
    report::plot(&outcome, &args.plot)?;
    eprintln!("wrote {} and {}", args.out.display(), args.plot.display());
    if outcome.violations > 0 {
        eprintln!("AUDIT FAILED: {} violation(s)", outcome.violations);
        for v in &outcome.examples {
            eprintln!("  {v}");
        }
        std::process::exit(1);
    }
    Ok(())
}
