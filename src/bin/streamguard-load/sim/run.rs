//! A run from its first request to its outcome: probe, preload, then the
//! loop that sends what is due and takes in answers, then the drain.

use std::cmp::Reverse;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;

use super::preload::{identity, preload_reported, probe};
use super::{Done, Job, Outcome, Sim, micros};
use crate::audit::Micros;
use crate::client::Connection;
use crate::load_plans::LoadPlans;
use crate::{Args, Loop};

pub async fn run(args: Args, addr: SocketAddr, plans: LoadPlans) -> anyhow::Result<Outcome> {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let mut rng = fastrand::Rng::with_seed(seed);
    let run = rng.u32(..);
    probe(&args, addr).await?;
    let preloaded = preload_reported(&args, addr, run).await;
    let mut sim = Sim::new(args.clone(), run, rng, plans);
    let started_unix_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
        - sim.started.elapsed().as_secs_f64();
    let (job_tx, mut done_rx, workers) = spawn_workers(&args, addr, sim.started);
    drive(&mut sim, &job_tx, &mut done_rx).await?;
    let elapsed = sim.started.elapsed();
    sim.counting = false;
    drop(job_tx);
    drain(&mut sim, &mut done_rx).await;
    for w in workers {
        w.abort();
    }
    sim.audit.finish();
    Ok(sim.outcome(started_unix_s, elapsed, preloaded))
}

type Workers = (
    mpsc::UnboundedSender<Job>,
    mpsc::UnboundedReceiver<Done>,
    Vec<JoinHandle<()>>,
);

/// `--connections` tasks, each a keep-alive connection carrying one job at
/// a time; answers come back stamped with when they arrived.
fn spawn_workers(args: &Args, addr: SocketAddr, started: Instant) -> Workers {
    let (job_tx, job_rx) = mpsc::unbounded_channel::<Job>();
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (done_tx, done_rx) = mpsc::unbounded_channel::<Done>();
    let workers = (0..args.connections)
        .map(|_| {
            let (job_rx, done_tx) = (job_rx.clone(), done_tx.clone());
            let mut conn = Connection::new(addr, identity(args));
            tokio::spawn(async move {
                loop {
                    let job = { job_rx.lock().await.recv().await };
                    let Some(job) = job else { break };
                    let answer = conn.send(&job.call).await;
                    let done = micros(started.elapsed());
                    if done_tx.send(Done { job, answer, done }).is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
    (job_tx, done_rx, workers)
}

/// The run's loop until `--duration`: closes seconds, sends what is due,
/// waits for an answer or the next due time.
async fn drive(
    sim: &mut Sim,
    job_tx: &mpsc::UnboundedSender<Job>,
    done_rx: &mut mpsc::UnboundedReceiver<Done>,
) -> anyhow::Result<()> {
    let end = micros(sim.args.duration);
    let bar = crate::report::bar(&sim.args, sim.args.duration.as_secs().max(1), "run");
    let mut next_second = 1_000_000;
    let mut mix_sent = 0u64;
    // tokio's timer ticks in whole milliseconds: a send due in 0.2 ms would
    // leave up to a millisecond late, and the lateness would count as the
    // server's latency. A timerfd wakes the loop at the microsecond.
    let mut timer = tokio_timerfd::Delay::new(sim.started)?;
    loop {
        let now = sim.now();
        while now >= next_second {
            sim.close_second(next_second / 1_000_000);
            let last = sim.series.last().unwrap();
            bar.set_position(next_second / 1_000_000);
            bar.set_message(format!(
                "{} req/s, p99 {:.1} ms, {} grants, {} denials, audit {}",
                last.requests,
                last.p99_ms,
                sim.grants,
                sim.denials,
                sim.audit.count()
            ));
            next_second += 1_000_000;
        }
        if now >= end {
            break;
        }
        let wake = match sim.args.mix {
            Some(_) => send_mix(sim, job_tx, now, &mut mix_sent),
            None => send_sessions(sim, job_tx, now),
        };
        timer.reset(sim.started + Duration::from_micros(wake.min(end).min(next_second)));
        tokio::select! {
            Some(done) = done_rx.recv() => {
                sim.answered(done);
                while let Ok(done) = done_rx.try_recv() {
                    sim.answered(done);
                }
            }
            _ = &mut timer => {}
        }
    }
    bar.finish_and_clear();
    Ok(())
}

/// Sends the fixed mix's requests due by `now`; returns when the next is due.
fn send_mix(
    sim: &mut Sim,
    job_tx: &mpsc::UnboundedSender<Job>,
    now: Micros,
    mix_sent: &mut u64,
) -> Micros {
    let Some(mix) = sim.args.mix else {
        return Micros::MAX;
    };
    let closed = sim.args.mode == Loop::Closed;
    let mix_interval = sim.args.rate.map(|r| 1e6 / r);
    loop {
        let due = match (closed, mix_interval) {
            (true, _) | (false, None) => now,
            (false, Some(every)) => (*mix_sent as f64 * every) as Micros,
        };
        if closed && sim.in_flight >= sim.args.connections {
            return Micros::MAX;
        }
        if !closed && due > now {
            return due;
        }
        if !closed && mix_interval.is_none() && sim.in_flight >= sim.args.connections {
            return Micros::MAX;
        }
        let Some((v, kind)) = sim.mix_pick(mix) else {
            return Micros::MAX;
        };
        let job = sim.job(v, due, Some(kind));
        *mix_sent += 1;
        let _ = job_tx.send(job);
    }
}

/// Sends the viewers' requests due by `now`; returns when the next is due.
fn send_sessions(sim: &mut Sim, job_tx: &mpsc::UnboundedSender<Job>, now: Micros) -> Micros {
    let closed = sim.args.mode == Loop::Closed;
    while let Some(&Reverse((due, v))) = sim.heap.peek() {
        if closed && sim.in_flight >= sim.args.connections {
            break;
        }
        if !closed && due > now {
            return due;
        }
        sim.heap.pop();
        let scheduled = if closed { now } else { due };
        let job = sim.job(v, scheduled, None);
        let _ = job_tx.send(job);
    }
    Micros::MAX
}

/// Lets what is in flight come back (it counts for the audit, not the rate).
async fn drain(sim: &mut Sim, done_rx: &mut mpsc::UnboundedReceiver<Done>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while sim.in_flight > 0 && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(200), done_rx.recv()).await {
            Ok(Some(done)) => sim.answered(done),
            Ok(None) => break,
            Err(_) => {}
        }
    }
}
