//! The admission rules: the account limit, the plan's rules, eviction,
//! device replacement, terminate lists, lease secrets, resumes and expiry.
//! The memory and file stores run these inside their own atomic step, and
//! so does the DynamoDB store for starts, stops, resumes and admin changes
//! (read, decide here, commit conditioned on the version). Two paths state
//! the same rules elsewhere: the Redis store decides in Lua
//! (`store/redis/streamguard.lua`, mirrored step by step against this file
//! by `tests/redis/mirror.rs`), and a DynamoDB heartbeat is one conditional
//! update (the lease exists, has not run out, and its secret matches). The
//! store conformance suite holds all of them to the same cases.
//!
//! Each operation first applies what `now` already implies (leases that ran
//! out become `expired` tombstones, old tombstones are forgotten), then decides.
//! A start that is refused leaves the account exactly as it found it, apart
//! from that clean-up, which changes no observable answer.

use std::sync::Arc;

use super::account::{Account, EndReason, Lease, SettledFor, Terms, Tombstone};
use super::clock::Timestamp;
use super::ids::{ContentId, DeviceId, PlanName, StreamId};
use super::plan::{ACCOUNT_RULE, Attr, Attrs, Group, Rule, Scope};
use super::policy::{Limit, OnLimit, Policy};
use super::secret::SecretHash;
use super::tags::{TagProbe, Tags};

/// Ended streams remembered per account at most; past this, the oldest
/// tombstones are forgotten early (their stream still never comes back).
pub const MAX_TOMBSTONES: usize = 100;

/// A player asking to start (or resume) playback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartRequest {
    pub stream_id: StreamId,
    pub device_id: Option<DeviceId>,
    pub content_id: Option<ContentId>,
    /// Attributes for plan rules; fixed for the life of the stream.
    pub tags: Tags,
    /// The hash of the player's lease secret: heartbeats and retries of
    /// the new lease must present the secret.
    pub secret: Option<SecretHash>,
    /// Streams of the same account to end in the same step ("stop the TV").
    pub terminate: Vec<StreamId>,
    /// The account's limit as the caller's identity token states it
    /// (`--jwt-limit-claim`); recorded with the account.
    pub limit_claim: Option<Limit>,
    /// The plan the caller's token or gateway names (`--jwt-plan-claim`,
    /// `--plan-header`), already known to be defined; recorded with the
    /// account.
    pub plan: Option<PlanName>,
}

impl StartRequest {
    pub fn new(stream_id: StreamId) -> Self {
        Self {
            stream_id,
            device_id: None,
            content_id: None,
            tags: Tags::default(),
            secret: None,
            terminate: Vec::new(),
            limit_claim: None,
            plan: None,
        }
    }

    fn attrs(&self) -> Attrs<'_> {
        Attrs {
            content_id: self.content_id.as_ref(),
            tags: &self.tags,
        }
    }
}

/// A granted start: the admitted lease and what the start ended (not the
/// signed token a player receives, which the `grant` module makes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admission {
    pub stream: Lease,
    /// Streams this start ended by eviction: evict-oldest and `terminate`.
    pub evicted: Vec<StreamId>,
    /// Streams this start ended because they played on the same device.
    pub replaced: Vec<StreamId>,
    /// Live streams after the start, this one included.
    pub active: usize,
    pub limit: Limit,
}

/// One limit a start would break: the account's (`rule` = `account`) or
/// a plan rule's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub rule: Arc<str>,
    pub limit: Limit,
    /// The live streams that count against it, oldest first.
    pub live: Vec<Lease>,
}

/// Why a start was refused: every limit it would break, the account's
/// first, then the plan's rules in their order. Never empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub conflicts: Vec<Conflict>,
}

impl Refusal {
    /// A refusal by the account-wide limit alone.
    pub fn account(limit: Limit, live: Vec<Lease>) -> Self {
        Self {
            conflicts: vec![Conflict {
                rule: ACCOUNT_RULE.into(),
                limit,
                live,
            }],
        }
    }

    /// The first refusing limit: the one the answer leads with.
    pub fn first(&self) -> &Conflict {
        &self.conflicts[0]
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartDecision {
    /// A new lease was granted.
    Granted(Admission),
    /// The named stream is already live: an idempotent retry, nothing changed.
    AlreadyLive {
        stream: Lease,
        active: usize,
        limit: Limit,
    },
    /// The account or one of its plan's rules is full; nothing changed.
    LimitReached(Refusal),
    /// The named stream is live with another device, content or tags: a
    /// lease belongs to the device that got it and its attributes are fixed,
    /// so this is neither a retry nor a grant. Nothing changed.
    StreamIdConflict,
    /// A rule of the account's plan requires an attribute the start lacks.
    /// Nothing changed.
    MissingAttribute { rule: Arc<str>, attribute: String },
}

/// What a resume did: the stream was known after all (renewed, or ended),
/// or it was started again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResumeDecision {
    Heartbeat(HeartbeatDecision),
    Start(StartDecision),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeartbeatDecision {
    /// The lease now runs until the new `expires_at`.
    Renewed(Lease),
    /// The stream ended and must not play on.
    Ended(EndReason),
    /// This account never had such a stream, or its tombstone is gone.
    Unknown,
}

/// What a start or a resume may change besides granting: the claims it
/// records and the streams a plan change revokes. A store that persists
/// decisions writes the account when a grant happened or these moved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marks {
    limit_claim: Option<Limit>,
    plan_names: Option<Box<super::account::PlanNames>>,
    live: usize,
}

impl Marks {
    /// Whether `account` moved since these marks were taken.
    pub fn moved(&self, account: &Account) -> bool {
        *self != account.marks()
    }
}

impl StartDecision {
    pub fn is_grant(&self) -> bool {
        matches!(self, StartDecision::Granted(_))
    }
}

impl ResumeDecision {
    /// A stream started again (not one found live after all).
    pub fn is_grant(&self) -> bool {
        matches!(self, ResumeDecision::Start(d) if d.is_grant())
    }
}

/// A limit a start would break, by the indices of the streams it counts.
struct Breach {
    rule: Arc<str>,
    limit: Limit,
    scope: Vec<usize>,
}

/// The `per` groups of a starting stream counted in one pass over the
/// streams that stay: its title group (if a `per content_id` rule applies)
/// and the first two of its tag pairs under `per` rules. Each stream's title
/// and tag signature are read once, however many of these rules look at
/// them; other groups are counted on their own ([`Group::count`]).
#[derive(Default)]
struct Tally<'r> {
    /// The start's title, if a `per content_id` rule applies.
    content: Option<&'r str>,
    /// The pairs of the first two `per` tag rules that apply, with the
    /// rule's position.
    probes: [Option<(usize, TagProbe<'r>)>; 2],
}

/// What a [`Tally`] counted: the streams with the title, with each pair.
#[derive(Default)]
struct Counts {
    content: usize,
    tags: [usize; 2],
}

impl<'r> Tally<'r> {
    /// Takes in rule `i`, a `per` rule of `attr`, under which the start has
    /// `value`.
    fn note(&mut self, i: usize, attr: &'r Attr, value: Option<&'r str>) {
        let Some(value) = value else {
            return;
        };
        match attr {
            Attr::Content => self.content = Some(value),
            Attr::Tag(name) => {
                if let Some(slot) = self.probes.iter_mut().find(|p| p.is_none()) {
                    *slot = Some((i, TagProbe::new(name.as_str(), value)));
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.content.is_none() && self.probes[0].is_none()
    }

    fn count<'l>(&self, streams: impl Iterator<Item = &'l Lease>) -> Counts {
        let probe = |k: usize| self.probes[k].map(|(_, probe)| probe);
        let (mut content, mut tag0, mut tag1) = (0, 0, 0);
        let (title, first, second) = (self.content, probe(0), probe(1));
        for s in streams {
            if let Some(title) = title {
                content += usize::from(same_title(s, title));
            }
            if let Some(probe) = &first {
                tag0 += usize::from(s.tags.has_probe(probe));
            }
            if let Some(probe) = &second {
                tag1 += usize::from(s.tags.has_probe(probe));
            }
        }
        Counts {
            content,
            tags: [tag0, tag1],
        }
    }

    /// The group and count of rule `i`, if this tally counted it.
    fn counted(&self, i: usize, rule: &Rule, counts: &Counts) -> Option<(Group<'r>, usize)> {
        match &rule.scope {
            Scope::Per(Attr::Content) => self
                .content
                .map(|v| (Group::SameContent(v), counts.content)),
            Scope::Per(Attr::Tag(_)) => (0..2).find_map(|k| match self.probes[k] {
                Some((rule, probe)) if rule == i => Some((Group::SameTag(probe), counts.tags[k])),
                _ => None,
            }),
            Scope::Match(_) => None,
        }
    }
}

/// Whether `s` plays `title`: the length first, which settles most.
#[inline]
fn same_title(s: &Lease, title: &str) -> bool {
    s.content_id
        .as_ref()
        .is_some_and(|c| c.as_str().len() == title.len() && c.as_str() == title)
}

impl Account {
    /// See [`Marks`].
    pub fn marks(&self) -> Marks {
        Marks {
            limit_claim: self.limit_claim,
            plan_names: self.plan_names.clone(),
            live: self.live.len(),
        }
    }

    /// Applies what `now` and the policy already imply: leases that ran out
    /// become `expired` tombstones, tombstones past retention go, and if the
    /// account holds more live streams than its limit (a lowered
    /// `--default-limit` or plan limit), the excess is revoked as
    /// [`Account::set_limit`] would. Plan rules are not applied here (a
    /// heartbeat never evaluates them): see [`Account::settle`]. An account
    /// left with nothing forgets its claims: they are remembered while the
    /// account holds streams or tombstones, and the next start's token
    /// brings them again. Returns how many leases expired.
    pub fn expire(&mut self, now: Timestamp, policy: &Policy) -> usize {
        let (expired, _) = self.lapse(now, policy, self.limit(policy));
        self.forget_claims_if_idle();
        expired
    }

    /// Expiry, retention and `limit` (the one in force), as
    /// [`Account::expire`] describes, keeping the claims. Returns how many
    /// leases expired and which streams the limit revoked.
    fn lapse(&mut self, now: Timestamp, policy: &Policy, limit: Limit) -> (usize, Vec<StreamId>) {
        let expired = self.run_out(now, policy);
        (expired, self.trim(now, policy, limit))
    }

    /// Expiry and retention alone: leases that ran out become `expired`
    /// tombstones, tombstones past retention go. Returns how many expired.
    fn run_out(&mut self, now: Timestamp, policy: &Policy) -> usize {
        let before = self.live.len();
        let mut i = 0;
        while i < self.live.len() {
            if self.live[i].is_live(now) {
                i += 1;
            } else {
                let lease = self.live.remove(i);
                let ended_at = lease.expires_at;
                self.bury(lease.id, EndReason::Expired, ended_at);
            }
        }
        let expired = before - self.live.len();
        let keep_for = policy.tombstone_ttl();
        self.ended.retain(|t| now < t.ended_at + keep_for);
        expired
    }

    /// What `now` implies ([`Account::expire`], claims kept), then revokes
    /// the streams above any rule of the account's plan (a plan changed, or
    /// a rule was tightened): in the plan's rule order, the newest of a full
    /// group under `reject`, the oldest under `evict-oldest`, as a lowered
    /// limit does. Every decision but a heartbeat starts with it. Returns
    /// the streams revoked, the limit's first.
    pub fn settle(&mut self, now: Timestamp, policy: &Policy) -> Vec<StreamId> {
        let snapshot = policy.plans.as_ref().map(|book| book.read());
        let terms = self.terms(policy, snapshot.as_deref().map(|p| &**p));
        self.settle_by(now, policy, &terms)
    }

    /// Whether the account's streams were last checked against the plans in
    /// use (never without `--plans`, where the limit is checked every time).
    fn settled_under_plans_in_use(&self, policy: &Policy) -> bool {
        policy.plans.as_ref().is_some_and(|book| {
            self.settled.generation != 0 && self.settled.generation == book.generation_in_use()
        })
    }

    /// [`Account::settle`] under terms the caller resolved.
    fn settle_by(&mut self, now: Timestamp, policy: &Policy, terms: &Terms<'_>) -> Vec<StreamId> {
        let (_, mut revoked) = self.lapse(now, policy, terms.limit);
        if terms.plan.is_none() || self.settled.generation == terms.generation {
            return revoked;
        }
        for rule in terms.rules() {
            while let Some(group) = rule.overfull_group(&self.live) {
                let victim = match policy.on_limit {
                    OnLimit::Reject => group
                        .iter()
                        .copied()
                        .max_by_key(|&i| self.live[i].age_key()),
                    OnLimit::EvictOldest => group
                        .iter()
                        .copied()
                        .min_by_key(|&i| self.live[i].age_key()),
                }
                .expect("an overfull group holds streams");
                let lease = self.live.remove(victim);
                revoked.push(lease.id.clone());
                self.bury(lease.id, EndReason::Revoked, now);
            }
        }
        self.settled = SettledFor {
            generation: terms.generation,
            plan: terms.index as u32,
        };
        revoked
    }

    /// Decides a start. Only a grant changes the account's streams; the
    /// claims in the request (limit, plan) are recorded whatever the
    /// decision (a lowered one revokes the excess at once), unless the
    /// account is left with nothing to remember them by.
    pub fn start(&mut self, req: StartRequest, now: Timestamp, policy: &Policy) -> StartDecision {
        // One load of the plans for the whole decision; the terms are
        // resolved again only if the claims below change them.
        let snapshot = policy.plans.as_ref().map(|book| book.read());
        let plans = snapshot.as_deref().map(|p| &**p);
        let mut terms = self.terms(policy, plans);
        self.lapse(now, policy, terms.limit);
        let forgot = self.forget_claims_if_idle();
        if self.record_claims(&req) || forgot {
            terms = self.terms(policy, plans);
        }
        self.settle_by(now, policy, &terms);
        let decision = self.admit(req, now, policy, &terms);
        self.forget_claims_if_idle();
        decision
    }

    /// Records the limit and plan the start's caller claims; returns
    /// whether either changed.
    fn record_claims(&mut self, req: &StartRequest) -> bool {
        let mut changed = false;
        if req.limit_claim.is_some() && req.limit_claim != self.limit_claim {
            self.limit_claim = req.limit_claim;
            changed = true;
        }
        if req.plan.is_some()
            && req.plan.as_ref() != self.plan_names.as_deref().and_then(|n| n.claimed.as_ref())
        {
            let claimed = req.plan.clone();
            self.edit_plan_names(|n| n.claimed = claimed);
            changed = true;
        }
        changed
    }

    /// Forgets the claims of an account left with nothing; returns whether
    /// it had any.
    pub(crate) fn forget_claims_if_idle(&mut self) -> bool {
        if self.limit.is_some() || !self.live.is_empty() || !self.ended.is_empty() {
            return false;
        }
        let had_limit = self.limit_claim.take().is_some();
        let had_plan = self
            .plan_names
            .as_deref()
            .is_some_and(|n| n.claimed.is_some());
        if had_plan {
            self.edit_plan_names(|n| n.claimed = None);
        }
        had_limit || had_plan
    }

    /// The admission decision proper, on an account already brought to `now`.
    fn admit(
        &mut self,
        req: StartRequest,
        now: Timestamp,
        policy: &Policy,
        terms: &Terms<'_>,
    ) -> StartDecision {
        let limit = terms.limit;
        let rules = terms.rules();

        if let Some(stream) = self.live.iter().find(|s| s.id == req.stream_id) {
            if stream.device_id != req.device_id
                || stream.content_id != req.content_id
                || stream.tags != req.tags
                || stream.secret.as_deref() != req.secret.as_ref()
            {
                return StartDecision::StreamIdConflict;
            }
            return StartDecision::AlreadyLive {
                stream: stream.clone(),
                active: self.live.len(),
                limit,
            };
        }
        // The required attributes, and the start's `per` groups that one
        // pass over the streams counts (each attribute looked up once).
        let mut tally = Tally::default();
        for (i, rule) in rules.iter().enumerate() {
            let missing = match &rule.scope {
                Scope::Per(attr) => {
                    let value = attr.value_of(req.attrs());
                    tally.note(i, attr, value);
                    (rule.required && value.is_none()).then(|| attr.name())
                }
                Scope::Match(_) => rule.missing_attribute(req.attrs()),
            };
            if let Some(attribute) = missing {
                return StartDecision::MissingAttribute {
                    rule: rule.name.clone(),
                    attribute: attribute.to_owned(),
                };
            }
        }

        let terminated = |s: &Lease| req.terminate.contains(&s.id);
        let same_device =
            |s: &Lease| req.device_id.is_some() && s.device_id == req.device_id && !terminated(s);
        // The streams that stay, as indices into `live`, grant order.
        let mut kept: Vec<usize> = (0..self.live.len())
            .filter(|&i| !terminated(&self.live[i]) && !same_device(&self.live[i]))
            .collect();
        let mut overflow: Vec<usize> = Vec::new();
        loop {
            let breaches = self.breaches(&kept, limit, rules, req.attrs(), &tally);
            if breaches.is_empty() {
                break;
            }
            // A limit of 0 can never make room: refused like `reject`.
            let hopeless = breaches.iter().any(|b| b.limit.get() == 0);
            if policy.on_limit == OnLimit::Reject || hopeless {
                // Only reachable before any eviction: evictions never make a
                // limit hopeless, and under `reject` the first breach refuses.
                return StartDecision::LimitReached(self.refusal(breaches));
            }
            // Evict the stream that relieves the most breaches, oldest first.
            let victim = kept
                .iter()
                .copied()
                .filter(|i| breaches.iter().any(|b| b.scope.contains(i)))
                .max_by_key(|i| {
                    let relieved = breaches.iter().filter(|b| b.scope.contains(i)).count();
                    let (started, seq) = self.live[*i].age_key();
                    (relieved, std::cmp::Reverse((started, seq)))
                })
                .expect("a breached limit above 0 counts live streams");
            kept.retain(|&i| i != victim);
            overflow.push(victim);
        }

        let mut evicted = Vec::new();
        let mut replaced = Vec::new();
        let mut overflowed = Vec::new();
        // Rebuilt in one block: an `ExactVec` reallocates at every push.
        let mut live = Vec::with_capacity(self.live.len() + 1);
        for (i, lease) in std::mem::take(&mut self.live).into_iter().enumerate() {
            if terminated(&lease) {
                evicted.push(lease.id.clone());
                self.bury(lease.id, EndReason::Evicted, now);
            } else if same_device(&lease) {
                replaced.push(lease.id.clone());
                self.bury(lease.id, EndReason::Replaced, now);
            } else if let Some(pos) = overflow.iter().position(|&o| o == i) {
                overflowed.push((pos, lease));
            } else {
                live.push(lease);
            }
        }
        // Evictions are buried and reported in the order they were chosen.
        overflowed.sort_by_key(|(pos, _)| *pos);
        for (_, lease) in overflowed {
            evicted.push(lease.id.clone());
            self.bury(lease.id, EndReason::Evicted, now);
        }

        self.ended.retain(|t| t.id != req.stream_id);
        let stream = Lease {
            id: req.stream_id,
            device_id: req.device_id,
            content_id: req.content_id,
            tags: req.tags,
            secret: req.secret.map(Box::new),
            started_at: now,
            expires_at: now + policy.lease_ttl,
            seq: self.next_seq,
            pace: Default::default(),
        };
        self.next_seq = self.next_seq.saturating_add(1);
        live.push(stream.clone());
        self.live = live.into();
        StartDecision::Granted(Admission {
            stream,
            evicted,
            replaced,
            active: self.live.len(),
            limit,
        })
    }

    /// Every limit one more stream would break, given the streams `kept`:
    /// the account's first, then each rule the new stream falls under.
    fn breaches(
        &self,
        kept: &[usize],
        limit: Limit,
        rules: &[Rule],
        start: Attrs<'_>,
        tally: &Tally<'_>,
    ) -> Vec<Breach> {
        let mut out = Vec::new();
        if limit.is_reached_by(kept.len()) {
            out.push(Breach {
                rule: ACCOUNT_RULE.into(),
                limit,
                scope: kept.to_vec(),
            });
        }
        // The title and the first two tag pairs of `per` rules are counted
        // in one pass; other groups are found afresh (cheap: the starting
        // stream alone) and counted on their own, rather than kept in a
        // list a start would allocate.
        let counts = if tally.is_empty() {
            Counts::default()
        } else if kept.len() == self.live.len() {
            tally.count(self.live.iter())
        } else {
            tally.count(kept.iter().map(|&i| &self.live[i]))
        };
        for (i, rule) in rules.iter().enumerate() {
            let (group, count) = if let Some(counted) = tally.counted(i, rule, &counts) {
                counted
            } else {
                let Some(group) = rule.group_of(start) else {
                    continue;
                };
                (group, self.count_in(kept, group))
            };
            // Counted first: most starts breach nothing, and need no list.
            if !rule.max.is_reached_by(count) {
                continue;
            }
            let in_scope = |i: &usize| group.contains((&self.live[*i]).into());
            out.push(Breach {
                rule: rule.name.clone(),
                limit: rule.max,
                scope: kept.iter().copied().filter(in_scope).collect(),
            });
        }
        out
    }

    /// How many of the streams `kept` are in `group`. When nothing is set
    /// aside (no `terminate`, no replaced device stream), it counts over
    /// the leases themselves rather than through the indices.
    fn count_in(&self, kept: &[usize], group: Group<'_>) -> usize {
        if kept.len() == self.live.len() {
            group.count(self.live.iter())
        } else {
            group.count(kept.iter().map(|&i| &self.live[i]))
        }
    }

    fn refusal(&self, breaches: Vec<Breach>) -> Refusal {
        Refusal {
            conflicts: breaches
                .into_iter()
                .map(|b| {
                    let mut live: Vec<Lease> =
                        b.scope.iter().map(|&i| self.live[i].clone()).collect();
                    live.sort_by_key(Lease::age_key);
                    Conflict {
                        rule: b.rule,
                        limit: b.limit,
                        live,
                    }
                })
                .collect(),
        }
    }

    /// Renews a live lease started without a secret; see
    /// [`Account::heartbeat_with`].
    pub fn heartbeat(
        &mut self,
        id: &StreamId,
        now: Timestamp,
        policy: &Policy,
    ) -> HeartbeatDecision {
        self.heartbeat_with(id, None, now, policy)
    }

    /// Renews a live lease if `secret` opens it (a lease started with a
    /// secret answers `Unknown` to any other, as if it did not exist); an
    /// ended stream is never revived here.
    pub fn heartbeat_with(
        &mut self,
        id: &StreamId,
        secret: Option<&SecretHash>,
        now: Timestamp,
        policy: &Policy,
    ) -> HeartbeatDecision {
        self.expire(now, policy);
        if let Some(lease) = self.live.iter_mut().find(|s| &s.id == id) {
            if !SecretHash::opens(lease.secret.as_deref(), secret) {
                return HeartbeatDecision::Unknown;
            }
            lease.expires_at = now + policy.lease_ttl;
            return HeartbeatDecision::Renewed(lease.clone());
        }
        match self.ended.iter().find(|t| &t.id == id) {
            Some(t) => HeartbeatDecision::Ended(t.reason),
            None => HeartbeatDecision::Unknown,
        }
    }

    /// Resumes a stream the store forgot, in one step: a heartbeat of the
    /// stream if it is live after all (the secret must open it), its end
    /// if a tombstone remembers it, else a start of `req` (the signed
    /// grant's device, content, tags and secret), which must fit the limit
    /// and every rule like any start.
    pub fn resume(&mut self, req: StartRequest, now: Timestamp, policy: &Policy) -> ResumeDecision {
        self.expire(now, policy);
        if self.live.iter().any(|s| s.id == req.stream_id) {
            let id = req.stream_id.clone();
            return ResumeDecision::Heartbeat(self.heartbeat_with(
                &id,
                req.secret.as_ref(),
                now,
                policy,
            ));
        }
        if let Some(t) = self.ended.iter().find(|t| t.id == req.stream_id) {
            return ResumeDecision::Heartbeat(HeartbeatDecision::Ended(t.reason));
        }
        ResumeDecision::Start(self.start(req, now, policy))
    }

    /// Ends a live stream with `reason` (`stopped` or `revoked`). Returns
    /// whether it was live; ending a gone stream changes nothing.
    pub fn end(
        &mut self,
        id: &StreamId,
        reason: EndReason,
        now: Timestamp,
        policy: &Policy,
    ) -> bool {
        if self.settled_under_plans_in_use(policy) {
            // Checked against these plans, and nothing since changed the
            // limit or the plan names without checking again (those settle
            // themselves): the streams fit, so only time applies, and the
            // plans need not be loaded.
            self.run_out(now, policy);
        } else {
            self.settle(now, policy);
        }
        let Some(i) = self.live.iter().position(|s| &s.id == id) else {
            self.forget_claims_if_idle();
            return false;
        };
        let lease = self.live.remove(i);
        self.bury(lease.id, reason, now);
        self.forget_claims_if_idle();
        true
    }

    /// Sets (or, with `None`, clears) the account's limit override. If the
    /// new limit is below the live count, the streams the policy would give
    /// up first are revoked at once, so the limit holds at every instant:
    /// the newest under `reject`, the oldest under `evict-oldest`.
    pub fn set_limit(
        &mut self,
        limit: Option<Limit>,
        now: Timestamp,
        policy: &Policy,
    ) -> Vec<StreamId> {
        self.expire(now, policy);
        self.limit = limit;
        let revoked = self.settle(now, policy);
        self.forget_claims_if_idle();
        revoked
    }

    /// Sets (or, with `None`, clears) the plan an administrator assigned.
    /// Streams above the new plan's limit or rules are revoked at once, as
    /// [`Account::set_limit`] does.
    pub fn set_plan(
        &mut self,
        plan: Option<PlanName>,
        now: Timestamp,
        policy: &Policy,
    ) -> Vec<StreamId> {
        self.expire(now, policy);
        self.edit_plan_names(|n| n.assigned = plan);
        let revoked = self.settle(now, policy);
        self.forget_claims_if_idle();
        revoked
    }

    /// Revokes live streams above the limit in force: the newest under
    /// `reject` (who came last yields), the oldest under `evict-oldest`.
    fn trim(&mut self, now: Timestamp, policy: &Policy, limit: Limit) -> Vec<StreamId> {
        let allowed = limit.get() as usize;
        let mut revoked = Vec::new();
        while self.live.len() > allowed {
            let victim = match policy.on_limit {
                OnLimit::Reject => self.newest_index(),
                OnLimit::EvictOldest => self.oldest_index(),
            }
            .expect("more live streams than the limit");
            let lease = self.live.remove(victim);
            revoked.push(lease.id.clone());
            self.bury(lease.id, EndReason::Revoked, now);
        }
        revoked
    }

    fn oldest_index(&self) -> Option<usize> {
        (0..self.live.len()).min_by_key(|&i| self.live[i].age_key())
    }

    fn newest_index(&self) -> Option<usize> {
        (0..self.live.len()).max_by_key(|&i| self.live[i].age_key())
    }

    fn bury(&mut self, id: StreamId, reason: EndReason, ended_at: Timestamp) {
        self.ended.retain(|t| t.id != id);
        if self.ended.len() >= MAX_TOMBSTONES {
            self.ended.remove(0);
        }
        self.ended.push(Tombstone {
            id,
            reason,
            ended_at,
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);

    fn policy(limit: u32, on_limit: OnLimit) -> Policy {
        Policy {
            default_limit: Limit::new(limit).unwrap(),
            lease_ttl: Duration::from_secs(90),
            on_limit,
            plans: None,
        }
    }

    fn sid(s: &str) -> StreamId {
        StreamId::parse(s).unwrap()
    }

    fn at(secs: u64) -> Timestamp {
        T0 + Duration::from_secs(secs)
    }

    fn start(acc: &mut Account, id: &str, now: Timestamp, p: &Policy) -> StartDecision {
        acc.start(StartRequest::new(sid(id)), now, p)
    }

    fn on_device(id: &str, device: &str) -> StartRequest {
        StartRequest {
            device_id: Some(DeviceId::parse(device).unwrap()),
            ..StartRequest::new(sid(id))
        }
    }

    fn granted(d: StartDecision) -> Admission {
        match d {
            StartDecision::Granted(g) => g,
            other => panic!("expected a grant, got {other:?}"),
        }
    }

    fn live_ids(acc: &Account, now: Timestamp, p: &Policy) -> Vec<String> {
        acc.view(now, p)
            .live
            .iter()
            .map(|s| s.id.to_string())
            .collect()
    }

    #[test]
    fn a_plan_is_kept_while_the_account_holds_something() {
        let p = policy(2, OnLimit::Reject);
        let blocked = |id: &str| StartRequest {
            limit_claim: Some(Limit::new(0).unwrap()),
            ..StartRequest::new(sid(id))
        };
        // Refused on an empty account: nothing to remember the plan by.
        let mut acc = Account::default();
        assert!(matches!(
            acc.start(blocked("a"), T0, &p),
            StartDecision::LimitReached { .. }
        ));
        assert_eq!(acc, Account::default());
        granted(start(&mut acc, "b", T0, &p));
        // With a stream, a lowered plan is kept and revokes the excess.
        assert!(matches!(
            acc.start(blocked("c"), at(1), &p),
            StartDecision::LimitReached { .. }
        ));
        assert_eq!(acc.limit_claim, Some(Limit::new(0).unwrap()));
        assert!(acc.live.is_empty());
        assert_eq!(acc.ended[0].reason, EndReason::Revoked);
        // Once the tombstone is gone, so is the plan.
        acc.expire(at(1) + p.tombstone_ttl(), &p);
        assert_eq!(
            acc,
            Account {
                next_seq: 1,
                ..Account::default()
            }
        );
    }

    #[test]
    fn grants_up_to_the_limit_then_refuses_without_change() {
        let p = policy(3, OnLimit::Reject);
        let mut acc = Account::default();
        for (i, id) in ["a", "b", "c"].iter().enumerate() {
            let g = granted(start(&mut acc, id, at(i as u64), &p));
            assert_eq!(g.active, i + 1);
            assert_eq!(g.stream.expires_at, at(i as u64) + p.lease_ttl);
        }
        let before = acc.clone();
        match start(&mut acc, "d", at(5), &p) {
            StartDecision::LimitReached(refusal) => {
                assert_eq!(&*refusal.first().rule, "account");
                assert_eq!(refusal.first().limit.get(), 3);
                assert_eq!(refusal.first().live.len(), 3);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(acc, before);
    }

    #[test]
    fn limit_zero_blocks_even_with_evict_oldest() {
        let p = policy(0, OnLimit::EvictOldest);
        let mut acc = Account::default();
        assert!(matches!(
            start(&mut acc, "a", T0, &p),
            StartDecision::LimitReached { .. }
        ));
        assert!(acc.live.is_empty());
    }

    #[test]
    fn evict_oldest_ends_the_earliest_start_and_breaks_ties_by_grant_order() {
        let p = policy(2, OnLimit::EvictOldest);
        let mut acc = Account::default();
        granted(start(&mut acc, "first", T0, &p));
        granted(start(&mut acc, "second", T0, &p));
        let g = granted(start(&mut acc, "third", T0, &p));
        assert_eq!(g.evicted, vec![sid("first")]);
        assert_eq!(g.active, 2);
        assert_eq!(
            acc.heartbeat(&sid("first"), at(1), &p),
            HeartbeatDecision::Ended(EndReason::Evicted)
        );
    }

    #[test]
    fn a_lease_expires_exactly_at_expires_at() {
        let p = policy(1, OnLimit::Reject);
        let mut acc = Account::default();
        granted(start(&mut acc, "a", T0, &p));
        let just_before = T0 + (p.lease_ttl - Duration::from_millis(1));
        assert!(matches!(
            acc.heartbeat(&sid("a"), just_before, &p),
            HeartbeatDecision::Renewed(_)
        ));
        let deadline = just_before + p.lease_ttl;
        assert_eq!(
            acc.heartbeat(&sid("a"), deadline, &p),
            HeartbeatDecision::Ended(EndReason::Expired)
        );
        granted(start(&mut acc, "b", deadline, &p));
    }

    #[test]
    fn heartbeat_pushes_the_lease_from_now() {
        let p = policy(3, OnLimit::Reject);
        let mut acc = Account::default();
        granted(start(&mut acc, "a", T0, &p));
        match acc.heartbeat(&sid("a"), at(60), &p) {
            HeartbeatDecision::Renewed(s) => {
                assert_eq!(s.expires_at, at(60) + p.lease_ttl);
                assert_eq!(s.started_at, T0);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(live_ids(&acc, at(149), &p), vec!["a"]);
    }

    #[test]
    fn heartbeat_of_an_unknown_stream_is_unknown() {
        let p = Policy::default();
        let mut acc = Account::default();
        assert_eq!(acc.heartbeat(&sid("x"), T0, &p), HeartbeatDecision::Unknown);
    }

    #[test]
    fn device_replaces_its_own_stream_instead_of_taking_a_slot() {
        let p = policy(1, OnLimit::Reject);
        let mut acc = Account::default();
        granted(acc.start(on_device("ep1", "tv"), T0, &p));
        let g = granted(acc.start(on_device("ep2", "tv"), at(1), &p));
        assert_eq!(g.replaced, vec![sid("ep1")]);
        assert!(g.evicted.is_empty());
        assert_eq!(g.active, 1);
        assert_eq!(
            acc.heartbeat(&sid("ep1"), at(2), &p),
            HeartbeatDecision::Ended(EndReason::Replaced)
        );
    }

    #[test]
    fn terminate_frees_slots_in_the_same_step() {
        let p = policy(2, OnLimit::Reject);
        let mut acc = Account::default();
        granted(start(&mut acc, "tv", T0, &p));
        granted(start(&mut acc, "tablet", T0, &p));
        let req = StartRequest {
            terminate: vec![sid("tv"), sid("not-mine")],
            ..StartRequest::new(sid("phone"))
        };
        let g = granted(acc.start(req, at(1), &p));
        assert_eq!(g.evicted, vec![sid("tv")]);
        assert_eq!(live_ids(&acc, at(1), &p), vec!["tablet", "phone"]);
        assert_eq!(
            acc.heartbeat(&sid("tv"), at(2), &p),
            HeartbeatDecision::Ended(EndReason::Evicted)
        );
    }

    #[test]
    fn retry_of_a_live_stream_changes_nothing() {
        let p = policy(2, OnLimit::Reject);
        let mut acc = Account::default();
        granted(acc.start(on_device("a", "tv"), T0, &p));
        granted(start(&mut acc, "b", T0, &p));
        let before = acc.clone();
        let retry = StartRequest {
            terminate: vec![sid("b")],
            ..on_device("a", "tv")
        };
        match acc.start(retry, at(1), &p) {
            StartDecision::AlreadyLive { stream, active, .. } => {
                assert_eq!(stream.started_at, T0);
                assert_eq!(active, 2);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(acc, before);
    }

    #[test]
    fn an_ended_id_may_start_again_but_never_heartbeat_back() {
        let p = policy(1, OnLimit::Reject);
        let mut acc = Account::default();
        granted(start(&mut acc, "a", T0, &p));
        assert!(acc.end(&sid("a"), EndReason::Stopped, at(1), &p));
        assert_eq!(
            acc.heartbeat(&sid("a"), at(2), &p),
            HeartbeatDecision::Ended(EndReason::Stopped)
        );
        let g = granted(start(&mut acc, "a", at(3), &p));
        assert_eq!(g.stream.started_at, at(3));
        assert!(matches!(
            acc.heartbeat(&sid("a"), at(4), &p),
            HeartbeatDecision::Renewed(_)
        ));
    }

    #[test]
    fn ending_twice_is_a_no_op_that_keeps_the_first_reason() {
        let p = Policy::default();
        let mut acc = Account::default();
        granted(start(&mut acc, "a", T0, &p));
        assert!(acc.end(&sid("a"), EndReason::Revoked, at(1), &p));
        assert!(!acc.end(&sid("a"), EndReason::Stopped, at(2), &p));
        assert_eq!(
            acc.heartbeat(&sid("a"), at(3), &p),
            HeartbeatDecision::Ended(EndReason::Revoked)
        );
    }

    #[test]
    fn tombstones_last_ten_leases_then_go() {
        let p = policy(3, OnLimit::Reject);
        let mut acc = Account::default();
        granted(start(&mut acc, "a", T0, &p));
        acc.end(&sid("a"), EndReason::Stopped, T0, &p);
        let almost = T0 + (p.tombstone_ttl() - Duration::from_millis(1));
        assert_eq!(
            acc.heartbeat(&sid("a"), almost, &p),
            HeartbeatDecision::Ended(EndReason::Stopped)
        );
        assert_eq!(
            acc.heartbeat(&sid("a"), T0 + p.tombstone_ttl(), &p),
            HeartbeatDecision::Unknown
        );
        assert!(acc.is_idle());
    }

    #[test]
    fn an_expired_lease_is_remembered_from_its_deadline() {
        let p = Policy::default();
        let mut acc = Account::default();
        granted(start(&mut acc, "a", T0, &p));
        assert_eq!(acc.expire(at(100), &p), 1);
        assert_eq!(acc.ended[0].ended_at, T0 + p.lease_ttl);
        assert_eq!(acc.expire(at(100), &p), 0);
    }

    #[test]
    fn tombstones_are_capped_per_account() {
        let p = policy(1, OnLimit::Reject);
        let mut acc = Account::default();
        for i in 0..(MAX_TOMBSTONES + 10) {
            let id = format!("s{i}");
            granted(start(&mut acc, &id, T0, &p));
            acc.end(&sid(&id), EndReason::Stopped, T0, &p);
        }
        assert_eq!(acc.ended.len(), MAX_TOMBSTONES);
        assert_eq!(
            acc.heartbeat(&sid("s0"), T0, &p),
            HeartbeatDecision::Unknown
        );
    }

    #[test]
    fn lowering_the_limit_revokes_the_newest_under_reject() {
        let p = policy(3, OnLimit::Reject);
        let mut acc = Account::default();
        for id in ["a", "b", "c"] {
            granted(start(&mut acc, id, T0, &p));
        }
        let revoked = acc.set_limit(Some(Limit::new(1).unwrap()), at(1), &p);
        assert_eq!(revoked, vec![sid("c"), sid("b")]);
        assert_eq!(live_ids(&acc, at(1), &p), vec!["a"]);
        assert_eq!(
            acc.heartbeat(&sid("c"), at(2), &p),
            HeartbeatDecision::Ended(EndReason::Revoked)
        );
    }

    #[test]
    fn lowering_the_limit_revokes_the_oldest_under_evict_oldest() {
        let p = policy(3, OnLimit::EvictOldest);
        let mut acc = Account::default();
        for id in ["a", "b", "c"] {
            granted(start(&mut acc, id, T0, &p));
        }
        assert_eq!(
            acc.set_limit(Some(Limit::new(2).unwrap()), at(1), &p),
            vec![sid("a")]
        );
    }

    #[test]
    fn a_lowered_default_limit_is_enforced_at_the_next_decision() {
        let three = policy(3, OnLimit::Reject);
        let two = policy(2, OnLimit::Reject);
        let mut acc = Account::default();
        for id in ["a", "b", "c"] {
            granted(start(&mut acc, id, T0, &three));
        }
        assert_eq!(
            acc.view(at(1), &two).live.len(),
            2,
            "reads see the limit at once"
        );
        assert_eq!(
            acc.heartbeat(&sid("c"), at(1), &two),
            HeartbeatDecision::Ended(EndReason::Revoked)
        );
        assert_eq!(live_ids(&acc, at(1), &two), vec!["a", "b"]);
    }

    #[test]
    fn clearing_the_override_restores_the_default() {
        let p = policy(3, OnLimit::Reject);
        let mut acc = Account::default();
        acc.set_limit(Some(Limit::new(5).unwrap()), T0, &p);
        assert_eq!(acc.limit(&p).get(), 5);
        acc.set_limit(None, T0, &p);
        assert_eq!(acc.limit(&p).get(), 3);
        assert!(acc.is_idle());
    }
}
