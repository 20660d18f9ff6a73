//! Concurrent clients doing random operations on a few accounts, round by
//! round, every operation recorded with its invocation and answer times,
//! each round's per-account history checked before the next round starts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use streamguard::domain::{Account, ManualClock, Policy, Timestamp, UserId};
use streamguard::store::StreamStore;

use crate::checker::{self, MAX_OPS};
use crate::history::{Input, Op, run};
use crate::walk::{Mix, Walk};

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
    /// Whether the plans file may be edited between rounds. Not on
    /// DynamoDB, whose heartbeat does not apply a lowered plan limit
    /// (DESIGN.md, "Known gaps"), so its answer differs from the model's.
    pub plan_edits: bool,
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

/// The operations clients draw: the shared walk's, in these proportions,
/// with plans files edited between rounds only (`check`), never during one.
/// Deterministic per (seed, round, client), so a seed replays the same
/// inputs (the interleaving, of course, does not replay).
const MIX: Mix = Mix {
    start: 35,
    resume: 5,
    heartbeat: 25,
    stop: 10,
    revoke: 7,
    set_limit: 5,
    set_plan: 3,
    edit_plans: 0,
    view: 10,
    streams: 6,
    attributes: true,
};

fn kind(input: &Input) -> &'static str {
    match input {
        Input::Start(req) => match (&req.device_id, req.terminate.is_empty()) {
            (_, false) => "start+terminate",
            (Some(_), true) => "start on device",
            (None, true) => "start",
        },
        Input::Heartbeat(..) => "heartbeat",
        Input::Resume(_) => "resume",
        Input::SetPlan(_) => "plan change",
        Input::EditPlans(_) => "plans edit",
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
    let book = policy
        .plans
        .clone()
        .expect("the backends decide with plans");
    // The plans the stores decide with: drawn from the seed.
    book.replace(Walk::new(w.seed, MIX).plans());
    for round in 0..w.rounds {
        let mut walk = Walk::new(
            w.seed ^ (round as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            MIX,
        );
        if backend.plan_edits && walk.rng.one_in(10) {
            book.replace(walk.plans());
            *stats.by_kind.entry("plans edit").or_default() += 1;
        }
        let now = match &backend.time {
            Time::Manual(clock) => {
                // Sometimes nothing moves, sometimes leases run out.
                let step = walk.rng.pick(&[0, 1, 20, 45, 91]);
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
                let mut walk = walk.fork();
                let ops_per_client = w.ops_per_client;
                tokio::spawn(async move {
                    let mut ops = Vec::with_capacity(ops_per_client);
                    for _ in 0..ops_per_client {
                        let account = walk.rng.below(users.len() as u64) as usize;
                        let input = walk.op();
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
