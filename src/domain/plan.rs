//! Plans: an account-wide limit plus rules over stream attributes ("at most
//! 2 on the same title", "1 per live channel", "2 in UHD"). The types and
//! how a rule scopes streams; [`super::rules`] applies them in a decision.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use super::account::Lease;
use super::ids::{ContentId, PlanName, TagValue};
use super::policy::Limit;
use super::tags::{CONTENT_ID, TagName, TagProbe, Tags};

/// The name under which a refusal by the account-wide limit is reported.
pub const ACCOUNT_RULE: &str = "account";

/// What a rule looks at: the stream's `content_id` or one of its tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attr {
    Content,
    Tag(TagName),
}

impl Attr {
    pub fn parse(name: &str) -> Result<Self, String> {
        if name == CONTENT_ID {
            return Ok(Attr::Content);
        }
        TagName::parse(name)
            .map(Attr::Tag)
            .map_err(|e| e.to_string())
    }

    pub fn name(&self) -> &str {
        match self {
            Attr::Content => CONTENT_ID,
            Attr::Tag(t) => t.as_str(),
        }
    }

    /// The attribute's value on a stream, if it has one.
    pub fn value_of<'a>(&self, s: Attrs<'a>) -> Option<&'a str> {
        match self {
            Attr::Content => s.content_id.map(ContentId::as_str),
            Attr::Tag(name) => s.tags.get(name.as_str()),
        }
    }
}

/// The attributes of one stream, live or asking to start.
#[derive(Clone, Copy, Debug)]
pub struct Attrs<'a> {
    pub content_id: Option<&'a ContentId>,
    pub tags: &'a Tags,
}

impl<'a> From<&'a Lease> for Attrs<'a> {
    fn from(l: &'a Lease) -> Self {
        Attrs {
            content_id: l.content_id.as_ref(),
            tags: &l.tags,
        }
    }
}

/// Which streams a rule counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// At most `max` streams share one value of the attribute; streams
    /// without it are not counted.
    Per(Attr),
    /// At most `max` streams match: each named attribute has one of its
    /// listed values.
    Match(Vec<(Attr, Vec<TagValue>)>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub name: Arc<str>,
    pub scope: Scope,
    pub max: Limit,
    /// A start without the rule's attribute(s) is refused (400).
    pub required: bool,
}

/// The streams one rule counts together with a given stream. What a group
/// looks for is held as text, read out of the rule and the stream once: a
/// start compares it with every live stream.
#[derive(Clone, Copy, Debug)]
pub enum Group<'r> {
    /// The streams with this `content_id`.
    SameContent(&'r str),
    /// The streams whose tag has this value (the pair, with its
    /// signature bits: see [`Tags`]).
    SameTag(TagProbe<'r>),
    /// The streams that match every condition of a `match` rule.
    Matching(&'r [(Attr, Vec<TagValue>)]),
}

impl Group<'_> {
    pub fn contains(&self, s: Attrs<'_>) -> bool {
        match *self {
            Group::SameContent(value) => s.content_id.is_some_and(|c| c.as_str() == value),
            Group::SameTag(probe) => s.tags.has_probe(&probe),
            Group::Matching(conds) => matches_all(conds, s),
        }
    }

    /// How many of `streams` are in the group: [`Group::contains`] with
    /// the kind of group decided once, outside the loop, so each kind
    /// counts in a loop of its own (a start counts over every live stream).
    pub fn count<'l>(&self, streams: impl Iterator<Item = &'l Lease>) -> usize {
        let streams = streams.map(Attrs::from);
        match *self {
            Group::SameContent(value) => streams
                .filter(|s| s.content_id.is_some_and(|c| c.as_str() == value))
                .count(),
            Group::SameTag(probe) => streams.filter(|s| s.tags.has_probe(&probe)).count(),
            Group::Matching(conds) => streams.filter(|s| matches_all(conds, *s)).count(),
        }
    }
}

fn matches_all(conds: &[(Attr, Vec<TagValue>)], s: Attrs<'_>) -> bool {
    conds.iter().all(|(attr, values)| {
        attr.value_of(s)
            .is_some_and(|v| values.iter().any(|w| w.as_str() == v))
    })
}

impl Rule {
    /// The group this rule counts `s` in, or `None` when the rule does not
    /// apply to it.
    pub fn group_of<'r>(&'r self, s: Attrs<'r>) -> Option<Group<'r>> {
        match &self.scope {
            Scope::Per(attr) => attr.value_of(s).map(|value| match attr {
                Attr::Content => Group::SameContent(value),
                Attr::Tag(name) => Group::SameTag(TagProbe::new(name.as_str(), value)),
            }),
            Scope::Match(conds) => matches_all(conds, s).then_some(Group::Matching(conds)),
        }
    }

    /// The first attribute this rule requires and `s` lacks.
    pub fn missing_attribute(&self, s: Attrs<'_>) -> Option<&str> {
        if !self.required {
            return None;
        }
        match &self.scope {
            Scope::Per(attr) => attr.value_of(s).is_none().then(|| attr.name()),
            Scope::Match(conds) => conds
                .iter()
                .map(|(a, _)| a)
                .find(|a| a.value_of(s).is_none())
                .map(Attr::name),
        }
    }

    /// The groups this rule counts among `live`, as indices into it: one
    /// per value for a `per` rule, the matching streams for a `match` rule;
    /// ordered by their first member, members in `live`'s order. Groups
    /// are never empty.
    pub fn groups(&self, live: &[Lease]) -> Vec<Vec<usize>> {
        match &self.scope {
            Scope::Per(attr) => {
                let mut members: Vec<(&str, usize)> = live
                    .iter()
                    .enumerate()
                    .filter_map(|(i, l)| attr.value_of(l.into()).map(|v| (v, i)))
                    .collect();
                members.sort_unstable();
                let mut groups: Vec<Vec<usize>> = members
                    .chunk_by(|a, b| a.0 == b.0)
                    .map(|run| run.iter().map(|m| m.1).collect())
                    .collect();
                groups.sort_unstable_by_key(|g| g[0]);
                groups
            }
            Scope::Match(conds) => {
                let members: Vec<usize> = (0..live.len())
                    .filter(|&i| matches_all(conds, (&live[i]).into()))
                    .collect();
                if members.is_empty() {
                    Vec::new()
                } else {
                    vec![members]
                }
            }
        }
    }

    /// How many of `live` fall in the fullest group of this rule.
    pub fn in_use(&self, live: &[Lease]) -> usize {
        self.groups(live).iter().map(Vec::len).max().unwrap_or(0)
    }

    /// The first group (by first member) holding more than `max` of
    /// `live`: what [`Rule::groups`] would find, without sorting the values
    /// themselves. Every decision but a heartbeat asks it of every rule, so
    /// a `per` rule first counts values by a 64-bit hash (integer sort) and
    /// only a value whose hash is seen more than `max` times is compared as
    /// text (BENCHMARKS.md, plans: start + stop at 1 000 streams).
    pub fn overfull_group(&self, live: &[Lease]) -> Option<Vec<usize>> {
        let max = self.max.get() as usize;
        let attr = match &self.scope {
            Scope::Per(attr) => attr,
            Scope::Match(conds) => {
                // One group: count before collecting anything.
                let matching = live.iter().filter(|l| matches_all(conds, (*l).into()));
                if matching.count() <= max {
                    return None;
                }
                return self.groups(live).into_iter().next();
            }
        };
        let mut hashed: Vec<(u64, usize)> = Vec::with_capacity(live.len());
        hashed.extend(
            live.iter()
                .enumerate()
                .filter_map(|(i, l)| attr.value_of(l.into()).map(|v| (fnv1a(v), i))),
        );
        if hashed.len() <= max {
            return None;
        }
        hashed.sort_unstable();
        let mut found: Option<Vec<usize>> = None;
        for run in hashed.chunk_by(|a, b| a.0 == b.0) {
            if run.len() <= max {
                continue;
            }
            // Same hash: split by the value itself (a collision is rare).
            let mut members: Vec<(&str, usize)> = run
                .iter()
                .map(|&(_, i)| (attr.value_of((&live[i]).into()).unwrap_or(""), i))
                .collect();
            members.sort_unstable();
            for group in members.chunk_by(|a, b| a.0 == b.0) {
                let first = group[0].1;
                if group.len() > max && found.as_ref().is_none_or(|f| first < f[0]) {
                    found = Some(group.iter().map(|m| m.1).collect());
                }
            }
        }
        found
    }
}

/// FNV-1a: a fast, stable 64-bit hash of a short string.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A plan: the account-wide limit and the rules under it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub name: PlanName,
    pub limit: Limit,
    pub rules: Vec<Rule>,
}

/// Where an account's plan comes from, strongest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanSource {
    /// Set for this account through the admin API.
    Override,
    /// Named by the caller's token (`--jwt-plan-claim`) or by the gateway's
    /// header (`--plan-header`) at the account's last start.
    Claim,
    /// The plans file's `default`, or the implicit plan without `--plans`.
    Default,
}

/// Every plan the service knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plans {
    plans: Vec<Arc<Plan>>,
    default: usize,
    /// No `--plans`: one plan, `--default-limit` and no rules.
    implicit: bool,
    /// Which plans these are: a number no other plans put in a
    /// [`PlanBook`] in this process had (0 until a book holds them).
    generation: u32,
}

impl Plans {
    /// The plan of a service without `--plans`.
    pub fn implicit(default_limit: Limit) -> Self {
        Self {
            plans: vec![Arc::new(Plan {
                name: PlanName::parse("default").expect("a valid name"),
                limit: default_limit,
                rules: Vec::new(),
            })],
            default: 0,
            implicit: true,
            generation: 0,
        }
    }

    /// Plans read from a file; `default` must name one of them.
    pub fn new(plans: Vec<Plan>, default: &PlanName) -> Result<Self, String> {
        let default = plans
            .iter()
            .position(|p| &p.name == default)
            .ok_or_else(|| format!("default plan {default} is not defined"))?;
        Ok(Self {
            plans: plans.into_iter().map(Arc::new).collect(),
            default,
            implicit: false,
            generation: 0,
        })
    }

    pub fn is_implicit(&self) -> bool {
        self.implicit
    }

    /// See the field; accounts remember it to skip re-checking rules that
    /// have not changed ([`super::account::SettledFor`]).
    pub fn generation(&self) -> u32 {
        self.generation
    }

    pub fn get(&self, name: &PlanName) -> Option<&Arc<Plan>> {
        self.plans.iter().find(|p| &p.name == name)
    }

    pub fn default_plan(&self) -> &Arc<Plan> {
        &self.plans[self.default]
    }

    pub fn all(&self) -> &[Arc<Plan>] {
        &self.plans
    }

    /// Whether any plan has a rule: without rules a start needs no attribute
    /// counting at all.
    pub fn has_rules(&self) -> bool {
        self.plans.iter().any(|p| !p.rules.is_empty())
    }

    /// The plan in force: the admin's, else the claimed one, else the
    /// default. A stored name the file no longer defines is passed over.
    pub fn resolve(
        &self,
        assigned: Option<&PlanName>,
        claimed: Option<&PlanName>,
    ) -> (&Arc<Plan>, PlanSource) {
        let (index, source) = self.resolve_index(assigned, claimed);
        (&self.plans[index], source)
    }

    /// [`Plans::resolve`], as the plan's position in [`Plans::all`]: an
    /// account remembers it while these plans stay in use.
    pub fn resolve_index(
        &self,
        assigned: Option<&PlanName>,
        claimed: Option<&PlanName>,
    ) -> (usize, PlanSource) {
        let position = |name: &PlanName| self.plans.iter().position(|p| &p.name == name);
        if let Some(i) = assigned.and_then(position) {
            return (i, PlanSource::Override);
        }
        if let Some(i) = claimed.and_then(position) {
            return (i, PlanSource::Claim);
        }
        (self.default, PlanSource::Default)
    }
}

impl Plans {
    /// The plans as one string for the Redis scripts (see the layout in
    /// `store/redis/streamguard.lua`): the default plan's name on the first
    /// line, then one line per plan. Names, attributes and values never
    /// contain the separators (`|`, `;`, `/`, `=`, `,`, newline).
    pub fn packed(&self) -> String {
        let mut out = format!("{}\n", self.default_plan().name);
        for plan in &self.plans {
            out.push_str(&format!("{}|{}", plan.name, plan.limit.get()));
            for rule in &plan.rules {
                let required = u8::from(rule.required);
                out.push_str(&format!("|{};{};{required};", rule.name, rule.max.get()));
                match &rule.scope {
                    Scope::Per(attr) => out.push_str(&format!("p;{}", attr.name())),
                    Scope::Match(conds) => {
                        let conds: Vec<String> = conds
                            .iter()
                            .map(|(attr, values)| {
                                let values: Vec<&str> =
                                    values.iter().map(TagValue::as_str).collect();
                                format!("{}={}", attr.name(), values.join(","))
                            })
                            .collect();
                        out.push_str(&format!("m;{}", conds.join("/")));
                    }
                }
            }
            out.push('\n');
        }
        out
    }
}

/// The plans in use, swapped whole when the file changes; every decision
/// reads one consistent snapshot. The generation in use is also kept apart,
/// so that a decision that needs no plan (a stop on an account already
/// checked against these plans) can tell without loading them.
#[derive(Debug)]
pub struct PlanBook {
    plans: ArcSwap<Plans>,
    in_use: AtomicU32,
}

/// The last plans generation given out in this process. One counter for
/// every book, so that plans put in use anywhere never share a generation
/// (tests build many books; an account may meet several).
static GENERATIONS: AtomicU32 = AtomicU32::new(0);

impl PlanBook {
    pub fn new(plans: Plans) -> Self {
        let plans = Self::generation(plans);
        Self {
            in_use: AtomicU32::new(plans.generation),
            plans: ArcSwap::from_pointee(plans),
        }
    }

    pub fn current(&self) -> Arc<Plans> {
        self.plans.load_full()
    }

    /// The plans in use, for a read that ends within the caller (no
    /// reference count taken: the heartbeat path reads a plan's limit).
    pub fn read(&self) -> arc_swap::Guard<Arc<Plans>> {
        self.plans.load()
    }

    /// The generation of the plans in use. Set after the swap: a reader
    /// that still sees the old one decides as if before the swap.
    pub fn generation_in_use(&self) -> u32 {
        self.in_use.load(Ordering::Acquire)
    }

    /// Puts `plans` in use under a new generation, so that an account
    /// checked against other plans is checked again.
    pub fn replace(&self, plans: Plans) {
        let plans = Self::generation(plans);
        let generation = plans.generation;
        self.plans.store(Arc::new(plans));
        self.in_use.store(generation, Ordering::Release);
    }

    fn generation(mut plans: Plans) -> Plans {
        // Wraps after four billion plan files: 0 stays "never checked".
        let taken = GENERATIONS.fetch_add(1, Ordering::Relaxed);
        plans.generation = taken.wrapping_add(1).max(1);
        plans
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        Tags::from_pairs(pairs.iter().copied()).unwrap()
    }

    fn values(v: &[&str]) -> Vec<TagValue> {
        v.iter().map(|s| TagValue::parse(s).unwrap()).collect()
    }

    #[test]
    fn per_and_match_rules_group_streams_by_their_attributes() {
        let per_channel = Rule {
            name: "per-channel".into(),
            scope: Scope::Per(Attr::parse("channel").unwrap()),
            max: Limit::new(1).unwrap(),
            required: true,
        };
        let discovery = Rule {
            name: "discovery".into(),
            scope: Scope::Match(vec![(
                Attr::parse("channel").unwrap(),
                values(&["dmax", "tlc"]),
            )]),
            max: Limit::new(1).unwrap(),
            required: false,
        };
        let dmax = tags(&[("channel", "dmax")]);
        let tlc = tags(&[("channel", "tlc")]);
        let none = Tags::default();
        let at = |t| Attrs {
            content_id: None,
            tags: t,
        };
        let g = per_channel.group_of(at(&dmax)).unwrap();
        assert!(g.contains(at(&dmax)));
        assert!(!g.contains(at(&tlc)));
        assert!(per_channel.group_of(at(&none)).is_none());
        assert_eq!(per_channel.missing_attribute(at(&none)), Some("channel"));
        assert_eq!(discovery.missing_attribute(at(&none)), None);
        let g = discovery.group_of(at(&tlc)).unwrap();
        assert!(g.contains(at(&dmax)));
        assert!(
            discovery
                .group_of(at(&tags(&[("channel", "zdf")])))
                .is_none()
        );
    }

    #[test]
    fn the_hashed_overfull_group_is_the_first_of_the_sorted_groups() {
        use crate::domain::{ContentId, StreamId, Timestamp};
        let rule = |max| Rule {
            name: "t".into(),
            scope: Scope::Per(Attr::Content),
            max: Limit::new(max).unwrap(),
            required: false,
        };
        // Titles drawn so that several groups are over, in another order
        // than their values sort in.
        let titles = ["z", "a", "m", "z", "a", "q", "m", "z", "b", "a", "m", "q"];
        let live: Vec<Lease> = titles
            .iter()
            .enumerate()
            .map(|(i, t)| Lease {
                id: StreamId::parse(&format!("s{i}")).unwrap(),
                device_id: None,
                content_id: Some(ContentId::parse(t).unwrap()),
                tags: Tags::default(),
                secret: None,
                started_at: Timestamp::from_millis(i as i64),
                expires_at: Timestamp::from_millis(1_000_000),
                seq: i as u32,
                pace: Default::default(),
            })
            .collect();
        for max in 0..5 {
            let r = rule(max);
            let sorted = r.groups(&live).into_iter().find(|g| g.len() > max as usize);
            assert_eq!(r.overfull_group(&live), sorted, "max {max}");
        }
    }

    #[test]
    fn a_plan_comes_from_the_admin_then_the_claim_then_the_default() {
        let plan = |n: &str| Plan {
            name: PlanName::parse(n).unwrap(),
            limit: Limit::new(1).unwrap(),
            rules: vec![],
        };
        let name = |n: &str| PlanName::parse(n).unwrap();
        let plans = Plans::new(vec![plan("basic"), plan("premium")], &name("basic")).unwrap();
        assert_eq!(plans.resolve(None, None).1, PlanSource::Default);
        let (p, s) = plans.resolve(Some(&name("premium")), Some(&name("basic")));
        assert_eq!((p.name.as_str(), s), ("premium", PlanSource::Override));
        let (p, s) = plans.resolve(Some(&name("gone")), Some(&name("premium")));
        assert_eq!((p.name.as_str(), s), ("premium", PlanSource::Claim));
        assert!(Plans::new(vec![plan("basic")], &name("nope")).is_err());
    }
}
