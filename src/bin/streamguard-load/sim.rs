//! The simulation: one task owns every viewer, the schedule and the audit;
//! `--connections` worker tasks carry its requests.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use hyper::Method;
use serde_json::Value;
use tokio::sync::{Mutex, mpsc};

use crate::audit::{Audit, Grant, Micros};
use crate::client::{Answer, Call, Connection, Identity};
use crate::{Args, Loop, Mix, jwt};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Start,
    Heartbeat,
    Stop,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Start => "start",
            Kind::Heartbeat => "heartbeat",
            Kind::Stop => "stop",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Live,
}

struct Viewer {
    account: u32,
    /// Sessions begun; the live stream's id is derived from it.
    session: u32,
    state: State,
    /// When (in the schedule) the current session ends.
    session_end: Micros,
    /// A stream of the account to end with the next start.
    terminate: Option<String>,
    busy: bool,
    /// Random bits of this viewer's lease secrets (one secret per stream).
    key: u128,
    /// The live stream's latest signed grant, when the server gives grants:
    /// sent with every heartbeat, so a store that forgot the stream
    /// re-admits it (`resumed`).
    grant: Option<String>,
}

struct Job {
    id: u64,
    viewer: u32,
    kind: Kind,
    call: Call,
    scheduled: Micros,
}

struct Done {
    job: Job,
    answer: Answer,
    done: Micros,
}

/// How many times something happened, and from when to when (seconds
/// since the run began).
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Window {
    pub count: u64,
    pub first_s: Option<f64>,
    pub last_s: Option<f64>,
}

impl Window {
    fn add(&mut self, at: Micros) {
        let at = at as f64 / 1e6;
        self.count += 1;
        self.first_s.get_or_insert(at);
        self.last_s = Some(at);
    }
}

/// One second of the run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Second {
    pub t: u64,
    pub requests: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Everything the report needs.
pub struct Outcome {
    /// The wall clock when the run (second 0 of every time) began.
    pub started_unix_s: f64,
    pub elapsed: Duration,
    pub latency: Histogram<u64>,
    pub per_kind: BTreeMap<&'static str, u64>,
    pub status: BTreeMap<u16, u64>,
    pub grants: u64,
    pub denials: u64,
    pub conflicts: u64,
    pub evictions: u64,
    pub replaced: u64,
    pub terminates_sent: u64,
    pub ended: BTreeMap<String, u64>,
    pub resumes: Window,
    pub resume_refused: u64,
    pub unavailable: Window,
    pub violations: u64,
    pub examples: Vec<String>,
    pub series: Vec<Second>,
    pub preload: Option<(u64, Duration, u64)>,
}

struct Sim {
    args: Args,
    run: u32,
    rng: fastrand::Rng,
    viewers: Vec<Viewer>,
    heap: BinaryHeap<Reverse<(Micros, u32)>>,
    audit: Audit,
    next_job: u64,
    in_flight: usize,
    started: Instant,
    /// Answers after the end of the run count for the audit only.
    counting: bool,
    // statistics
    latency: Histogram<u64>,
    second: Histogram<u64>,
    second_count: u64,
    series: Vec<Second>,
    per_kind: BTreeMap<&'static str, u64>,
    status: BTreeMap<u16, u64>,
    grants: u64,
    denials: u64,
    conflicts: u64,
    evictions: u64,
    replaced: u64,
    terminates_sent: u64,
    ended: BTreeMap<String, u64>,
    resumes: Window,
    resume_refused: u64,
    unavailable: Window,
}

fn micros(d: Duration) -> Micros {
    d.as_micros() as Micros
}

impl Sim {
    fn account_id(&self, account: u32) -> String {
        format!("acct-{:04x}{account:06}", self.run & 0xffff)
    }

    fn stream_id(&self, viewer: u32, session: u32) -> String {
        format!("{:04x}{viewer:08x}{session:010x}", self.run & 0xffff)
    }

    /// The lease secret of a viewer's session: the same for every retry of
    /// its start, another for each stream.
    fn lease_secret(&self, viewer: u32, session: u32) -> String {
        let key = self.viewers[viewer as usize].key;
        format!("ls{key:032x}{session:010x}")
    }

    fn now(&self) -> Micros {
        micros(self.started.elapsed())
    }

    /// Session length drawn from 0.5× to 1.5× of `--session`.
    fn session_len(&mut self) -> Micros {
        let mean = micros(self.args.session);
        mean / 2 + self.rng.u64(0..=mean.max(1))
    }

    /// Pause between two sessions of a viewer: up to a tenth of a session.
    fn pause(&mut self) -> Micros {
        self.rng.u64(0..=micros(self.args.session) / 10 + 1)
    }

    fn schedule(&mut self, viewer: u32, at: Micros) {
        if self.args.mix.is_none() {
            self.heap.push(Reverse((at, viewer)));
        }
    }

    /// The request viewer `v` makes next, as of schedule time `due`.
    fn job(&mut self, v: u32, due: Micros, kind: Option<Kind>) -> Job {
        let viewer = &self.viewers[v as usize];
        let kind = kind.unwrap_or(match viewer.state {
            State::Idle => Kind::Start,
            State::Live if due < viewer.session_end => Kind::Heartbeat,
            State::Live => Kind::Stop,
        });
        let account = self.account_id(viewer.account);
        let (session, terminate) = (viewer.session, viewer.terminate.clone());
        let grant = match kind {
            Kind::Heartbeat => viewer.grant.clone(),
            _ => None,
        };
        let call = match kind {
            Kind::Start => {
                let mut body = serde_json::json!({
                    "stream_id": self.stream_id(v, session + 1),
                    "device_id": format!("dev-{v:010}"),
                    "content_id": format!("title-{:06}", self.rng.u32(0..20_000)),
                    "lease_secret": self.lease_secret(v, session + 1),
                });
                if let Some(t) = terminate {
                    body["terminate"] = serde_json::json!([t]);
                    self.terminates_sent += 1;
                }
                Call {
                    method: Method::POST,
                    path: "/streams".into(),
                    account,
                    body: Some(body.to_string()),
                    headers: Vec::new(),
                }
            }
            Kind::Heartbeat => {
                let mut headers = vec![("streamguard-lease-secret", self.lease_secret(v, session))];
                if let Some(grant) = grant {
                    headers.push(("streamguard-grant", grant));
                }
                Call {
                    method: Method::POST,
                    path: format!("/streams/{}/heartbeat", self.stream_id(v, session)),
                    account,
                    body: None,
                    headers,
                }
            }
            Kind::Stop => Call {
                method: Method::DELETE,
                path: format!("/streams/{}", self.stream_id(v, session)),
                account,
                body: None,
                headers: Vec::new(),
            },
        };
        self.next_job += 1;
        let job = Job {
            id: self.next_job,
            viewer: v,
            kind,
            call,
            scheduled: due,
        };
        if kind != Kind::Heartbeat {
            let sent = self.now();
            self.audit.sent(&job.call.account, job.id, sent);
        }
        self.viewers[v as usize].busy = true;
        self.in_flight += 1;
        job
    }

    /// A viewer of the fixed mix, and what it does.
    fn mix_pick(&mut self, mix: Mix) -> Option<(u32, Kind)> {
        let total = mix.start + mix.heartbeat + mix.stop;
        let r = self.rng.u32(0..total);
        let want = if r < mix.start {
            Kind::Start
        } else if r < mix.start + mix.heartbeat {
            Kind::Heartbeat
        } else {
            Kind::Stop
        };
        for _ in 0..16 {
            let v = self.rng.u32(0..self.viewers.len() as u32);
            let viewer = &self.viewers[v as usize];
            if viewer.busy {
                continue;
            }
            let fits = match want {
                Kind::Start => viewer.state == State::Idle,
                _ => viewer.state == State::Live,
            };
            if fits {
                return Some((v, want));
            }
        }
        // Few viewers in the wanted state: take what this one can do.
        let v = self.rng.u32(0..self.viewers.len() as u32);
        let viewer = &self.viewers[v as usize];
        let kind = match viewer.state {
            State::Idle => Kind::Start,
            State::Live => Kind::Heartbeat,
        };
        (!viewer.busy).then_some((v, kind))
    }

    fn record(&mut self, kind: Kind, status: u16, latency: Micros) {
        if !self.counting {
            return;
        }
        let _ = self.latency.record(latency.max(1));
        let _ = self.second.record(latency.max(1));
        self.second_count += 1;
        *self.per_kind.entry(kind.name()).or_default() += 1;
        *self.status.entry(status).or_default() += 1;
    }

    fn close_second(&mut self, t: u64) {
        let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        self.series.push(Second {
            t,
            requests: self.second_count,
            p50_ms: ms(&self.second, 0.5),
            p90_ms: ms(&self.second, 0.9),
            p99_ms: ms(&self.second, 0.99),
            max_ms: self.second.max() as f64 / 1000.0,
        });
        self.second.reset();
        self.second_count = 0;
    }

    /// Takes in an answer: statistics, audit, and the viewer's next step.
    fn answered(&mut self, done: Done) {
        let Done { job, answer, done } = done;
        self.in_flight -= 1;
        self.record(job.kind, answer.status, done.saturating_sub(job.scheduled));
        let v = job.viewer;
        self.viewers[v as usize].busy = false;
        let account = job.call.account.clone();
        let sent = job.scheduled.min(done);
        let heartbeat = micros(self.args.heartbeat);
        if answer.status == 0 || answer.status >= 500 {
            self.unavailable.add(done);
        }
        let body = || serde_json::from_slice::<Value>(&answer.body).unwrap_or(Value::Null);
        match (job.kind, answer.status) {
            (Kind::Start, 200 | 201) => {
                let b = body();
                let ids = |k: &str| -> Vec<String> {
                    b[k].as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|s| s.as_str().map(String::from))
                                .collect()
                        })
                        .unwrap_or_default()
                };
                let (evicted, replaced) = (ids("evicted"), ids("replaced"));
                let ttl = lease_ttl(&b["stream"]).unwrap_or(90_000_000);
                let stream = self.stream_id(v, self.viewers[v as usize].session + 1);
                let limit = b["limit"].as_u64().unwrap_or(3) as u32;
                self.audit.granted(
                    &account,
                    job.id,
                    sent,
                    done,
                    &Grant {
                        stream: &stream,
                        limit,
                        ttl,
                        evicted: &evicted,
                        replaced: &replaced,
                    },
                );
                self.grants += 1;
                self.evictions += evicted.len() as u64;
                self.replaced += replaced.len() as u64;
                let session_len = self.session_len();
                let viewer = &mut self.viewers[v as usize];
                viewer.session += 1;
                viewer.state = State::Live;
                viewer.terminate = None;
                viewer.grant = b["grant"].as_str().map(String::from);
                viewer.session_end = job.scheduled + session_len;
                self.schedule(v, job.scheduled + heartbeat);
            }
            (Kind::Start, 409) => {
                self.audit.answered(&account, job.id);
                let b = body();
                let limited = b["type"]
                    .as_str()
                    .is_some_and(|t| t.ends_with("stream-limit-reached"));
                if limited {
                    self.denials += 1;
                } else {
                    self.conflicts += 1;
                }
                let oldest = b["streams"]
                    .as_array()
                    .and_then(|s| s.first())
                    .and_then(|s| s["id"].as_str())
                    .map(String::from);
                let retry = limited && self.viewers[v as usize].terminate.is_none();
                if retry
                    && let Some(oldest) = oldest.filter(|_| self.rng.f64() < self.args.terminate)
                {
                    self.viewers[v as usize].terminate = Some(oldest);
                    self.schedule(v, job.scheduled + 500_000);
                } else {
                    self.viewers[v as usize].terminate = None;
                    let pause = self.pause();
                    self.schedule(v, job.scheduled + pause.max(1_000_000));
                }
            }
            (Kind::Start, _) => {
                self.audit.answered(&account, job.id);
                self.viewers[v as usize].terminate = None;
                self.schedule(v, job.scheduled + 1_000_000);
            }
            (Kind::Heartbeat, 200) => {
                let b = body();
                let stream = self.stream_id(v, self.viewers[v as usize].session);
                if b["resumed"].as_bool() == Some(true) {
                    // The store had forgotten the stream and re-admitted it
                    // from its grant: a renewal for the viewer, a grant for
                    // the limit.
                    self.resumes.add(done);
                    let ttl = lease_ttl(&b["stream"]).unwrap_or(90_000_000);
                    self.audit.resumed(&account, &stream, sent, done, ttl);
                } else {
                    self.audit.renewed(&account, &stream, sent);
                }
                if let Some(grant) = b["grant"].as_str() {
                    self.viewers[v as usize].grant = Some(grant.to_owned());
                }
                self.schedule(v, job.scheduled + heartbeat);
            }
            (Kind::Heartbeat, 409) => {
                // Resumed into a full account (other devices started while
                // the store had forgotten this one): refused like a start,
                // the player stops and offers to end another stream.
                let stream = self.stream_id(v, self.viewers[v as usize].session);
                self.audit.refused(&account, &stream, "limit-reached", done);
                self.resume_refused += 1;
                let viewer = &mut self.viewers[v as usize];
                viewer.state = State::Idle;
                viewer.grant = None;
                let pause = self.pause();
                self.schedule(v, job.scheduled + pause);
            }
            (Kind::Heartbeat, 410 | 404) => {
                let reason = if answer.status == 404 {
                    "unknown".to_owned()
                } else {
                    body()["reason"].as_str().unwrap_or("none").to_owned()
                };
                let stream = self.stream_id(v, self.viewers[v as usize].session);
                self.audit.refused(&account, &stream, &reason, done);
                *self.ended.entry(reason).or_default() += 1;
                self.viewers[v as usize].state = State::Idle;
                self.viewers[v as usize].grant = None;
                let pause = self.pause();
                self.schedule(v, job.scheduled + pause);
            }
            (Kind::Heartbeat, _) => self.schedule(v, job.scheduled + heartbeat),
            (Kind::Stop, _) => {
                // A failed stop may still have stopped the stream: count it
                // ended, so the audit can never blame the server for it.
                let stream = self.stream_id(v, self.viewers[v as usize].session);
                self.audit.stopped(&account, job.id, &stream, sent);
                self.viewers[v as usize].state = State::Idle;
                self.viewers[v as usize].grant = None;
                let pause = self.pause();
                self.schedule(v, job.scheduled + pause);
            }
        }
    }
}

/// `expires_at - started_at` of a granted stream: the server's lease TTL.
fn lease_ttl(stream: &Value) -> Option<Micros> {
    let parse = |k: &str| {
        let s = stream[k].as_str()?;
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
    };
    let ttl = parse("expires_at")? - parse("started_at")?;
    u64::try_from(ttl.whole_microseconds()).ok()
}

fn identity(args: &Args) -> Identity {
    match &args.jwt_secret {
        Some(secret) => Identity::Jwt(jwt::Signer::new(secret).expect("checked in main")),
        None => Identity::Header,
    }
}

/// Fills the server with `count` live streams, one per account.
async fn preload(args: &Args, addr: SocketAddr, run: u32) -> (u64, Duration, u64) {
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

pub async fn run(args: Args, addr: SocketAddr) -> anyhow::Result<Outcome> {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let mut rng = fastrand::Rng::with_seed(seed);
    let run = rng.u32(..);
    // The target must answer before anything is measured (`GET /` is
    // streamguard's legacy health check, and the hello server's route).
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
    let preloaded = if args.preload > 0 {
        let p = preload(&args, addr, run).await;
        eprintln!(
            "preloaded {} streams in {:.1} s ({:.0}/s), {} refused",
            p.0,
            p.1.as_secs_f64(),
            p.0 as f64 / p.1.as_secs_f64(),
            p.2
        );
        Some(p)
    } else {
        None
    };

    // Viewers: the shared ones first, grouped by account, then one account each.
    let shared = (f64::from(args.viewers) * args.share) as u32;
    let per = args.devices_per_account.max(1);
    let shared_accounts = shared.div_ceil(per);
    let viewers: Vec<Viewer> = (0..args.viewers)
        .map(|v| Viewer {
            account: if v < shared {
                v / per
            } else {
                shared_accounts + (v - shared)
            },
            session: 0,
            state: State::Idle,
            session_end: 0,
            terminate: None,
            busy: false,
            key: rng.u128(..),
            grant: None,
        })
        .collect();
    let ramp = micros(args.ramp.unwrap_or(args.heartbeat));
    let mut heap = BinaryHeap::with_capacity(viewers.len());
    if args.mix.is_none() {
        for v in 0..args.viewers {
            heap.push(Reverse((rng.u64(0..=ramp), v)));
        }
    }
    let histogram = || Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).unwrap();
    let mut sim = Sim {
        args: args.clone(),
        run,
        rng,
        viewers,
        heap,
        audit: Audit::default(),
        next_job: 0,
        in_flight: 0,
        started: Instant::now(),
        counting: true,
        latency: histogram(),
        second: histogram(),
        second_count: 0,
        series: Vec::new(),
        per_kind: BTreeMap::new(),
        status: BTreeMap::new(),
        grants: 0,
        denials: 0,
        conflicts: 0,
        evictions: 0,
        replaced: 0,
        terminates_sent: 0,
        ended: BTreeMap::new(),
        resumes: Window::default(),
        resume_refused: 0,
        unavailable: Window::default(),
    };

    let (job_tx, job_rx) = mpsc::unbounded_channel::<Job>();
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let started = sim.started;
    let started_unix_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
        - started.elapsed().as_secs_f64();
    let workers: Vec<_> = (0..args.connections)
        .map(|_| {
            let (job_rx, done_tx) = (job_rx.clone(), done_tx.clone());
            let mut conn = Connection::new(addr, identity(&args));
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
    drop(done_tx);

    let end = micros(args.duration);
    let bar = crate::report::bar(&args, args.duration.as_secs().max(1), "run");
    let mut next_second = 1_000_000;
    let mix_interval = args.rate.map(|r| 1e6 / r);
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
        // Send what is due.
        let closed = args.mode == Loop::Closed;
        let mut wake = end;
        if let Some(mix) = args.mix {
            loop {
                let due = match (closed, mix_interval) {
                    (true, _) | (false, None) => now,
                    (false, Some(every)) => (mix_sent as f64 * every) as Micros,
                };
                if closed && sim.in_flight >= args.connections {
                    break;
                }
                if !closed && due > now {
                    wake = wake.min(due);
                    break;
                }
                if !closed && mix_interval.is_none() && sim.in_flight >= args.connections {
                    break;
                }
                let Some((v, kind)) = sim.mix_pick(mix) else {
                    break;
                };
                let job = sim.job(v, due, Some(kind));
                mix_sent += 1;
                let _ = job_tx.send(job);
            }
        } else {
            while let Some(&Reverse((due, v))) = sim.heap.peek() {
                if closed && sim.in_flight >= args.connections {
                    break;
                }
                if !closed && due > now {
                    wake = wake.min(due);
                    break;
                }
                sim.heap.pop();
                let scheduled = if closed { now } else { due };
                let job = sim.job(v, scheduled, None);
                let _ = job_tx.send(job);
            }
        }
        timer.reset(sim.started + Duration::from_micros(wake.min(next_second)));
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
    let elapsed = sim.started.elapsed();
    sim.counting = false;
    // Let what is in flight come back (it counts for the audit, not the rate).
    drop(job_tx);
    let deadline = Instant::now() + Duration::from_secs(10);
    while sim.in_flight > 0 && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(200), done_rx.recv()).await {
            Ok(Some(done)) => sim.answered(done),
            Ok(None) => break,
            Err(_) => {}
        }
    }
    for w in workers {
        w.abort();
    }
    sim.audit.finish();
    Ok(Outcome {
        started_unix_s,
        elapsed,
        latency: sim.latency,
        per_kind: sim.per_kind,
        status: sim.status,
        grants: sim.grants,
        denials: sim.denials,
        conflicts: sim.conflicts,
        evictions: sim.evictions,
        replaced: sim.replaced,
        terminates_sent: sim.terminates_sent,
        ended: sim.ended,
        resumes: sim.resumes,
        resume_refused: sim.resume_refused,
        unavailable: sim.unavailable,
        violations: sim.audit.count(),
        examples: sim.audit.violations().to_vec(),
        series: sim.series,
        preload: preloaded,
    })
}
