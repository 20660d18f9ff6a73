//! Concurrent clients doing random operations on a few accounts, round by
//! round, every operation recorded with its invocation and answer times,
//! each round's per-account history checked before the next round starts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use streamguard::domain::{
    Account, ContentId, DeviceId, Limit, ManualClock, PlanName, Policy, SecretHash, StreamId,
    Timestamp, UserId,
};
use streamguard::store::StreamStore;

use crate::checker::{self, MAX_OPS};
use crate::history::{Input, Op, run};

/// How time moves for the store under test.
pub enum Time {
    /// The store reads this clock; the harness advances it between rounds
    /// (never during one), so every operation of a round sees one `now`.
    Manual(ManualClock),
    /// The store reads its own clock (the Redis server's `TIME`). The lease
    /// is long enough that nothing expires during the test, the model gets
    /// a `now` that only moves forward, and answers are compared without
    /// their timestamps.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Server,
}

/// A backend under test: one or more store instances sharing one state.
pub struct Backend {
    pub name: &'static str,
    pub stores: Vec<Arc<dyn StreamStore>>,
    pub time: Time,
    pub policy: Policy,
    pub users: Vec<UserId>,
    /// Whatever must outlive the stores (a temporary directory).
    pub _keep: Box<dyn std::any::Any + Send>,
}

#[derive(Clone, Copy, Debug)]
pub struct Workload {
    pub rounds: usize,
    pub clients: usize,
    pub ops_per_client: usize,
    pub seed: u64,
}

impl Workload {
    /// `rounds` unless `STREAMGUARD_LIN_ROUNDS` asks for another number.
    pub fn new(rounds: usize) -> Self {
        let rounds = std::env::var("STREAMGUARD_LIN_ROUNDS")
            .ok()
            .map(|v| v.parse().expect("STREAMGUARD_LIN_ROUNDS is a number"))
            .unwrap_or(rounds);
        let seed = std::env::var("STREAMGUARD_LIN_SEED")
            .ok()
            .map(|v| v.parse().expect("STREAMGUARD_LIN_SEED is a number"))
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        Self {
            rounds,
            clients: 6,
            ops_per_client: 4,
            seed,
        }
    }
}

/// What was checked.
#[derive(Debug, Default)]
pub struct Stats {
    pub rounds: usize,
    /// Per-account, per-round histories checked.
    pub histories: usize,
    pub ops: usize,
    pub failed_ops: usize,
    pub by_kind: BTreeMap<&'static str, usize>,
    pub max_explored: usize,
    pub max_frontier: usize,
    pub elapsed: Duration,
}

/// xorshift64*: deterministic per (seed, round, client), so a seed replays
/// the same inputs (the interleaving, of course, does not replay).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn stream(rng: &mut Rng) -> StreamId {
    StreamId::parse(&format!("s{}", rng.below(6))).unwrap()
}

/// No secret, or one of two players' secrets.
fn secret(rng: &mut Rng) -> Option<SecretHash> {
    match rng.below(3) {
        0 => None,
        n => Some(SecretHash::of(&format!("player-{n}-lease-secret-0123")).unwrap()),
    }
}

/// One of the plans of `backends::PLANS`, or none.
fn plan(rng: &mut Rng) -> Option<PlanName> {
    match rng.below(4) {
        0 => None,
        n => Some(PlanName::parse(["p1", "p2", "p3"][n as usize - 1]).unwrap()),
    }
}

/// A start (with claims and a terminate list when `full`), on a device now
/// and then, with a title, a channel and a secret drawn at random.
fn start(rng: &mut Rng, full: bool) -> Input {
    Input::Start {
        stream: stream(rng),
        device: (rng.below(10) < 6)
            .then(|| DeviceId::parse(&format!("d{}", rng.below(3))).unwrap()),
        content: (rng.below(3) > 0)
            .then(|| ContentId::parse(&format!("m{}", rng.below(2))).unwrap()),
        channel: (rng.below(2) == 0).then(|| ["dmax", "ard"][rng.below(2) as usize]),
        secret: secret(rng),
        terminate: if full && rng.below(5) == 0 {
            (0..1 + rng.below(2)).map(|_| stream(rng)).collect()
        } else {
            Vec::new()
        },
        plan: (full && rng.below(20) == 0).then(|| Limit::new(rng.below(4) as u32).unwrap()),
        claimed: if full && rng.below(15) == 0 {
            plan(rng)
        } else {
            None
        },
    }
}

fn input(rng: &mut Rng) -> Input {
    match rng.below(100) {
        // Plain starts, starts on a device (replacing what it plays),
        // starts that terminate other streams, now and then a plan claim.
        0..=34 => start(rng, true),
        35..=39 => Input::Resume(Box::new(start(rng, false))),
        40..=64 => Input::Heartbeat(stream(rng), secret(rng)),
        65..=74 => Input::Stop(stream(rng)),
        75..=81 => Input::Revoke(stream(rng)),
        82..=86 => Input::SetLimit(match rng.below(5) {
            4 => None,
            n => Some(Limit::new(n as u32).unwrap()),
        }),
        87..=89 => Input::SetPlan(plan(rng)),
        _ => Input::View,
    }
}

fn kind(input: &Input) -> &'static str {
    match input {
        Input::Start {
            device, terminate, ..
        } => match (device, terminate.is_empty()) {
            (_, false) => "start+terminate",
            (Some(_), true) => "start on device",
            (None, true) => "start",
        },
        Input::Heartbeat(..) => "heartbeat",
        Input::Resume(_) => "resume",
        Input::SetPlan(_) => "plan change",
        Input::Stop(_) => "stop",
        Input::Revoke(_) => "admin revoke",
        Input::SetLimit(_) => "limit change",
        Input::View => "list",
    }
}

/// Runs the workload; `Err` holds the minimised counterexample.
pub async fn check(backend: &Backend, w: Workload) -> Result<Stats, String> {
    let began = Instant::now();
    let policy = backend.policy.clone();
    let accounts = backend.users.len();
    let mut frontier: Vec<Vec<Account>> = vec![vec![Account::default()]; accounts];
    let mut stats = Stats::default();
    let mut model_now = Timestamp::from_millis(1_800_000_000_000);
    let epoch = Instant::now();
    for round in 0..w.rounds {
        let mut rng = Rng::new(w.seed ^ (round as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let now = match &backend.time {
            Time::Manual(clock) => {
                // Sometimes nothing moves, sometimes leases run out.
                let step = [0, 1, 20, 45, 91][rng.below(5) as usize];
                clock.advance(Duration::from_secs(step));
                streamguard::domain::Clock::now(clock)
            }
            Time::Server => {
                model_now = model_now + Duration::from_millis(1);
                model_now
            }
        };
        let clients: Vec<_> = (0..w.clients)
            .map(|client| {
                let store = backend.stores[client % backend.stores.len()].clone();
                let users = backend.users.clone();
                let mut rng = Rng::new(rng.next());
                let ops_per_client = w.ops_per_client;
                tokio::spawn(async move {
                    let mut ops = Vec::with_capacity(ops_per_client);
                    for _ in 0..ops_per_client {
                        let account = rng.below(users.len() as u64) as usize;
                        let input = input(&mut rng);
                        let call = epoch.elapsed().as_nanos() as u64;
                        let output = run(store.as_ref(), &users[account], &input).await;
                        let ret = epoch.elapsed().as_nanos() as u64;
                        ops.push(Op {
                            client,
                            account,
                            input,
                            output,
                            call,
                            ret,
                            now,
                        });
                    }
                    ops
                })
            })
            .collect();
        let mut ops = Vec::new();
        for c in clients {
            ops.extend(c.await.expect("a client task"));
        }
        if let Time::Manual(clock) = &backend.time {
            let after = streamguard::domain::Clock::now(clock);
            assert_eq!(after, now, "the clock moved during a round");
        }
        stats.rounds += 1;
        for (a, starts) in frontier.iter_mut().enumerate() {
            let mut history: Vec<Op> = ops.iter().filter(|o| o.account == a).cloned().collect();
            if history.is_empty() {
                continue;
            }
            assert!(history.len() <= MAX_OPS);
            history.sort_by_key(|o| o.call);
            for op in &history {
                *stats.by_kind.entry(kind(&op.input)).or_default() += 1;
                stats.failed_ops += usize::from(op.failed());
            }
            stats.ops += history.len();
            stats.histories += 1;
            let checked = checker::linearize(&history, starts, &policy);
            stats.max_explored = stats.max_explored.max(checked.explored);
            if checked.ends.is_empty() {
                return Err(checker::report(
                    backend.name,
                    round,
                    a,
                    &history,
                    starts,
                    &policy,
                ));
            }
            assert!(
                checked.ends.len() <= 10_000,
                "{} possible states after round {round}",
                checked.ends.len()
            );
            stats.max_frontier = stats.max_frontier.max(checked.ends.len());
            *starts = checked.ends;
        }
    }
    stats.elapsed = began.elapsed();
    Ok(stats)
}
