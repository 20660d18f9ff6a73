//! The simulation: one task owns every viewer, the schedule and the audit;
//! `--connections` worker tasks carry its requests.

mod preload;
mod run;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use hyper::Method;
use serde_json::Value;

pub use run::run;

use crate::audit::{Audit, Grant, Micros};
use crate::client::{Answer, Call};
use crate::load_plans::{LoadPlans, StartAttrs};
use crate::{Args, Mix};

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
    /// The `content_id` and tags of the next stream's start, drawn once:
    /// its retries (with `terminate`, or after a failure) ask the same.
    next: Option<StartAttrs>,
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
    /// Denials by the rule that refused first (`account`: the limit).
    pub denials_by_rule: BTreeMap<String, u64>,
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
    plans: LoadPlans,
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
    denials_by_rule: BTreeMap<String, u64>,
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
    /// The viewers (the shared ones first, grouped by account, then one
    /// account each) and, for sessions, their first starts spread over the
    /// ramp.
    fn new(args: Args, run: u32, mut rng: fastrand::Rng, plans: LoadPlans) -> Self {
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
                next: None,
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
        Sim {
            args,
            plans,
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
            denials_by_rule: BTreeMap::new(),
            conflicts: 0,
            evictions: 0,
            replaced: 0,
            terminates_sent: 0,
            ended: BTreeMap::new(),
            resumes: Window::default(),
            resume_refused: 0,
            unavailable: Window::default(),
        }
    }

    fn outcome(
        self,
        started_unix_s: f64,
        elapsed: Duration,
        preload: Option<(u64, Duration, u64)>,
    ) -> Outcome {
        Outcome {
            started_unix_s,
            elapsed,
            violations: self.audit.count(),
            examples: self.audit.violations().to_vec(),
            latency: self.latency,
            per_kind: self.per_kind,
            status: self.status,
            grants: self.grants,
            denials: self.denials,
            denials_by_rule: self.denials_by_rule,
            conflicts: self.conflicts,
            evictions: self.evictions,
            replaced: self.replaced,
            terminates_sent: self.terminates_sent,
            ended: self.ended,
            resumes: self.resumes,
            resume_refused: self.resume_refused,
            unavailable: self.unavailable,
            series: self.series,
            preload,
        }
    }

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
        let account_no = viewer.account;
        let account = self.account_id(account_no);
        let (session, terminate) = (viewer.session, viewer.terminate.clone());
        let grant = match kind {
            Kind::Heartbeat => viewer.grant.clone(),
            _ => None,
        };
        let call = match kind {
            Kind::Start => {
                let plan = self.plans.plan_of(account_no);
                self.audit.plan(&account, plan, !self.plans.is_implicit());
                let attrs = match self.viewers[v as usize].next.take() {
                    Some(attrs) => attrs,
                    None => self.plans.draw(&mut self.rng),
                };
                let mut body = attrs.json.clone();
                body["stream_id"] = self.stream_id(v, session + 1).into();
                body["device_id"] = format!("dev-{v:010}").into();
                body["lease_secret"] = self.lease_secret(v, session + 1).into();
                self.viewers[v as usize].next = Some(attrs);
                if let Some(t) = terminate {
                    body["terminate"] = serde_json::json!([t]);
                    self.terminates_sent += 1;
                }
                Call {
                    method: Method::POST,
                    path: "/streams".into(),
                    account,
                    body: Some(body.to_string()),
                    headers: self.plans.header(account_no).into_iter().collect(),
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
                let attrs = self.viewers[v as usize].next.take().map(|a| a.attrs);
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
                        attrs,
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
                    let rule = b["rule"].as_str().unwrap_or("account").to_owned();
                    if self.counting {
                        *self.denials_by_rule.entry(rule).or_default() += 1;
                    }
                    if let Some(next) = &self.viewers[v as usize].next {
                        self.audit.limit_reached(&account, &next.attrs, &b);
                    }
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
                if let Some(attrs) = self.audit.attrs_of(&account, &stream) {
                    self.audit.limit_reached(&account, &attrs, &body());
                }
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
