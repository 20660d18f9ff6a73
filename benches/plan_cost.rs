//! What plans cost a decision, in the domain alone (no store, no HTTP), so
//! that instruction counts under callgrind are exact and repeatable on a
//! noisy machine (`benches/plan_cost.sh` runs each case under callgrind).
//!
//! `cargo bench --bench plan_cost -- CASE N` runs N operations of CASE:
//! `start-S-P` (a start and a stop of a new stream on an account holding S
//! streams, P = `none` or `plan`, the README's 4-rule premium plan) or
//! `heartbeat-S-P`. With N = 0 it only sets up, so the difference between
//! two runs is the cost of N operations.

use std::sync::Arc;
use std::time::Duration;

use streamguard::domain::{
    Account, ContentId, EndReason, Limit, OnLimit, PlanBook, PlanName, Policy, StartRequest,
    StreamId, Tags, Timestamp,
};

const PREMIUM: &str = r#"
default = "premium"
[plans.premium]
limit = 4
rules = [
  { name = "same-title", per = "content_id", max = 2 },
  { name = "uhd", match = { quality = ["uhd"] }, max = 2 },
  { name = "discovery", match = { channel = ["dmax", "tlc", "eurosport"] }, max = 1 },
  { name = "per-channel", per = "channel", max = 1, required = true },
]
"#;

fn request(id: &str, n: usize) -> StartRequest {
    let channel = format!("c{n}");
    StartRequest {
        content_id: Some(ContentId::parse(&format!("m{n}")).unwrap()),
        tags: Tags::from_pairs([("channel", channel.as_str()), ("quality", "hd")]).unwrap(),
        ..StartRequest::new(StreamId::parse(id).unwrap())
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (case, n) = match (args.get(1), args.get(2)) {
        (Some(c), Some(n)) if !c.starts_with('-') => (c.clone(), n.parse::<usize>().unwrap()),
        _ => ("start-3-plan".to_owned(), 1000),
    };
    let parts: Vec<&str> = case.split('-').collect();
    let (op, streams, with_plan) = (
        parts[0],
        parts[1].parse::<usize>().unwrap(),
        parts[2] == "plan",
    );
    let plans = streamguard::plans::parse(PREMIUM).unwrap();
    let policy = Policy {
        default_limit: Limit::new(3).unwrap(),
        lease_ttl: Duration::from_secs(90),
        on_limit: OnLimit::Reject,
        plans: with_plan.then(|| Arc::new(PlanBook::new(plans))),
    };
    let now = Timestamp::from_millis(1_800_000_000_000);
    let mut account = Account::default();
    // Large accounts need room above the plan's 4; small ones keep the
    // plan's (or the default) limit, as production accounts do.
    if streams > 3 {
        account.set_limit(Some(Limit::new(1000).unwrap()), now, &policy);
    }
    if with_plan {
        account.set_plan(Some(PlanName::parse("premium").unwrap()), now, &policy);
    }
    for i in 0..streams.saturating_sub(1) {
        account.start(request(&format!("s{i}"), i), now, &policy);
    }
    let live = StreamId::parse("s0").unwrap();
    let new = StreamId::parse("new").unwrap();
    for i in 0..n {
        let at = now + Duration::from_millis(i as u64);
        match op {
            "start" => {
                let decision = account.start(request("new", 1_000_000), at, &policy);
                assert!(matches!(
                    decision,
                    streamguard::domain::StartDecision::Granted(_)
                ));
                account.end(&new, EndReason::Stopped, at, &policy);
            }
            _ => {
                std::hint::black_box(account.heartbeat(&live, at, &policy));
            }
        }
    }
    println!(
        "{case}: {n} operations on {} live streams",
        account.live.len()
    );
}
