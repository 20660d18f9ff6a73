//! An exact linearizability check of one account's history against the
//! pure rules, in the manner of Wing & Gong with Lowe's memoisation (as in
//! Porcupine): search the orders in which the operations can take effect,
//! each between its invocation and its answer, remembering every
//! (set of operations already applied, account state) pair seen so that no
//! configuration is explored twice.
//!
//! Histories are checked one round at a time. A round's operations all
//! start after the previous round's all answered, so every linearization
//! of the whole history is a round-by-round one; instead of one state, a
//! round hands the next the *set* of states some linearization can end in,
//! which keeps the search exact while each search stays small (≤ 64
//! operations, a bit set).

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use streamguard::domain::{Account, Policy};

use crate::history::{Input, Op, Output, apply};

/// Most operations one account may see in one round (the bit set's width).
pub const MAX_OPS: usize = 64;

pub struct Checked {
    /// Every state a linearization can end in; empty if there is none.
    pub ends: Vec<Account>,
    /// Configurations the search visited.
    pub explored: usize,
}

fn key(acc: &Account) -> Vec<u8> {
    serde_json::to_vec(acc).expect("an account serializes")
}

/// The states `ops` (one account, one round) can leave, starting from any
/// of `starts`. An operation whose store call failed may take effect at any
/// point after its call, with any answer, or not at all.
pub fn linearize(ops: &[Op], starts: &[Account], policy: &Policy) -> Checked {
    assert!(
        ops.len() <= MAX_OPS,
        "{} operations in one round",
        ops.len()
    );
    let n = ops.len();
    let bit = |i: usize| 1u64 << i;
    // must_precede[i]: the operations that answered before `i` was invoked.
    let must_precede: Vec<u64> = (0..n)
        .map(|i| {
            (0..n)
                .filter(|&j| !ops[j].failed() && ops[j].ret < ops[i].call)
                .fold(0, |m, j| m | bit(j))
        })
        .collect();
    let required = (0..n)
        .filter(|&i| !ops[i].failed())
        .fold(0, |m, i| m | bit(i));

    let mut seen: HashSet<(u64, Vec<u8>)> = HashSet::new();
    let mut ends: HashMap<Vec<u8>, Account> = HashMap::new();
    let mut stack: Vec<(u64, Account)> = starts.iter().map(|s| (0, s.clone())).collect();
    while let Some((done, acc)) = stack.pop() {
        let state = key(&acc);
        if !seen.insert((done, state.clone())) {
            continue;
        }
        if done & required == required {
            ends.entry(state).or_insert_with(|| acc.clone());
        }
        for (i, op) in ops.iter().enumerate() {
            if done & bit(i) != 0 || must_precede[i] & !done != 0 {
                continue;
            }
            let mut next = acc.clone();
            let out = apply(&mut next, &op.input, op.now, policy);
            if op.failed() || out == op.output {
                stack.push((done | bit(i), next));
            }
        }
    }
    Checked {
        ends: ends.into_values().collect(),
        explored: seen.len(),
    }
}

/// Whether an answer shows the operation changed nothing another answer
/// could depend on (within a round `now` stands still, so a renewal is
/// invisible too).
fn effect_free(op: &Op) -> bool {
    match (&op.input, &op.output) {
        (_, Output::Failed(_)) => false,
        (Input::View | Input::Heartbeat(..), _) => true,
        (Input::Stop(_) | Input::Revoke(_), Output::Ended(false)) => true,
        (
            Input::Start(req),
            Output::LimitReached { .. }
            | Output::AlreadyLive { .. }
            | Output::Conflict
            | Output::Missing(_),
        ) => req.limit_claim.is_none() && req.plan.is_none(),
        _ => false,
    }
}

/// The answer of an operation that the counterexample does not need: it
/// may have taken effect or not, with any answer, like a failed call.
const NOT_NEEDED: &str = "answer not needed";

/// Shrinks a history that is not linearizable to a small one that still is
/// not, by steps that only ever *remove* constraints, so that the small one
/// failing proves the original fails: an operation whose answer shows it
/// changed nothing is dropped (it only constrained the order); any other
/// operation keeps its place but has its answer forgotten (it may then take
/// effect or not, with any answer). Dropping an operation that changed
/// something would not do: the answers of others may rest on it.
pub fn shrink(mut ops: Vec<Op>, starts: &[Account], policy: &Policy) -> Vec<Op> {
    loop {
        let mut progress = false;
        let mut i = 0;
        while i < ops.len() {
            let mut weaker = ops.clone();
            if effect_free(&ops[i]) {
                weaker.remove(i);
            } else if !ops[i].failed() {
                weaker[i].output = Output::Failed(NOT_NEEDED.into());
            } else {
                i += 1;
                continue;
            }
            if linearize(&weaker, starts, policy).ends.is_empty() {
                let dropped = weaker.len() < ops.len();
                ops = weaker;
                progress = true;
                if dropped {
                    continue;
                }
            }
            i += 1;
        }
        if !progress {
            return ops;
        }
    }
}

/// An account state in words.
pub fn describe(acc: &Account, policy: &Policy) -> String {
    let mut s = String::new();
    let live: Vec<String> = acc
        .live
        .iter()
        .map(|l| match &l.device_id {
            Some(d) => format!("{} (device {d})", l.id),
            None => l.id.to_string(),
        })
        .collect();
    let ended: Vec<String> = acc
        .ended
        .iter()
        .map(|t| format!("{} {}", t.id, t.reason.as_str()))
        .collect();
    let _ = write!(
        s,
        "live [{}], ended [{}], limit {}",
        live.join(", "),
        ended.join(", "),
        acc.limit(policy).get()
    );
    if let Some(l) = acc.limit {
        let _ = write!(s, ", override {}", l.get());
    }
    if let Some(l) = acc.limit_claim {
        let _ = write!(s, ", plan {}", l.get());
    }
    s
}

/// The counterexample, for a human: the smallest failing history found.
pub fn report(
    backend: &str,
    round: usize,
    account: usize,
    ops: &[Op],
    starts: &[Account],
    policy: &Policy,
) -> String {
    let minimal = shrink(ops.to_vec(), starts, policy);
    let origin = ops.iter().map(|o| o.call).min().unwrap_or(0);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{backend}: the history of account #{account} in round {round} is not linearizable."
    );
    let _ = writeln!(
        s,
        "Before the round the account was (one of {} possible states):",
        starts.len()
    );
    for start in starts.iter().take(3) {
        let _ = writeln!(s, "    {}", describe(start, policy));
    }
    let _ = writeln!(
        s,
        "Minimal failing history ({} of {} operations, {} with their answers; ms from the \
         round's first call):",
        minimal.len(),
        ops.len(),
        minimal
            .iter()
            .filter(|o| !matches!(&o.output, Output::Failed(w) if w == NOT_NEEDED))
            .count()
    );
    print_ops(&mut s, &minimal, origin);
    let _ = writeln!(
        s,
        "No order of these operations, each taking effect between its call and its answer, \
         gives these answers under the rules (streamguard::domain::Account)."
    );
    // A sub-history can fail where the whole one would not have needed the
    // dropped operations to explain it; the whole round is here to check.
    let _ = writeln!(s, "The whole round of this account, for context:");
    print_ops(&mut s, ops, origin);
    s
}

fn print_ops(s: &mut String, ops: &[Op], origin: u64) {
    let ms = |t: u64| t.saturating_sub(origin) as f64 / 1e6;
    let mut sorted = ops.to_vec();
    sorted.sort_by_key(|o| o.call);
    for op in &sorted {
        let ret = format!("{:7.3}", ms(op.ret));
        let answer = match &op.output {
            Output::Failed(why) if why == NOT_NEEDED => {
                String::from("(answer not needed: may or may not have taken effect)")
            }
            other => format!("{other:?}"),
        };
        let _ = writeln!(
            *s,
            "    client {:2}  [{:7.3} .. {ret}]  {:<40} -> {}",
            op.client,
            ms(op.call),
            op.input.to_string(),
            answer
        );
    }
}
