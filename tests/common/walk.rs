//! The one random walk every checker of the rules draws from: the domain
//! walk (`tests/domain_walk.rs`), the Lua mirror (`tests/redis/mirror.rs`)
//! and the linearizability workload (`tests/linearizability/workload.rs`).
//! One seeded generator draws the operations — starts with devices, content
//! ids, tags, secrets, terminate lists and claims; resumes, heartbeats,
//! stops, revokes, limit and plan changes, plans-file edits, listings —
//! and the plans files themselves, and one function applies an operation
//! to the pure rules, another to a store. Each checker keeps its own
//! checks. (A file included with `#[path]`: the lib's unit tests cannot
//! share code with integration tests, so the domain walk is one of these,
//! driving `streamguard::domain` through its public API.)

use std::fmt;
use std::time::Duration;

use streamguard::domain::{
    Account, AccountView, ContentId, DeviceId, EndReason, HeartbeatDecision, Limit, PlanName,
    Plans, Policy, ResumeDecision, SecretHash, StartDecision, StartRequest, StreamId, Tags,
    Timestamp, UserId,
};
use streamguard::store::{StoreError, StreamStore};

/// The plans every drawn file defines (so a claimed plan is always known).
pub const PLAN_NAMES: [&str; 3] = ["basic", "standard", "premium"];
/// What an administrator may also assign: a plan no file defines, passed
/// over by the rules as after an edit that removed it.
const GONE: &str = "gone";
const TITLES: [&str; 3] = ["m0", "m1", "m2"];
const CHANNELS: [&str; 4] = ["dmax", "tlc", "ard", "zdf"];
const QUALITIES: [&str; 2] = ["uhd", "hd"];

/// xorshift64*: small and deterministic, so a failing walk replays from
/// its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True once in `n` draws.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// How often each operation comes, and what a start may carry.
#[derive(Clone, Copy, Debug)]
pub struct Mix {
    pub start: u64,
    pub resume: u64,
    pub heartbeat: u64,
    pub stop: u64,
    pub revoke: u64,
    pub set_limit: u64,
    pub set_plan: u64,
    pub edit_plans: u64,
    pub view: u64,
    /// Stream ids are `s0` … below this.
    pub streams: u64,
    /// Starts carry content ids, tags, secrets and plan claims, and
    /// heartbeats secrets; without, only devices, terminate lists and limit
    /// claims (what an account looked like before plans).
    pub attributes: bool,
}

impl Mix {
    /// The limit alone: starts, heartbeats, stops, revokes, limit changes.
    pub const LIMITS: Mix = Mix {
        start: 8,
        resume: 0,
        heartbeat: 4,
        stop: 1,
        revoke: 1,
        set_limit: 2,
        set_plan: 0,
        edit_plans: 0,
        view: 0,
        streams: 7,
        attributes: false,
    };

    /// Everything: attributes, resumes, plan changes and file edits.
    pub const PLANS: Mix = Mix {
        start: 10,
        resume: 2,
        heartbeat: 5,
        stop: 2,
        revoke: 1,
        set_limit: 1,
        set_plan: 2,
        edit_plans: 1,
        view: 0,
        streams: 8,
        attributes: true,
    };
}

/// One operation on one account.
#[derive(Clone, Debug)]
pub enum Op {
    Start(StartRequest),
    /// A heartbeat the store did not know, resumed from its grant: a
    /// start's terms, without terminate list or claims.
    Resume(StartRequest),
    /// A heartbeat, with the lease secret it presents.
    Heartbeat(StreamId, Option<SecretHash>),
    Stop(StreamId),
    /// `DELETE /admin/users/{user}/streams/{id}`.
    Revoke(StreamId),
    SetLimit(Option<Limit>),
    /// `PUT` or `DELETE /admin/users/{user}/plan`.
    SetPlan(Option<PlanName>),
    /// The plans file replaced by this one (TOML).
    EditPlans(String),
    View,
}

/// What an operation answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Start(StartDecision),
    Resume(ResumeDecision),
    Heartbeat(HeartbeatDecision),
    /// Stop or revoke: whether the stream was live.
    Ended(bool),
    /// A limit or plan change: the streams it revoked.
    Revoked(Vec<StreamId>),
    View(AccountView),
    Edited,
}

/// The generator.
pub struct Walk {
    pub rng: Rng,
    pub mix: Mix,
}

impl Walk {
    pub fn new(seed: u64, mix: Mix) -> Self {
        Self {
            rng: Rng::new(seed),
            mix,
        }
    }

    /// Another walk of the same mix, seeded from this one (one per client).
    pub fn fork(&mut self) -> Walk {
        Walk::new(self.rng.next(), self.mix)
    }

    /// How far the clock moves: anything from 0 to `max`, to the millisecond.
    pub fn clock_step(&mut self, max: Duration) -> Duration {
        Duration::from_millis(self.rng.below(max.as_millis() as u64 + 1))
    }

    pub fn op(&mut self) -> Op {
        let m = self.mix;
        let weights = [
            m.start,
            m.resume,
            m.heartbeat,
            m.stop,
            m.revoke,
            m.set_limit,
            m.set_plan,
            m.edit_plans,
            m.view,
        ];
        let mut roll = self.rng.below(weights.iter().sum());
        let kind = weights
            .iter()
            .position(|&w| {
                let hit = roll < w;
                roll = roll.saturating_sub(w);
                hit
            })
            .expect("a roll below the total lands on a weight");
        match kind {
            0 => Op::Start(self.start()),
            1 => Op::Resume(StartRequest {
                terminate: Vec::new(),
                limit_claim: None,
                plan: None,
                ..self.start()
            }),
            2 => Op::Heartbeat(self.stream(), self.secret()),
            3 => Op::Stop(self.stream()),
            4 => Op::Revoke(self.stream()),
            5 => Op::SetLimit((!self.rng.one_in(4)).then(|| self.limit())),
            6 => Op::SetPlan((!self.rng.one_in(3)).then(|| {
                let names = [PLAN_NAMES[0], PLAN_NAMES[1], PLAN_NAMES[2], GONE];
                PlanName::parse(self.rng.pick(&names)).unwrap()
            })),
            7 => Op::EditPlans(self.plans_file()),
            _ => Op::View,
        }
    }

    pub fn stream(&mut self) -> StreamId {
        StreamId::parse(&format!("s{}", self.rng.below(self.mix.streams))).unwrap()
    }

    fn limit(&mut self) -> Limit {
        Limit::new(self.rng.below(5) as u32).unwrap()
    }

    /// No secret, or one of two players' secrets (none without attributes).
    fn secret(&mut self) -> Option<SecretHash> {
        if !self.mix.attributes {
            return None;
        }
        match self.rng.below(3) {
            0 => None,
            n => Some(SecretHash::of(&format!("player-{n}-lease-secret-0123")).unwrap()),
        }
    }

    fn start(&mut self) -> StartRequest {
        let r = &mut self.rng;
        let stream_id = StreamId::parse(&format!("s{}", r.below(self.mix.streams))).unwrap();
        let device_id = r
            .one_in(2)
            .then(|| DeviceId::parse(&format!("d{}", r.below(3))).unwrap());
        let terminate_max = if self.mix.attributes { 2 } else { 3 };
        let terminate = (0..r.below(terminate_max))
            .map(|_| StreamId::parse(&format!("s{}", r.below(self.mix.streams))).unwrap())
            .collect();
        let limit_claim = r
            .one_in(if self.mix.attributes { 8 } else { 4 })
            .then(|| Limit::new(r.below(5) as u32).unwrap());
        let mut req = StartRequest {
            device_id,
            terminate,
            limit_claim,
            ..StartRequest::new(stream_id)
        };
        if !self.mix.attributes {
            return req;
        }
        let r = &mut self.rng;
        req.content_id = (!r.one_in(4)).then(|| ContentId::parse(r.pick(&TITLES)).unwrap());
        let mut tags = Vec::new();
        if !r.one_in(4) {
            tags.push(("channel", r.pick(&CHANNELS)));
        }
        if r.one_in(2) {
            tags.push(("quality", r.pick(&QUALITIES)));
        }
        req.tags = Tags::from_pairs(tags).unwrap();
        req.plan = r
            .one_in(6)
            .then(|| PlanName::parse(r.pick(&PLAN_NAMES)).unwrap());
        req.secret = self.secret();
        req
    }

    /// A plans file: each of [`PLAN_NAMES`] with a limit of 0 to 4 and up
    /// to three rules of every form (`per` an attribute, `match` one or two
    /// attributes), maxima mostly 1 or 2, now and then `required`.
    pub fn plans_file(&mut self) -> String {
        let r = &mut self.rng;
        let mut file = format!("default = \"{}\"\n", r.pick(&PLAN_NAMES));
        for name in PLAN_NAMES {
            let limit = r.pick(&[0, 1, 2, 2, 3, 3, 4, 4]);
            file += &format!("[plans.{name}]\nlimit = {limit}\nrules = [\n");
            for i in 0..r.below(4) {
                let scope = match r.below(5) {
                    0 => "per = \"content_id\"".to_owned(),
                    1 => "per = \"channel\"".to_owned(),
                    2 => "per = \"quality\"".to_owned(),
                    3 => {
                        let (a, b) = (r.pick(&CHANNELS), r.pick(&CHANNELS));
                        format!("match = {{ channel = [\"{a}\", \"{b}\"] }}")
                    }
                    _ => format!(
                        "match = {{ quality = [\"uhd\"], channel = [\"{}\"] }}",
                        r.pick(&CHANNELS)
                    ),
                };
                let max = r.pick(&[0, 1, 1, 1, 2, 2, 2, 3]);
                let required = r.one_in(6);
                file += &format!(
                    "  {{ name = \"r{i}\", {scope}, max = {max}, required = {required} }},\n"
                );
            }
            file += "]\n";
        }
        file
    }

    /// A drawn plans file, parsed.
    pub fn plans(&mut self) -> Plans {
        parse(&self.plans_file())
    }
}

pub fn parse(file: &str) -> Plans {
    streamguard::plans::parse(file).unwrap_or_else(|e| panic!("a drawn plans file: {e}\n{file}"))
}

/// The operation on the pure rules. `EditPlans` replaces the plans of
/// `policy` (shared with any store opened with it).
pub fn apply(acc: &mut Account, op: &Op, now: Timestamp, policy: &Policy) -> Outcome {
    match op {
        Op::Start(req) => Outcome::Start(acc.start(req.clone(), now, policy)),
        Op::Resume(req) => Outcome::Resume(acc.resume(req.clone(), now, policy)),
        Op::Heartbeat(id, secret) => {
            Outcome::Heartbeat(acc.heartbeat_with(id, secret.as_ref(), now, policy))
        }
        Op::Stop(id) => Outcome::Ended(acc.end(id, EndReason::Stopped, now, policy)),
        Op::Revoke(id) => Outcome::Ended(acc.end(id, EndReason::Revoked, now, policy)),
        Op::SetLimit(limit) => Outcome::Revoked(acc.set_limit(*limit, now, policy)),
        Op::SetPlan(plan) => Outcome::Revoked(acc.set_plan(plan.clone(), now, policy)),
        Op::EditPlans(file) => {
            let book = policy.plans.as_ref().expect("plans edited without --plans");
            book.replace(parse(file));
            Outcome::Edited
        }
        Op::View => Outcome::View(acc.view(now, policy)),
    }
}

/// The operation through a store. `EditPlans` does nothing here: the
/// store reads the plans [`apply`] replaced.
pub async fn run(store: &dyn StreamStore, user: &UserId, op: &Op) -> Result<Outcome, StoreError> {
    Ok(match op {
        Op::Start(req) => Outcome::Start(store.start(user, req.clone()).await?),
        Op::Resume(req) => Outcome::Resume(store.resume(user, req.clone()).await?),
        Op::Heartbeat(id, secret) => {
            Outcome::Heartbeat(store.heartbeat_with(user, id, secret.as_ref()).await?)
        }
        Op::Stop(id) => Outcome::Ended(store.end(user, id, EndReason::Stopped).await?),
        Op::Revoke(id) => Outcome::Ended(store.end(user, id, EndReason::Revoked).await?),
        Op::SetLimit(limit) => Outcome::Revoked(store.set_limit(user, *limit).await?),
        Op::SetPlan(plan) => Outcome::Revoked(store.set_plan(user, plan.clone()).await?),
        Op::EditPlans(_) => Outcome::Edited,
        Op::View => Outcome::View(store.view(user).await?),
    })
}

fn start_terms(f: &mut fmt::Formatter<'_>, req: &StartRequest) -> fmt::Result {
    write!(f, "{}", req.stream_id)?;
    if let Some(d) = &req.device_id {
        write!(f, " device={d}")?;
    }
    if let Some(c) = &req.content_id {
        write!(f, " content={c}")?;
    }
    for (name, value) in req.tags.iter() {
        write!(f, " {name}={value}")?;
    }
    if let Some(s) = &req.secret {
        write!(f, " secret={}", &s.to_hex()[..6])?;
    }
    if let Some(p) = &req.plan {
        write!(f, " claims plan {p}")?;
    }
    if !req.terminate.is_empty() {
        let t: Vec<_> = req.terminate.iter().map(|s| s.as_str()).collect();
        write!(f, " terminate=[{}]", t.join(","))?;
    }
    if let Some(l) = req.limit_claim {
        write!(f, " claims limit {}", l.get())?;
    }
    Ok(())
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Start(req) => {
                write!(f, "start ")?;
                start_terms(f, req)
            }
            Op::Resume(req) => {
                write!(f, "resume ")?;
                start_terms(f, req)
            }
            Op::Heartbeat(id, None) => write!(f, "heartbeat {id}"),
            Op::Heartbeat(id, Some(s)) => write!(f, "heartbeat {id} secret={}", &s.to_hex()[..6]),
            Op::Stop(id) => write!(f, "stop {id}"),
            Op::Revoke(id) => write!(f, "admin revoke {id}"),
            Op::SetLimit(Some(l)) => write!(f, "set limit {}", l.get()),
            Op::SetLimit(None) => write!(f, "clear limit"),
            Op::SetPlan(Some(p)) => write!(f, "set plan {p}"),
            Op::SetPlan(None) => write!(f, "clear plan"),
            Op::EditPlans(file) => write!(f, "edit plans: {}", file.replace('\n', " ")),
            Op::View => write!(f, "list"),
        }
    }
}
