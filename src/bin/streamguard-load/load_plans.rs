//! `--plans FILE` and `--plan-header NAME`: the plans the service enforces,
//! read with the service's own parser, which plan each simulated account
//! has, and the `content_id` and tags its starts carry — drawn from the
//! values the rules name, so that rules refuse sometimes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use streamguard::domain::{Attr, ContentId, Limit, Plan, Plans, Scope, Tags};

use crate::audit::StreamAttrs;

/// Titles a start picks from when a rule counts `content_id`: few, so two
/// devices of an account often pick the same one.
const TITLES: u32 = 4;

/// Titles otherwise: collisions are rare, as on a real service.
const MANY_TITLES: u32 = 20_000;

/// A tag that no rule requires is left out of this share of starts.
const TAG_OMITTED: f64 = 0.2;

pub struct LoadPlans {
    plans: Plans,
    /// With `--plan-header`: the header's name; accounts take the file's
    /// plans in turn. Without: every account has the file's default.
    header: Option<&'static str>,
    /// How many titles a start picks from.
    titles: u32,
    /// Every tag a rule names: its values, and whether a rule requires it.
    tags: BTreeMap<String, (Vec<String>, bool)>,
}

/// A start's attributes: for its JSON body and for the audit.
pub struct StartAttrs {
    pub json: serde_json::Value,
    pub attrs: Arc<StreamAttrs>,
}

impl LoadPlans {
    /// No `--plans`: the implicit plan, no rules, no tags (the service's
    /// limit is read from its answers).
    pub fn implicit() -> Self {
        Self {
            plans: Plans::implicit(Limit::new(3).expect("3 is a limit")),
            header: None,
            titles: MANY_TITLES,
            tags: BTreeMap::new(),
        }
    }

    pub fn load(path: &Path, header: Option<String>) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let plans = streamguard::plans::parse(&text)
            .map_err(|e| anyhow::anyhow!("--plans {}: {e}", path.display()))?;
        let mut titles = MANY_TITLES;
        let mut tags: BTreeMap<String, (Vec<String>, bool)> = BTreeMap::new();
        let mut add = |attr: &Attr, values: Vec<String>, required: bool| match attr {
            Attr::Content => titles = TITLES,
            Attr::Tag(name) => {
                let entry = tags.entry(name.to_string()).or_default();
                for v in values {
                    if !entry.0.contains(&v) {
                        entry.0.push(v);
                    }
                }
                entry.1 |= required;
            }
        };
        for plan in plans.all() {
            for rule in &plan.rules {
                match &rule.scope {
                    Scope::Per(attr) => {
                        let values = (1..=3).map(|i| format!("{}-{i}", attr.name())).collect();
                        add(attr, values, rule.required);
                    }
                    Scope::Match(conds) => {
                        for (attr, listed) in conds {
                            let mut values: Vec<String> =
                                listed.iter().map(|v| v.as_str().to_owned()).collect();
                            values.push(format!("{}-other", attr.name()));
                            add(attr, values, rule.required);
                        }
                    }
                }
            }
        }
        // The service refuses a header name it cannot parse; so does the tool.
        let header = header
            .map(|h| -> anyhow::Result<&'static str> {
                hyper::header::HeaderName::try_from(h.as_str())
                    .with_context(|| format!("--plan-header {h:?}"))?;
                Ok(Box::leak(h.to_ascii_lowercase().into_boxed_str()))
            })
            .transpose()?;
        Ok(Self {
            plans,
            header,
            titles,
            tags,
        })
    }

    /// The plan simulated account `account` has.
    pub fn plan_of(&self, account: u32) -> &Arc<Plan> {
        match self.header {
            Some(_) => {
                let all = self.plans.all();
                &all[account as usize % all.len()]
            }
            None => self.plans.default_plan(),
        }
    }

    /// Whether the service's plans are the implicit one (no `--plans`).
    pub fn is_implicit(&self) -> bool {
        self.plans.is_implicit()
    }

    /// The header naming the account's plan, when the tool sends one.
    pub fn header(&self, account: u32) -> Option<(&'static str, String)> {
        let name = self.header?;
        Some((name, self.plan_of(account).name.to_string()))
    }

    /// The `content_id` and tags of a new start.
    pub fn draw(&self, rng: &mut fastrand::Rng) -> StartAttrs {
        let content_id = format!("title-{:06}", rng.u32(0..self.titles));
        let mut tags = serde_json::Map::new();
        for (name, (values, required)) in &self.tags {
            if *required || rng.f64() >= TAG_OMITTED {
                let value = &values[rng.usize(0..values.len())];
                tags.insert(name.clone(), value.clone().into());
            }
        }
        let pairs: Vec<(&str, &str)> = tags
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or_default()))
            .collect();
        let attrs = StreamAttrs {
            content: Some(ContentId::parse(&content_id).expect("a valid content id")),
            tags: Tags::from_pairs(pairs).expect("tags named by a plan are valid"),
        };
        let mut json = serde_json::json!({ "content_id": content_id });
        if !tags.is_empty() {
            json["tags"] = tags.into();
        }
        StartAttrs {
            json,
            attrs: Arc::new(attrs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> LoadPlans {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/plans.toml");
        LoadPlans::load(Path::new(path), Some("X-Plan".into())).unwrap()
    }

    #[test]
    fn accounts_take_the_plans_in_turn_and_say_so_in_the_header() {
        let plans = fixture();
        let names: Vec<String> = (0..4).map(|a| plans.header(a).unwrap().1).collect();
        assert_eq!(names, ["basic", "premium", "standard", "basic"]);
        assert_eq!(plans.header(0).unwrap().0, "x-plan");
    }

    #[test]
    fn starts_carry_the_values_rules_name_and_every_required_tag() {
        let plans = fixture();
        let mut rng = fastrand::Rng::with_seed(1);
        let starts: Vec<StartAttrs> = (0..400).map(|_| plans.draw(&mut rng)).collect();
        let tag = |s: &StartAttrs, name: &str| s.json["tags"][name].as_str().map(String::from);
        // per-channel is required: every start names a channel.
        assert!(starts.iter().all(|s| tag(s, "channel").is_some()));
        assert!(
            starts
                .iter()
                .any(|s| tag(s, "quality").as_deref() == Some("uhd"))
        );
        assert!(starts.iter().any(|s| tag(s, "quality").is_none()));
        assert!(
            starts
                .iter()
                .any(|s| tag(s, "channel").as_deref() == Some("dmax"))
        );
        let titles: std::collections::BTreeSet<_> = starts
            .iter()
            .map(|s| s.json["content_id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(titles.len(), TITLES as usize, "same-title collides often");
    }

    #[test]
    fn a_file_the_service_would_refuse_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "default = \"gold\"\n[plans.basic]\nlimit = 1\n").unwrap();
        let err = LoadPlans::load(&path, None).err().unwrap().to_string();
        assert!(err.contains("default"), "{err}");
    }
}
