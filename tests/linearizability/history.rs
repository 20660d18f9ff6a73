//! What a client did and saw: one operation on one account, with the
//! instants it was invoked and answered, and the pure rules' answer to the
//! same input (the sequential model), compared modulo timestamps.

use streamguard::domain::{
    Account, EndReason, HeartbeatDecision, Policy, ResumeDecision, StartDecision, StreamId,
    Timestamp,
};
use streamguard::store::StreamStore;

/// What a client asks: an operation of the shared walk
/// (`tests/common/walk.rs`).
pub use crate::walk::Op as Input;
use crate::walk::{self, Outcome};

/// An answer with its timestamps left out: the stores stamp leases with
/// their own clock, the model with the round's `now`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Granted {
        evicted: Vec<String>,
        replaced: Vec<String>,
        active: usize,
    },
    AlreadyLive {
        active: usize,
    },
    LimitReached {
        /// Every refusing rule, in order.
        rules: Vec<String>,
        /// The first one's streams.
        live: Vec<String>,
    },
    /// A rule requires an attribute the start lacks.
    Missing(String),
    Conflict,
    Renewed,
    HeartbeatEnded(EndReason),
    HeartbeatUnknown,
    /// Stop or revoke: whether the stream was live.
    Ended(bool),
    /// A limit change: the streams it revoked.
    LimitSet {
        revoked: Vec<String>,
    },
    Live {
        limit: u32,
        live: Vec<String>,
    },
    /// The store failed: the operation may or may not have taken effect.
    Failed(String),
}

/// One completed operation. Times are nanoseconds since the run began.
#[derive(Clone, Debug)]
pub struct Op {
    pub client: usize,
    pub account: usize,
    pub input: Input,
    pub output: Output,
    pub call: u64,
    pub ret: u64,
    /// The store clock's time during this operation's round.
    pub now: Timestamp,
}

impl Op {
    pub fn failed(&self) -> bool {
        matches!(self.output, Output::Failed(_))
    }
}

fn names(ids: impl IntoIterator<Item = StreamId>) -> Vec<String> {
    let mut v: Vec<String> = ids.into_iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

fn start_output(d: StartDecision) -> Output {
    match d {
        StartDecision::Granted(g) => Output::Granted {
            evicted: names(g.evicted),
            replaced: names(g.replaced),
            active: g.active,
        },
        StartDecision::AlreadyLive { active, .. } => Output::AlreadyLive { active },
        StartDecision::LimitReached(refusal) => Output::LimitReached {
            rules: refusal
                .conflicts
                .iter()
                .map(|c| c.rule.to_string())
                .collect(),
            live: names(refusal.first().live.iter().map(|l| l.id.clone())),
        },
        StartDecision::StreamIdConflict => Output::Conflict,
        StartDecision::MissingAttribute { rule, .. } => Output::Missing(rule.to_string()),
    }
}

fn resume_output(d: ResumeDecision) -> Output {
    match d {
        ResumeDecision::Heartbeat(h) => heartbeat_output(h),
        ResumeDecision::Start(s) => start_output(s),
    }
}

fn heartbeat_output(d: HeartbeatDecision) -> Output {
    match d {
        HeartbeatDecision::Renewed(_) => Output::Renewed,
        HeartbeatDecision::Ended(r) => Output::HeartbeatEnded(r),
        HeartbeatDecision::Unknown => Output::HeartbeatUnknown,
    }
}

fn output(outcome: Outcome) -> Output {
    match outcome {
        Outcome::Start(d) => start_output(d),
        Outcome::Resume(d) => resume_output(d),
        Outcome::Heartbeat(d) => heartbeat_output(d),
        Outcome::Ended(was) => Output::Ended(was),
        Outcome::Revoked(ids) => Output::LimitSet {
            revoked: names(ids),
        },
        Outcome::View(view) => Output::Live {
            limit: view.limit.get(),
            live: names(view.live.into_iter().map(|l| l.id)),
        },
        Outcome::Edited => unreachable!("plans are edited between rounds only"),
    }
}

/// The sequential model: the pure rules on one account.
pub fn apply(acc: &mut Account, input: &Input, now: Timestamp, policy: &Policy) -> Output {
    output(walk::apply(acc, input, now, policy))
}

/// The same input through a store.
pub async fn run(
    store: &dyn StreamStore,
    user: &streamguard::domain::UserId,
    input: &Input,
) -> Output {
    walk::run(store, user, input)
        .await
        .map(output)
        .unwrap_or_else(|e| Output::Failed(e.to_string()))
}
