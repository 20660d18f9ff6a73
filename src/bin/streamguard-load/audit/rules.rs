//! The rules of an account's plan, checked on what the tool saw: no rule's
//! scope ever holds more certainly-live streams than its max, and a 409
//! that names a rule is one the plan has, with that rule's max, listing
//! streams that are in the refused start's scope.

use serde_json::Value;
use streamguard::domain::plan::Attrs;
use streamguard::domain::{ACCOUNT_RULE, ContentId, Plan, Rule, Tags};

/// What a stream was started with, in the service's own types.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamAttrs {
    pub content: Option<ContentId>,
    pub tags: Tags,
}

impl StreamAttrs {
    pub fn attrs(&self) -> Attrs<'_> {
        Attrs {
            content_id: self.content.as_ref(),
            tags: &self.tags,
        }
    }

    /// A stream as a 409 lists it (`content_id`, `tags`).
    fn listed(stream: &Value) -> Option<Self> {
        let content = match stream["content_id"].as_str() {
            Some(c) => Some(ContentId::parse(c).ok()?),
            None => None,
        };
        let pairs: Vec<(&str, &str)> = stream["tags"]
            .as_object()
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
                    .collect()
            })
            .unwrap_or_default();
        Some(Self {
            content,
            tags: Tags::from_pairs(pairs).ok()?,
        })
    }
}

/// The streams of the first group of `rule` that holds more than its max
/// among `live` (stream id, attributes), sorted.
pub fn overfull<'a>(rule: &Rule, live: &[(&'a str, &StreamAttrs)]) -> Option<Vec<&'a str>> {
    let max = rule.max.get() as usize;
    live.iter().find_map(|(_, s)| {
        let group = rule.group_of(s.attrs())?;
        let mut members: Vec<&str> = live
            .iter()
            .filter(|(_, t)| group.contains(t.attrs()))
            .map(|(id, _)| *id)
            .collect();
        (members.len() > max).then(|| {
            members.sort_unstable();
            members
        })
    })
}

/// What is wrong with a 409 `stream-limit-reached` refusing a start (or a
/// resume) with attributes `start` on an account with `plan`.
/// `account_limit`: the account-wide limit the tool knows, if any;
/// `known`: what the tool started a stream with.
pub fn check_refusal<'k>(
    plan: &Plan,
    account_limit: Option<u32>,
    start: &StreamAttrs,
    body: &Value,
    known: impl Fn(&str) -> Option<&'k StreamAttrs>,
) -> Vec<String> {
    let Some(first) = body["rule"].as_str() else {
        return Vec::new();
    };
    let conflicts = body["conflicts"].as_array().cloned().unwrap_or_default();
    let mut wrong = Vec::new();
    if conflicts.first().and_then(|c| c["rule"].as_str()) != Some(first) {
        wrong.push(format!(
            "409 names rule {first}, but its conflicts do not begin with it"
        ));
    }
    for conflict in &conflicts {
        let rule_name = conflict["rule"].as_str().unwrap_or_default();
        let rule = plan.rules.iter().find(|r| &*r.name == rule_name);
        let expected = match (rule_name, rule) {
            (ACCOUNT_RULE, _) => account_limit,
            (_, Some(rule)) => Some(rule.max.get()),
            (_, None) => {
                wrong.push(format!(
                    "409 names rule {rule_name:?}, which plan {} does not have",
                    plan.name
                ));
                continue;
            }
        };
        let limit = conflict["limit"].as_u64();
        if let Some(expected) = expected
            && limit != Some(u64::from(expected))
        {
            wrong.push(format!(
                "409 by rule {rule_name} says its limit is {limit:?}, plan {} says {expected}",
                plan.name
            ));
        }
        let streams = conflict["streams"].as_array().cloned().unwrap_or_default();
        let active = conflict["active"].as_u64().unwrap_or_default();
        if active != streams.len() as u64 || limit.is_some_and(|l| active < l) {
            wrong.push(format!(
                "409 by rule {rule_name}: {active} active, {} listed, limit {limit:?}: not full",
                streams.len()
            ));
        }
        let Some(rule) = rule else { continue };
        let Some(group) = rule.group_of(start.attrs()) else {
            wrong.push(format!(
                "409 by rule {rule_name}, which does not count the refused start"
            ));
            continue;
        };
        for listed in &streams {
            let id = listed["id"].as_str().unwrap_or_default();
            let seen = StreamAttrs::listed(listed);
            if let (Some(seen), Some(started)) = (&seen, known(id))
                && seen != started
            {
                wrong.push(format!(
                    "409 lists stream {id} with other attributes than it was started with"
                ));
            }
            let in_scope = seen
                .as_ref()
                .or(known(id))
                .map(|s| group.contains(s.attrs()));
            if in_scope == Some(false) {
                wrong.push(format!(
                    "409 by rule {rule_name} lists stream {id}, which is outside the start's scope"
                ));
            }
        }
    }
    wrong
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn premium() -> std::sync::Arc<Plan> {
        let text = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/plans.toml"
        ));
        let plans = streamguard::plans::parse(text).unwrap();
        plans
            .all()
            .iter()
            .find(|p| p.name.as_str() == "premium")
            .unwrap()
            .clone()
    }

    fn attrs(content: &str, tags: &[(&str, &str)]) -> StreamAttrs {
        StreamAttrs {
            content: Some(ContentId::parse(content).unwrap()),
            tags: Tags::from_pairs(tags.iter().copied()).unwrap(),
        }
    }

    fn refusal(rule: &str, limit: u32, streams: Value) -> Value {
        let n = streams.as_array().unwrap().len();
        json!({"rule": rule, "limit": limit, "active": n, "streams": streams,
               "conflicts": [{"rule": rule, "limit": limit, "active": n, "streams": streams}]})
    }

    #[test]
    fn a_rule_scope_over_its_max_is_found() {
        let plan = premium();
        let uhd = plan.rules.iter().find(|r| &*r.name == "uhd").unwrap();
        let (a, b, c) = (
            attrs("t1", &[("quality", "uhd"), ("channel", "c1")]),
            attrs("t2", &[("quality", "uhd"), ("channel", "c2")]),
            attrs("t3", &[("quality", "uhd"), ("channel", "c3")]),
        );
        assert_eq!(overfull(uhd, &[("a", &a), ("b", &b)]), None);
        assert_eq!(
            overfull(uhd, &[("c", &c), ("a", &a), ("b", &b)]),
            Some(vec!["a", "b", "c"])
        );
        let per_channel = plan
            .rules
            .iter()
            .find(|r| &*r.name == "per-channel")
            .unwrap();
        assert_eq!(
            overfull(per_channel, &[("a", &a), ("b", &b), ("c", &c)]),
            None
        );
    }

    #[test]
    fn a_consistent_409_passes_and_an_unknown_rule_or_max_does_not() {
        let plan = premium();
        let live = attrs("t1", &[("channel", "dmax")]);
        let start = attrs("t2", &[("channel", "tlc")]);
        let listed = json!([{"id": "a", "content_id": "t1", "tags": {"channel": "dmax"}}]);
        let known = |id: &str| (id == "a").then_some(&live);
        let ok = refusal("discovery", 1, listed.clone());
        assert_eq!(
            check_refusal(&plan, Some(4), &start, &ok, known),
            Vec::<String>::new()
        );

        let unknown = refusal("sports", 1, listed.clone());
        let wrong = check_refusal(&plan, Some(4), &start, &unknown, known);
        assert!(wrong[0].contains("does not have"), "{wrong:?}");

        // The service's account-wide limit is 2 where the plan says 4.
        let streams = json!([listed[0], listed[0]]);
        let wrong = check_refusal(
            &plan,
            Some(4),
            &start,
            &refusal("account", 2, streams),
            known,
        );
        assert!(wrong[0].contains("plan premium says 4"), "{wrong:?}");

        let other_max = refusal("discovery", 2, json!([listed[0], listed[0]]));
        let wrong = check_refusal(&plan, Some(4), &start, &other_max, known);
        assert!(wrong[0].contains("plan premium says 1"), "{wrong:?}");
    }

    #[test]
    fn a_409_listing_streams_outside_the_scope_fails() {
        let plan = premium();
        let start = attrs("t2", &[("channel", "tlc")]);
        let outside = json!([{"id": "a", "content_id": "t1", "tags": {"channel": "zdf"}}]);
        let wrong = check_refusal(
            &plan,
            Some(4),
            &start,
            &refusal("discovery", 1, outside),
            |_| None,
        );
        assert!(wrong[0].contains("outside the start's scope"), "{wrong:?}");
    }
}
