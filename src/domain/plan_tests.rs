//! Plans and rules in the decision: every rule form, both `--on-limit`
//! policies, refusals that name each refusing rule, and plan changes.

use std::sync::Arc;
use std::time::Duration;

use super::*;

const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);

fn at(secs: u64) -> Timestamp {
    T0 + Duration::from_secs(secs)
}

fn sid(s: &str) -> StreamId {
    StreamId::parse(s).unwrap()
}

fn name(s: &str) -> PlanName {
    PlanName::parse(s).unwrap()
}

fn per(rule: &str, attr: &str, max: u32) -> Rule {
    Rule {
        name: rule.into(),
        scope: Scope::Per(Attr::parse(attr).unwrap()),
        max: Limit::new(max).unwrap(),
        required: false,
    }
}

fn matching(rule: &str, attr: &str, values: &[&str], max: u32) -> Rule {
    Rule {
        name: rule.into(),
        scope: Scope::Match(vec![(
            Attr::parse(attr).unwrap(),
            values.iter().map(|v| TagValue::parse(v).unwrap()).collect(),
        )]),
        max: Limit::new(max).unwrap(),
        required: false,
    }
}

fn plan(n: &str, limit: u32, rules: Vec<Rule>) -> Plan {
    Plan {
        name: name(n),
        limit: Limit::new(limit).unwrap(),
        rules,
    }
}

/// The premium plan of the README: 4 streams, 2 of a title, 2 in UHD, 1 of
/// the discovery group, 1 per channel (required).
fn premium() -> Plan {
    let mut per_channel = per("per-channel", "channel", 1);
    per_channel.required = true;
    plan(
        "premium",
        4,
        vec![
            per("same-title", "content_id", 2),
            matching("uhd", "quality", &["uhd"], 2),
            matching("discovery", "channel", &["dmax", "tlc", "eurosport"], 1),
            per_channel,
        ],
    )
}

fn policy(on_limit: OnLimit, plans: Vec<Plan>, default: &str) -> Policy {
    Policy {
        on_limit,
        plans: Some(Arc::new(PlanBook::new(
            Plans::new(plans, &name(default)).unwrap(),
        ))),
        ..Policy::default()
    }
}

/// Plan "p" alone: 3 streams, at most `max` of a title.
fn title_plan(max: u32) -> Vec<Plan> {
    vec![plan("p", 3, vec![per("same-title", "content_id", max)])]
}

/// [`title_plan`] under `reject`.
fn one_title_rule(max: u32) -> Policy {
    policy(OnLimit::Reject, title_plan(max), "p")
}

fn start(id: &str, content: Option<&str>, tags: &[(&str, &str)]) -> StartRequest {
    StartRequest {
        content_id: content.map(|c| ContentId::parse(c).unwrap()),
        tags: Tags::from_pairs(tags.iter().copied()).unwrap(),
        ..StartRequest::new(sid(id))
    }
}

fn granted(d: StartDecision) -> Admission {
    match d {
        StartDecision::Granted(g) => g,
        other => panic!("expected a grant, got {other:?}"),
    }
}

fn refused(d: StartDecision) -> Refusal {
    match d {
        StartDecision::LimitReached(r) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn ids(leases: &[Lease]) -> Vec<&str> {
    leases.iter().map(|l| l.id.as_str()).collect()
}

#[test]
fn per_content_allows_two_of_a_title_and_names_the_rule_with_its_streams() {
    let p = policy(
        OnLimit::Reject,
        vec![plan(
            "standard",
            3,
            vec![per("same-title", "content_id", 2)],
        )],
        "standard",
    );
    let mut acc = Account::default();
    granted(acc.start(start("a", Some("m1"), &[]), at(0), &p));
    granted(acc.start(start("b", Some("m1"), &[]), at(1), &p));
    let before = acc.clone();
    let r = refused(acc.start(start("c", Some("m1"), &[]), at(2), &p));
    assert_eq!(acc, before, "a refusal changes nothing");
    assert_eq!(r.conflicts.len(), 1);
    assert_eq!(&*r.first().rule, "same-title");
    assert_eq!(r.first().limit.get(), 2);
    assert_eq!(ids(&r.first().live), ["a", "b"]);
    // Another title, and a stream without content_id, are not counted.
    granted(acc.start(start("c", Some("m2"), &[]), at(3), &p));
    let r = refused(acc.start(start("d", None, &[]), at(4), &p));
    assert_eq!(&*r.first().rule, "account");
    assert_eq!(ids(&r.first().live), ["a", "b", "c"]);
}

#[test]
fn every_refusing_rule_is_listed_account_first() {
    let p = policy(OnLimit::Reject, vec![premium()], "premium");
    let mut acc = Account::default();
    let uhd = |id: &str, ch: &str| start(id, Some(id), &[("channel", ch), ("quality", "uhd")]);
    granted(acc.start(uhd("a", "dmax"), at(0), &p));
    granted(acc.start(uhd("b", "zdf"), at(1), &p));
    granted(acc.start(start("c", Some("c"), &[("channel", "ard")]), at(2), &p));
    granted(acc.start(start("d", Some("d"), &[("channel", "rtl")]), at(3), &p));
    let r = refused(acc.start(uhd("e", "tlc"), at(4), &p));
    let rules: Vec<&str> = r.conflicts.iter().map(|c| &*c.rule).collect();
    assert_eq!(rules, ["account", "uhd", "discovery"]);
    assert_eq!(ids(&r.conflicts[0].live), ["a", "b", "c", "d"]);
    assert_eq!(ids(&r.conflicts[1].live), ["a", "b"]);
    assert_eq!(ids(&r.conflicts[2].live), ["a"]);
}

#[test]
fn a_required_attribute_is_refused_before_anything_else() {
    let p = policy(OnLimit::Reject, vec![premium()], "premium");
    let mut acc = Account::default();
    match acc.start(start("a", Some("m"), &[("quality", "hd")]), at(0), &p) {
        StartDecision::MissingAttribute { rule, attribute } => {
            assert_eq!((&*rule, attribute.as_str()), ("per-channel", "channel"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(acc, Account::default());
    granted(acc.start(start("a", Some("m"), &[("channel", "ard")]), at(0), &p));
    // One per channel.
    let r = refused(acc.start(start("b", Some("n"), &[("channel", "ard")]), at(1), &p));
    assert_eq!(&*r.first().rule, "per-channel");
}

#[test]
fn evict_oldest_ends_the_oldest_in_the_refusing_scope_only() {
    let p = policy(
        OnLimit::EvictOldest,
        vec![plan("p", 4, vec![matching("uhd", "quality", &["uhd"], 2)])],
        "p",
    );
    let mut acc = Account::default();
    let hd = |id: &str| start(id, None, &[("quality", "hd")]);
    let uhd = |id: &str| start(id, None, &[("quality", "uhd")]);
    granted(acc.start(hd("old-hd"), at(0), &p));
    granted(acc.start(uhd("u1"), at(1), &p));
    granted(acc.start(uhd("u2"), at(2), &p));
    // The third UHD stream evicts the oldest UHD one, not the older HD one.
    let g = granted(acc.start(uhd("u3"), at(3), &p));
    assert_eq!(g.evicted, [sid("u1")]);
    // Full account and full UHD: one eviction in both scopes settles both.
    granted(acc.start(hd("hd2"), at(4), &p));
    let g = granted(acc.start(uhd("u4"), at(5), &p));
    assert_eq!(g.evicted, [sid("u2")]);
    assert_eq!(g.active, 4);
    assert_eq!(
        acc.heartbeat(&sid("u2"), at(6), &p),
        HeartbeatDecision::Ended(EndReason::Evicted)
    );
    // A rule with max 0 is never made room for.
    let p0 = policy(
        OnLimit::EvictOldest,
        vec![plan("p", 4, vec![matching("none", "quality", &["8k"], 0)])],
        "p",
    );
    refused(acc.start(start("x", None, &[("quality", "8k")]), at(7), &p0));
}

#[test]
fn content_and_tags_are_fixed_for_the_life_of_a_stream() {
    let p = Policy::default();
    let mut acc = Account::default();
    granted(acc.start(start("a", Some("m1"), &[("quality", "hd")]), at(0), &p));
    let before = acc.clone();
    for other in [
        start("a", Some("m2"), &[("quality", "hd")]),
        start("a", None, &[("quality", "hd")]),
        start("a", Some("m1"), &[("quality", "uhd")]),
        start("a", Some("m1"), &[]),
    ] {
        assert_eq!(acc.start(other, at(1), &p), StartDecision::StreamIdConflict);
    }
    assert_eq!(acc, before);
    assert!(matches!(
        acc.start(start("a", Some("m1"), &[("quality", "hd")]), at(1), &p),
        StartDecision::AlreadyLive { .. }
    ));
}

#[test]
fn a_plan_change_revokes_the_excess_as_a_lowered_limit_does() {
    let basic = plan("basic", 1, vec![]);
    let titles = plan("titles", 3, vec![per("same-title", "content_id", 1)]);
    let p = policy(
        OnLimit::Reject,
        vec![plan("big", 3, vec![]), basic, titles],
        "big",
    );
    let mut acc = Account::default();
    for (i, id) in ["a", "b", "c"].iter().enumerate() {
        granted(acc.start(start(id, Some("m"), &[]), at(i as u64), &p));
    }
    // An admin assigns a plan allowing one of a title: the newest go.
    let revoked = acc.set_plan(Some(name("titles")), at(5), &p);
    assert_eq!(revoked, [sid("c"), sid("b")]);
    assert_eq!(acc.view(at(5), &p).plan_source, PlanSource::Override);
    // A claimed plan counts below the admin's.
    let claimed = StartRequest {
        plan: Some(name("basic")),
        ..start("d", Some("n"), &[])
    };
    granted(acc.start(claimed, at(6), &p));
    let view = acc.view(at(6), &p);
    assert_eq!(view.plan.as_ref().unwrap().name.as_str(), "titles");
    // Clearing the admin's plan leaves the claimed one, limit 1: the newest go.
    let revoked = acc.set_plan(None, at(7), &p);
    assert_eq!(revoked, [sid("d")]);
    let view = acc.view(at(7), &p);
    assert_eq!(
        (view.plan.unwrap().name.as_str(), view.plan_source),
        ("basic", PlanSource::Claim)
    );
    // An edited file applies at the next decision (here a stop).
    let p2 = policy(OnLimit::Reject, vec![plan("basic", 0, vec![])], "basic");
    assert!(!acc.end(&sid("zzz"), EndReason::Stopped, at(8), &p2));
    assert!(acc.live.is_empty());
    assert_eq!(acc.ended.last().unwrap().reason, EndReason::Revoked);
}

#[test]
fn heartbeats_never_evaluate_rules() {
    let p = one_title_rule(2);
    let mut acc = Account::default();
    for id in ["a", "b"] {
        granted(acc.start(start(id, Some("m"), &[]), at(0), &p));
    }
    let tighter = one_title_rule(1);
    // Over the tightened rule, both still renew until the next decision.
    for id in ["a", "b"] {
        assert!(matches!(
            acc.heartbeat(&sid(id), at(1), &tighter),
            HeartbeatDecision::Renewed(_)
        ));
    }
    assert_eq!(acc.settle(at(2), &tighter), [sid("b")]);
}

#[test]
fn a_stop_on_an_account_checked_against_the_plans_in_use_still_applies_expiry() {
    let p = one_title_rule(3);
    let mut acc = Account::default();
    granted(acc.start(start("a", Some("m"), &[]), at(0), &p));
    granted(acc.start(start("b", Some("m"), &[]), at(60), &p));
    let book = p.plans.as_ref().unwrap();
    assert_eq!(acc.settled.generation, book.generation_in_use());
    // "a" ran out at 90 s; the stop of "b" at 95 s buries it as expired.
    assert!(acc.end(&sid("b"), EndReason::Stopped, at(95), &p));
    assert!(acc.live.is_empty());
    let reasons: Vec<_> = acc
        .ended
        .iter()
        .map(|t| (t.id.as_str(), t.reason))
        .collect();
    assert_eq!(
        reasons,
        [("a", EndReason::Expired), ("b", EndReason::Stopped)]
    );
}

#[test]
fn a_stop_applies_plans_replaced_in_the_same_book() {
    let p = one_title_rule(3);
    let mut acc = Account::default();
    for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
        granted(acc.start(start(id, Some("m"), &[]), at(i as u64), &p));
    }
    let book = p.plans.as_ref().unwrap();
    book.replace(Plans::new(title_plan(1), &name("p")).unwrap());
    assert_ne!(acc.settled.generation, book.generation_in_use());
    // The stop checks the new rule first: the newest two of the title go,
    // "c" among them, so the stop itself finds nothing live to end.
    assert!(!acc.end(&sid("c"), EndReason::Stopped, at(5), &p));
    assert_eq!(ids(&acc.live), ["a"]);
    assert!(
        acc.ended
            .iter()
            .all(|t| t.reason == EndReason::Revoked && t.id.as_str() != "a")
    );
    assert_eq!(acc.settled.generation, book.generation_in_use());
}
