//! The store contract for plans and rules: every rule form decided in the
//! same atomic step as the limit, on every backend.

use std::sync::Arc;

use streamguard::domain::{
    ContentId, EndReason, HeartbeatDecision, OnLimit, PlanBook, PlanName, PlanSource, Policy,
    Refusal, StartDecision, StartRequest, StreamId, Tags,
};

use crate::cases::user;
use crate::harness::{Make, policy};

/// The plans of the README.
pub const PLANS: &str = include_str!("../fixtures/plans.toml");

pub fn with_plans(on_limit: OnLimit) -> Policy {
    let plans = streamguard::plans::parse(PLANS).expect("the README's plans parse");
    Policy {
        plans: Some(Arc::new(PlanBook::new(plans))),
        ..policy(3, on_limit)
    }
}

fn sid(s: &str) -> StreamId {
    StreamId::parse(s).unwrap()
}

fn plan(s: &str) -> PlanName {
    PlanName::parse(s).unwrap()
}

fn start(id: &str, content: Option<&str>, tags: &[(&str, &str)]) -> StartRequest {
    StartRequest {
        content_id: content.map(|c| ContentId::parse(c).unwrap()),
        tags: Tags::from_pairs(tags.iter().copied()).unwrap(),
        ..StartRequest::new(sid(id))
    }
}

fn granted(d: StartDecision) -> streamguard::domain::Admission {
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

fn rules(r: &Refusal) -> Vec<(String, u32, Vec<String>)> {
    r.conflicts
        .iter()
        .map(|c| {
            (
                c.rule.to_string(),
                c.limit.get(),
                c.live.iter().map(|l| l.id.to_string()).collect(),
            )
        })
        .collect()
}

pub async fn a_per_content_rule_refuses_a_third_stream_of_a_title(make: Make) {
    let h = make(with_plans(OnLimit::Reject)).await;
    let u = user("same-title");
    granted(
        h.store
            .start(&u, start("a", Some("m1"), &[]))
            .await
            .unwrap(),
    );
    granted(
        h.store
            .start(&u, start("b", Some("m1"), &[]))
            .await
            .unwrap(),
    );
    let r = refused(
        h.store
            .start(&u, start("c", Some("m1"), &[]))
            .await
            .unwrap(),
    );
    assert_eq!(
        rules(&r),
        [("same-title".into(), 2, vec!["a".into(), "b".into()])]
    );
    granted(
        h.store
            .start(&u, start("c", Some("m2"), &[]))
            .await
            .unwrap(),
    );
    let r = refused(
        h.store
            .start(&u, start("d", Some("m1"), &[]))
            .await
            .unwrap(),
    );
    assert_eq!(
        rules(&r),
        [
            (
                "account".into(),
                3,
                vec!["a".into(), "b".into(), "c".into()]
            ),
            ("same-title".into(), 2, vec!["a".into(), "b".into()]),
        ]
    );
    assert_eq!(h.store.view(&u).await.unwrap().live.len(), 3);
}

pub async fn concurrent_starts_of_one_title_grant_exactly_the_rule(make: Make) {
    let h = make(with_plans(OnLimit::Reject)).await;
    let u = user("title-race");
    // Two instances when the store is shared, as two processes would be.
    let second = match &h.reopen {
        Some(reopen) => reopen().await,
        None => h.store.clone(),
    };
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let store = if i % 2 == 0 {
                h.store.clone()
            } else {
                second.clone()
            };
            let u = u.clone();
            tokio::spawn(async move {
                store
                    .start(&u, start(&format!("s{i}"), Some("final"), &[]))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut grants = 0;
    for task in tasks {
        match task.await.unwrap() {
            StartDecision::Granted(_) => grants += 1,
            StartDecision::LimitReached(r) => assert_eq!(&*r.first().rule, "same-title"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(grants, 2);
    assert_eq!(h.store.view(&u).await.unwrap().live.len(), 2);
}

pub async fn match_rules_and_required_attributes_hold(make: Make) {
    let h = make(with_plans(OnLimit::Reject)).await;
    let u = user("premium");
    h.store.set_plan(&u, Some(plan("premium"))).await.unwrap();
    match h.store.start(&u, start("x", Some("m"), &[])).await.unwrap() {
        StartDecision::MissingAttribute { rule, attribute } => {
            assert_eq!((&*rule, attribute.as_str()), ("per-channel", "channel"));
        }
        other => panic!("{other:?}"),
    }
    let uhd = |id: &str, ch: &str| start(id, Some(id), &[("channel", ch), ("quality", "uhd")]);
    granted(h.store.start(&u, uhd("a", "dmax")).await.unwrap());
    granted(h.store.start(&u, uhd("b", "zdf")).await.unwrap());
    let r = refused(h.store.start(&u, uhd("c", "tlc")).await.unwrap());
    assert_eq!(
        rules(&r),
        [
            ("uhd".into(), 2, vec!["a".into(), "b".into()]),
            ("discovery".into(), 1, vec!["a".into()]),
        ]
    );
    let r = refused(
        h.store
            .start(&u, start("d", Some("d"), &[("channel", "zdf")]))
            .await
            .unwrap(),
    );
    assert_eq!(rules(&r), [("per-channel".into(), 1, vec!["b".into()])]);
    let view = h.store.view(&u).await.unwrap();
    assert_eq!(view.plan.unwrap().name.as_str(), "premium");
    assert_eq!(view.plan_source, PlanSource::Override);
    let tags: Vec<_> = view.live[0].tags.iter().collect();
    assert_eq!(tags, [("channel", "dmax"), ("quality", "uhd")]);
}

pub async fn evict_oldest_evicts_within_the_refusing_scope(make: Make) {
    let h = make(with_plans(OnLimit::EvictOldest)).await;
    let u = user("evict-scope");
    granted(
        h.store
            .start(&u, start("other", Some("m2"), &[]))
            .await
            .unwrap(),
    );
    granted(
        h.store
            .start(&u, start("a", Some("m1"), &[]))
            .await
            .unwrap(),
    );
    granted(
        h.store
            .start(&u, start("b", Some("m1"), &[]))
            .await
            .unwrap(),
    );
    let g = granted(
        h.store
            .start(&u, start("c", Some("m1"), &[]))
            .await
            .unwrap(),
    );
    assert_eq!(
        g.evicted,
        [sid("a")],
        "the oldest of the title, not of the account"
    );
    assert_eq!(
        h.store.heartbeat(&u, &sid("a")).await.unwrap(),
        HeartbeatDecision::Ended(EndReason::Evicted)
    );
    assert!(matches!(
        h.store.heartbeat(&u, &sid("other")).await.unwrap(),
        HeartbeatDecision::Renewed(_)
    ));
}

pub async fn a_plan_change_revokes_what_the_new_plan_does_not_allow(make: Make) {
    let h = make(with_plans(OnLimit::Reject)).await;
    let u = user("downgrade");
    for id in ["a", "b", "c"] {
        granted(h.store.start(&u, start(id, Some(id), &[])).await.unwrap());
    }
    let revoked = h.store.set_plan(&u, Some(plan("basic"))).await.unwrap();
    assert_eq!(revoked, [sid("c"), sid("b")]);
    assert_eq!(
        h.store.heartbeat(&u, &sid("c")).await.unwrap(),
        HeartbeatDecision::Ended(EndReason::Revoked)
    );
    let view = h.store.view(&u).await.unwrap();
    assert_eq!(view.limit.get(), 1);
    assert_eq!(view.plan.unwrap().name.as_str(), "basic");
    // A claimed plan sits below the admin's; clearing the admin's restores it.
    let claimed = StartRequest {
        plan: Some(plan("premium")),
        ..start("d", Some("d"), &[("channel", "ard")])
    };
    refused(h.store.start(&u, claimed).await.unwrap());
    assert!(h.store.set_plan(&u, None).await.unwrap().is_empty());
    let view = h.store.view(&u).await.unwrap();
    assert_eq!(
        (
            view.plan.unwrap().name.as_str(),
            view.plan_source,
            view.limit.get()
        ),
        ("premium", PlanSource::Claim, 4)
    );
}

pub async fn tags_are_kept_and_fixed_for_the_life_of_a_stream(make: Make) {
    let h = make(policy(3, OnLimit::Reject)).await;
    let u = user("tags");
    let live = start(
        "a",
        Some("m"),
        &[("kind", "live"), ("channel", "eurosport")],
    );
    let g = granted(h.store.start(&u, live.clone()).await.unwrap());
    assert_eq!(g.stream.tags, live.tags);
    assert!(matches!(
        h.store.start(&u, live.clone()).await.unwrap(),
        StartDecision::AlreadyLive { .. }
    ));
    for other in [
        start("a", Some("m"), &[("kind", "vod")]),
        start(
            "a",
            Some("n"),
            &[("kind", "live"), ("channel", "eurosport")],
        ),
        start("a", Some("m"), &[]),
    ] {
        assert_eq!(
            h.store.start(&u, other).await.unwrap(),
            StartDecision::StreamIdConflict
        );
    }
    match h.store.heartbeat(&u, &sid("a")).await.unwrap() {
        HeartbeatDecision::Renewed(lease) => assert_eq!(lease.tags, live.tags),
        other => panic!("{other:?}"),
    }
    assert_eq!(h.store.view(&u).await.unwrap().live[0].tags, live.tags);
}
