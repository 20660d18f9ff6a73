//! The pure rules under the shared random walk (`tests/common/walk.rs`):
//! 20 000 steps per policy of every operation, with and without plans,
//! checking on the raw account after each step (not on `view`, which trims
//! an account over its limit and so would hide the very bug it is meant to
//! catch) that the limit and every rule hold, that ended streams stay
//! ended, and that a start granting nothing changes nothing.

#[allow(dead_code)]
#[path = "common/walk.rs"]
mod walk;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use streamguard::domain::account::PlanNames;
use streamguard::domain::{
    Account, EndReason, HeartbeatDecision, Limit, OnLimit, PlanBook, PlanName, Policy,
    ResumeDecision, StartDecision, StartRequest, StreamId, Timestamp,
};
use walk::{Mix, Op, Outcome, Walk};

const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);

fn policy(on_limit: OnLimit, walk: Option<&mut Walk>) -> Policy {
    Policy {
        default_limit: Limit::new(3).unwrap(),
        lease_ttl: Duration::from_secs(90),
        on_limit,
        plans: walk.map(|w| Arc::new(PlanBook::new(w.plans()))),
    }
}

/// The account a start that grants nothing (a refusal, a missing
/// attribute, a conflict, an idempotent retry) must leave: what `now`
/// implies, the claims of the caller's token recorded (with the revocations
/// a lowered limit or another plan implies), and nothing else moved — no
/// lease, tombstone, grant counter or override. Built from the public API
/// in the order `Account::start` takes; the JSON round trip drops the
/// account's cache of the plans it was last checked against, as a changed
/// plan name does.
fn untouched(before: &Account, req: &StartRequest, now: Timestamp, p: &Policy) -> Account {
    let mut expected: Account =
        serde_json::from_value(serde_json::to_value(before).unwrap()).unwrap();
    expected.expire(now, p);
    if req.limit_claim.is_some() {
        expected.limit_claim = req.limit_claim;
    }
    if req.plan.is_some() {
        set_claimed(&mut expected, req.plan.clone());
    }
    expected.settle(now, p);
    if expected.limit.is_none() && expected.live.is_empty() && expected.ended.is_empty() {
        expected.limit_claim = None;
        set_claimed(&mut expected, None);
    }
    expected
}

fn set_claimed(acc: &mut Account, claimed: Option<PlanName>) {
    let mut names = acc.plan_names.take().map(|b| *b).unwrap_or_default();
    names.claimed = claimed;
    if names != PlanNames::default() {
        acc.plan_names = Some(Box::new(names));
    }
}

/// The limit in force and unique, live ids; with `rules`, no group of any
/// rule of the account's plan over its max.
///
/// Each assertion was seen to fail on a planted bug (tried by hand, then
/// reverted):
/// - "over its limit": `limit.is_reached_by(remaining + 1)` in `start`
///   (an off-by-one that grants one stream too many), and separately
///   `set_limit` not calling `trim`; a walk checking `view()` passed on both.
/// - "live twice": the live-id lookup in `start` matching on `(id, device)`
///   instead of `id`, so another device's start of a live id is granted as
///   a second lease.
/// - "not live at now": `start` skipping its `expire` call.
/// - "rule exceeded": `breaches` skipping a rule whose group is full.
fn assert_invariant(acc: &Account, now: Timestamp, p: &Policy, rules: bool, step: &str) {
    let limit = acc.limit(p).get() as usize;
    assert!(
        acc.live.len() <= limit,
        "{step}: {} live streams over its limit {limit}: {acc:?}",
        acc.live.len()
    );
    let ids: HashSet<_> = acc.live.iter().map(|s| &s.id).collect();
    assert_eq!(
        ids.len(),
        acc.live.len(),
        "{step}: a stream id is live twice: {acc:?}"
    );
    assert!(
        acc.live.iter().all(|s| s.is_live(now)),
        "{step}: a lease is not live at now after a decision: {acc:?}"
    );
    if let (true, (Some(plan), _)) = (rules, acc.plan(p)) {
        for rule in &plan.rules {
            assert!(
                rule.overfull_group(&acc.live).is_none(),
                "{step}: rule {} exceeded: {acc:?}",
                rule.name
            );
        }
    }
}

#[derive(Debug, Default)]
struct Seen {
    grants: usize,
    refusals: usize,
    missing: usize,
    renewals: usize,
    dead_beats: usize,
}

/// Checks after each step:
/// - `assert_invariant`; the rules only after a decision that applies them
///   (a heartbeat never evaluates rules, and an edited file applies at the
///   next decision);
/// - every id a step reports ended (stop, revoke, eviction, replacement, a
///   lowered limit or another plan) is no longer live. Planted bug caught:
///   `end` burying the stream but leaving its lease in `live`;
/// - no heartbeat (nor resume) renews an ended stream (stopped, revoked,
///   evicted, replaced, or whose lease ran out by `now`). Planted bug
///   caught: `heartbeat` renewing the lease it finds *before* running
///   `expire`, so an expired lease is revived;
/// - a start that grants nothing leaves the account as `untouched` says.
///   Planted bugs caught: the requested id's tombstone dropped before the
///   limit check instead of at the grant; `next_seq` bumped before it.
fn walk_the_rules(mix: Mix, on_limit: OnLimit, seed: u64) -> Seen {
    let mut walk = Walk::new(seed, mix);
    let p = policy(on_limit, mix.attributes.then_some(&mut walk));
    let mut acc = Account::default();
    let mut now = T0;
    // Ids that ended (any reason) and were not granted again since.
    let mut ended: HashSet<StreamId> = HashSet::new();
    let mut seen = Seen::default();
    for step in 0..20_000 {
        now = now + walk.clock_step(Duration::from_secs(40));
        let mut probe = acc.clone();
        probe.expire(now, &p);
        assert_eq!(
            acc.has_lapsed(now, &p),
            probe != acc,
            "has_lapsed agrees with expire"
        );
        let before = acc.clone();
        // Ids whose lease ran out by now end at this step, whatever it is.
        let dead_now: Vec<StreamId> = before
            .live
            .iter()
            .filter(|s| !s.is_live(now))
            .map(|s| s.id.clone())
            .collect();
        let dead = |id: &StreamId| ended.contains(id) || dead_now.contains(id);
        let op = walk.op();
        let context = format!("{step}: {op}");
        let outcome = walk::apply(&mut acc, &op, now, &p);
        let mut granted = None;
        let mut reported: Vec<StreamId> = Vec::new();
        // A resume of a live stream is a heartbeat: it does not apply rules.
        let decided = !matches!(
            (&op, &outcome),
            (Op::Heartbeat(..) | Op::EditPlans(_) | Op::View, _)
                | (_, Outcome::Resume(ResumeDecision::Heartbeat(_)))
        );
        let start = match (&op, outcome) {
            (Op::Start(req), Outcome::Start(d)) => Some((req, d)),
            (Op::Resume(req), Outcome::Resume(ResumeDecision::Start(d))) => Some((req, d)),
            (Op::Resume(_), Outcome::Resume(ResumeDecision::Heartbeat(h)))
            | (Op::Heartbeat(..), Outcome::Heartbeat(h)) => {
                match h {
                    HeartbeatDecision::Renewed(lease) => {
                        seen.renewals += 1;
                        assert!(!dead(&lease.id), "{context}: renewed an ended stream");
                        assert_eq!(lease.expires_at, now + p.lease_ttl, "{context}");
                    }
                    HeartbeatDecision::Ended(_) | HeartbeatDecision::Unknown => {
                        seen.dead_beats += 1
                    }
                }
                None
            }
            (Op::Stop(id) | Op::Revoke(id), Outcome::Ended(was)) => {
                let was_live = before.live.iter().any(|s| &s.id == id) && !dead_now.contains(id);
                if was {
                    assert!(was_live, "{context}: ended a stream that was not live");
                    reported.push(id.clone());
                } else if was_live {
                    // A stop settles the plan first: it may revoke the very stream.
                    assert!(
                        acc.ended
                            .iter()
                            .any(|t| &t.id == id && t.reason == EndReason::Revoked),
                        "{context}: did not end a live stream: {acc:?}"
                    );
                }
                None
            }
            (_, Outcome::Revoked(ids)) => {
                reported.extend(ids);
                None
            }
            _ => None,
        };
        if let Some((req, decision)) = start {
            match decision {
                StartDecision::Granted(g) => {
                    seen.grants += 1;
                    assert_eq!(g.stream.id, req.stream_id, "{context}");
                    assert_eq!(g.active, acc.live.len(), "{context}");
                    reported.extend(g.evicted);
                    reported.extend(g.replaced);
                    granted = Some(g.stream.id);
                }
                other => {
                    if matches!(other, StartDecision::MissingAttribute { .. }) {
                        seen.missing += 1;
                    } else {
                        seen.refusals += 1;
                    }
                    assert_eq!(
                        acc,
                        untouched(&before, req, now, &p),
                        "{context}: a start that granted nothing changed the account"
                    );
                }
            }
        }
        if !matches!(op, Op::EditPlans(_) | Op::View) {
            assert_invariant(&acc, now, &p, decided, &context);
        }
        for lease in &before.live {
            if !acc.live.iter().any(|s| s.id == lease.id) {
                ended.insert(lease.id.clone());
            }
        }
        for id in reported {
            assert!(
                !acc.live.iter().any(|s| s.id == id),
                "{context}: {id} was reported ended but is live: {acc:?}"
            );
            ended.insert(id);
        }
        if let Some(id) = granted {
            ended.remove(&id);
        }
    }
    eprintln!("{mix:?} {on_limit:?}: {seen:?}");
    seen
}

#[test]
fn the_limit_holds_under_any_sequence_of_operations() {
    for on_limit in [OnLimit::Reject, OnLimit::EvictOldest] {
        let seen = walk_the_rules(Mix::LIMITS, on_limit, 0x9E37_79B9_7F4A_7C15);
        // The walk must reach the cases it checks, or it proves nothing.
        assert!(seen.refusals > 1_000, "{on_limit:?}: {seen:?}");
        assert!(seen.renewals > 300, "{on_limit:?}: {seen:?}");
        assert!(seen.dead_beats > 1_000, "{on_limit:?}: {seen:?}");
    }
}

#[test]
fn no_rule_is_ever_exceeded_under_any_sequence_of_operations() {
    for on_limit in [OnLimit::Reject, OnLimit::EvictOldest] {
        let seen = walk_the_rules(Mix::PLANS, on_limit, 0x2545_F491_4F6C_DD1D);
        assert!(
            seen.grants > 2_000 && seen.refusals > 500 && seen.missing > 200,
            "{on_limit:?}: the walk reaches every outcome: {seen:?}"
        );
        assert!(seen.renewals > 200, "{on_limit:?}: {seen:?}");
    }
}
