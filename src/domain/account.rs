//! The state of one account: its live leases, the tombstones of recently
//! ended streams, and its limit override. Everything a decision needs lives
//! here, so every store keeps exactly this, under one key.

use std::ops::{Deref, DerefMut};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use std::sync::Arc;

use super::clock::Timestamp;
use super::ids::{ContentId, DeviceId, PlanName, StreamId};
use super::pace::LeasePace;
use super::plan::{Plan, PlanSource, Plans};
use super::policy::{Limit, Policy};
use super::secret::SecretHash;
use super::tags::Tags;

/// A stream that holds a slot until `expires_at` unless renewed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub id: StreamId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<DeviceId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_id: Option<ContentId>,
    /// Attributes plan rules count by; fixed for the life of the stream.
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    pub tags: Tags,
    /// The hash of the secret the starting player chose, if it chose one:
    /// heartbeats and retries must present the secret. Boxed: a pointer
    /// while absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Box<SecretHash>>,
    pub started_at: Timestamp,
    pub expires_at: Timestamp,
    /// Grant order within the account; breaks `started_at` ties.
    pub seq: u32,
    /// The per-stream flood limit's state, kept here by the stores that
    /// hold leases in memory; never stored or compared.
    #[serde(skip)]
    pub pace: LeasePace,
}

impl Lease {
    pub fn is_live(&self, now: Timestamp) -> bool {
        now < self.expires_at
    }

    /// Sort key of "oldest first".
    pub(crate) fn age_key(&self) -> (Timestamp, u32) {
        (self.started_at, self.seq)
    }
}

/// Why a stream is no longer live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The player stopped it.
    Stopped,
    /// No heartbeat arrived before the lease ran out.
    Expired,
    /// Another start ended it (evict-oldest, or its `terminate` list).
    Evicted,
    /// A new start from the same device took its place.
    Replaced,
    /// An administrator ended it, or lowered the limit below it.
    Revoked,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Stopped => "stopped",
            EndReason::Expired => "expired",
            EndReason::Evicted => "evicted",
            EndReason::Replaced => "replaced",
            EndReason::Revoked => "revoked",
        }
    }
}

/// What is remembered of an ended stream, so a late heartbeat learns why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    pub id: StreamId,
    pub reason: EndReason,
    pub ended_at: Timestamp,
}

/// One account's whole state.
///
/// Lease and tombstone lists are [`ExactVec`]s: no room to spare, no heap
/// block while empty, so an account with one lease is a small table entry
/// plus one block of one lease. The JSON is that of a `Vec`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Per-account override of the default limit (admin API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<Limit>,
    /// The limit the account's plan grants, as the last start's identity
    /// token claimed it (`--jwt-limit-claim`); below an override, above the
    /// plan's limit. (Stored as `plan`, its name before plans existed.)
    #[serde(default, rename = "plan", skip_serializing_if = "Option::is_none")]
    pub limit_claim: Option<Limit>,
    /// Which named plan the account has (`--plans`): the admin's choice and
    /// the last start's claim. Boxed: most accounts have neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_names: Option<Box<PlanNames>>,
    /// Leases in grant order. May hold expired leases until the next decision.
    #[serde(default)]
    pub live: ExactVec<Lease>,
    #[serde(default)]
    pub ended: ThinList<Tombstone>,
    #[serde(default)]
    pub next_seq: u32,
    /// The plans generation this account's streams were last checked
    /// against; see [`SettledFor`].
    #[serde(skip)]
    pub(crate) settled: SettledFor,
}

/// Which generation of the plans ([`super::plan::Plans::generation`]) an
/// account's live streams are known to fit, so that a decision re-checks
/// the rules only after the plans or the account's plan names changed.
/// Only a plan change can leave streams above a rule: a start admits
/// within the rules, and nothing else adds streams. 0 is "not known"
/// (a new or loaded account, or changed plan names). A cache, not state:
/// two accounts that differ only here are equal.
///
/// It also remembers which plan the account's names resolved to in that
/// generation, so that a decision on a settled account finds its plan by
/// position rather than by comparing names. Both fit in what was padding:
/// an account stays 48 bytes.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SettledFor {
    pub(crate) generation: u32,
    /// The plan's position in [`Plans::all`] at `generation`.
    pub(crate) plan: u32,
}

impl PartialEq for SettledFor {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for SettledFor {}

/// What one decision reads of the policy and the plans: the limit in
/// force and the plan whose rules apply (`None` without `--plans`), with
/// the generation of the plans they come from.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Terms<'p> {
    pub(crate) limit: Limit,
    pub(crate) plan: Option<&'p Plan>,
    pub(crate) generation: u32,
    /// The plan's position in [`Plans::all`].
    pub(crate) index: usize,
}

impl<'p> Terms<'p> {
    /// The plan's rules; none without `--plans`.
    pub(crate) fn rules(&self) -> &'p [super::plan::Rule] {
        self.plan.map_or(&[], |p| &p.rules)
    }
}

/// The plan names an account records.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanNames {
    /// Set through the admin API; kept until cleared there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned: Option<PlanName>,
    /// Named by the last start's token or gateway header; forgotten with the
    /// account's streams, like the limit claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed: Option<PlanName>,
}

/// Where an account's limit comes from, strongest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitSource {
    /// Set for this account through the admin API.
    Override,
    /// The plan's limit from the identity token (`--jwt-limit-claim`).
    Claim,
    /// The limit of the account's plan (`--plans`), or `--default-limit`.
    Default,
}

/// A read-only picture of an account at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountView {
    pub limit: Limit,
    /// Where `limit` comes from.
    pub source: LimitSource,
    /// Live leases, oldest first.
    pub live: Vec<Lease>,
    /// The recently ended streams and why, oldest burial first.
    pub ended: Vec<Tombstone>,
    /// The plan in force; `None` without `--plans`.
    pub plan: Option<Arc<Plan>>,
    pub plan_source: PlanSource,
}

impl Account {
    /// The limit in force for this account: an admin override wins over
    /// the token's limit claim, which wins over the plan's limit.
    pub fn limit(&self, policy: &Policy) -> Limit {
        if let Some(limit) = self.limit.or(self.limit_claim) {
            return limit;
        }
        match &policy.plans {
            None => policy.default_limit,
            Some(book) => self.terms(policy, Some(&book.read())).limit,
        }
    }

    /// The limit and plan in force, resolved against `plans` (one load of
    /// the policy's book, taken by the caller): a decision resolves its
    /// terms once, not at every step that needs the limit or the rules.
    pub(crate) fn terms<'p>(&self, policy: &Policy, plans: Option<&'p Plans>) -> Terms<'p> {
        let chosen = self.limit.or(self.limit_claim);
        let Some(plans) = plans else {
            return Terms {
                limit: chosen.unwrap_or(policy.default_limit),
                plan: None,
                generation: 0,
                index: 0,
            };
        };
        let settled = self.settled;
        let index = if settled.generation == plans.generation() {
            settled.plan as usize
        } else {
            self.resolve_index(plans).0
        };
        let plan = &plans.all()[index];
        Terms {
            limit: chosen.unwrap_or(plan.limit),
            plan: Some(plan),
            generation: plans.generation(),
            index,
        }
    }

    /// The plan in force and where it comes from; `None` without `--plans`.
    pub fn plan(&self, policy: &Policy) -> (Option<Arc<Plan>>, PlanSource) {
        let Some(book) = &policy.plans else {
            return (None, PlanSource::Default);
        };
        let plans = book.read();
        let (plan, source) = self.resolve(&plans);
        (Some(plan.clone()), source)
    }

    /// The plan of `plans` this account has.
    pub(super) fn resolve<'p>(&self, plans: &'p Plans) -> (&'p Arc<Plan>, PlanSource) {
        let (index, source) = self.resolve_index(plans);
        (&plans.all()[index], source)
    }

    /// [`Account::resolve`], as the plan's position in [`Plans::all`].
    fn resolve_index(&self, plans: &Plans) -> (usize, PlanSource) {
        let names = self.plan_names.as_deref();
        plans.resolve_index(
            names.and_then(|n| n.assigned.as_ref()),
            names.and_then(|n| n.claimed.as_ref()),
        )
    }

    /// The plan set for this account through the admin API.
    pub fn assigned_plan(&self) -> Option<&PlanName> {
        self.plan_names.as_deref().and_then(|n| n.assigned.as_ref())
    }

    /// Edits the recorded plan names, dropping the box when both are gone.
    pub(crate) fn edit_plan_names(&mut self, f: impl FnOnce(&mut PlanNames)) {
        let mut names = self.plan_names.take().map(|b| *b).unwrap_or_default();
        f(&mut names);
        self.settled = SettledFor::default();
        if names != PlanNames::default() {
            self.plan_names = Some(Box::new(names));
        }
    }

    /// Where [`Account::limit`] comes from.
    pub fn limit_source(&self) -> LimitSource {
        match (self.limit, self.limit_claim) {
            (Some(_), _) => LimitSource::Override,
            (None, Some(_)) => LimitSource::Claim,
            (None, None) => LimitSource::Default,
        }
    }

    /// The account as seen at `now`, without changing it.
    pub fn view(&self, now: Timestamp, policy: &Policy) -> AccountView {
        let (mut live, ended) = if self.has_lapsed(now, policy) {
            // What the next decision will find, expiry and limit applied.
            let mut settled = self.clone();
            settled.expire(now, policy);
            (settled.live.to_vec(), settled.ended.to_vec())
        } else {
            (self.live.to_vec(), self.ended.to_vec())
        };
        live.sort_by_key(Lease::age_key);
        let (plan, plan_source) = self.plan(policy);
        AccountView {
            limit: self.limit(policy),
            source: self.limit_source(),
            live,
            ended,
            plan,
            plan_source,
        }
    }

    /// Whether `now` has ended a lease or outlived a tombstone, or the
    /// account is over its limit, i.e. whether [`Account::expire`] would
    /// change anything.
    pub fn has_lapsed(&self, now: Timestamp, policy: &Policy) -> bool {
        let keep_for = policy.tombstone_ttl();
        self.live.iter().any(|s| !s.is_live(now))
            || self.ended.iter().any(|t| now >= t.ended_at + keep_for)
            || self.live.len() > self.limit(policy).get() as usize
    }

    /// True when nothing here is worth keeping: the account can be forgotten.
    pub fn is_idle(&self) -> bool {
        self.limit.is_none()
            && self.assigned_plan().is_none()
            && self.live.is_empty()
            && self.ended.is_empty()
    }

    /// The latest instant at which anything in this account still matters;
    /// stores that expire keys use it as the key's deadline.
    pub fn retain_until(&self, policy: &Policy) -> Option<Timestamp> {
        let leases = self
            .live
            .iter()
            .map(|s| s.expires_at + policy.tombstone_ttl());
        let tombstones = self
            .ended
            .iter()
            .map(|t| t.ended_at + policy.tombstone_ttl());
        leases.chain(tombstones).max()
    }
}

/// A list that holds exactly its elements: a pointer and a length, no spare
/// capacity, nothing allocated while empty. Most accounts hold one lease for
/// hours and change their lists only on grants and ends, so a list that
/// reallocates on every change but never holds room for four (a `Vec`'s
/// first growth) keeps ten million live streams in two thirds of the memory.
/// Reads go through the slice it derefs to.
#[derive(Clone, PartialEq, Eq)]
pub struct ExactVec<T>(Box<[T]>);

impl<T> ExactVec<T> {
    pub fn new() -> Self {
        Self(Box::new([]))
    }

    /// Edits the list as a `Vec`, then drops the spare room again.
    fn edit<R>(&mut self, f: impl FnOnce(&mut Vec<T>) -> R) -> R {
        let mut vec = std::mem::take(&mut self.0).into_vec();
        let r = f(&mut vec);
        self.0 = vec.into_boxed_slice();
        r
    }

    pub fn push(&mut self, value: T) {
        self.edit(|v| {
            v.reserve_exact(1);
            v.push(value);
        });
    }

    pub fn remove(&mut self, index: usize) -> T {
        self.edit(|v| v.remove(index))
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        if !self.0.iter().all(&mut keep) {
            self.edit(|v| v.retain(keep));
        }
    }

    /// Always the length: there is never room to spare.
    pub fn capacity(&self) -> usize {
        self.0.len()
    }
}

/// A list that is one pointer wide and allocates nothing while empty: the
/// tombstones, which most accounts have none of most of the time (an
/// `ExactVec` is two words even when empty). Edits go through the
/// `ExactVec` it boxes; reads through the slice it derefs to.
#[derive(Clone, PartialEq, Eq)]
pub struct ThinList<T>(Option<Box<ExactVec<T>>>);

impl<T> ThinList<T> {
    pub fn new() -> Self {
        Self(None)
    }

    fn edit<R>(&mut self, f: impl FnOnce(&mut ExactVec<T>) -> R) -> R {
        let mut list = self.0.take().map(|b| *b).unwrap_or_default();
        let r = f(&mut list);
        if !list.is_empty() {
            self.0 = Some(Box::new(list));
        }
        r
    }

    pub fn push(&mut self, value: T) {
        self.edit(|l| l.push(value));
    }

    pub fn remove(&mut self, index: usize) -> T {
        self.edit(|l| l.remove(index))
    }

    pub fn retain(&mut self, keep: impl FnMut(&T) -> bool) {
        if self.0.is_some() {
            self.edit(|l| l.retain(keep));
        }
    }
}

impl<T> Default for ThinList<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Deref for ThinList<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.0.as_deref().map_or(&[], |l| l)
    }
}

impl<T> DerefMut for ThinList<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.0.as_deref_mut().map_or(&mut [], |l| l)
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for ThinList<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

impl<T> From<Vec<T>> for ThinList<T> {
    fn from(vec: Vec<T>) -> Self {
        let mut list = Self::new();
        if !vec.is_empty() {
            list.0 = Some(Box::new(ExactVec::from(vec)));
        }
        list
    }
}

impl<'a, T> IntoIterator for &'a ThinList<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<T: Serialize> Serialize for ThinList<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ThinList<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::deserialize(d).map(Self::from)
    }
}

impl<T> Default for ExactVec<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Deref for ExactVec<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T> DerefMut for ExactVec<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.0
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for ExactVec<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<T> From<Vec<T>> for ExactVec<T> {
    fn from(vec: Vec<T>) -> Self {
        Self(vec.into_boxed_slice())
    }
}

impl<T> FromIterator<T> for ExactVec<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl<T> IntoIterator for ExactVec<T> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_vec().into_iter()
    }
}

impl<'a, T> IntoIterator for &'a ExactVec<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<'a, T> IntoIterator for &'a mut ExactVec<T> {
    type Item = &'a mut T;
    type IntoIter = std::slice::IterMut<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter_mut()
    }
}

impl<T: Serialize> Serialize for ExactVec<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ExactVec<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::deserialize(d).map(Self::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thin_list_is_one_pointer_and_allocates_nothing_while_empty() {
        assert_eq!(std::mem::size_of::<ThinList<Tombstone>>(), 8);
        let mut l: ThinList<i32> = ThinList::new();
        assert!(l.is_empty() && l.0.is_none());
        l.push(1);
        l.push(2);
        assert_eq!(&l[..], [1, 2]);
        l.retain(|n| *n == 2);
        assert_eq!(l.remove(0), 2);
        assert!(l.0.is_none(), "emptied, it gives its block back");
        let back: ThinList<i32> = serde_json::from_str("[3]").unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), "[3]");
        // What a ten-million-account table pays per account.
        assert!(std::mem::size_of::<Account>() <= 48);
        // And per lease, its flood-limit pace included: mimalloc's
        // 96-byte class holds a one-lease account's list.
        assert!(std::mem::size_of::<Lease>() <= 96);
    }

    #[test]
    fn exact_vec_keeps_no_spare_room_and_edits_like_a_vec() {
        let mut v = ExactVec::new();
        for n in 0..5 {
            v.push(n);
            assert_eq!(v.capacity(), v.len());
        }
        assert_eq!(v.remove(0), 0);
        v.retain(|n| n % 2 == 0);
        assert_eq!(&v[..], [2, 4]);
        assert_eq!(v.capacity(), 2);
        assert_eq!(serde_json::to_string(&v).unwrap(), "[2,4]");
        let back: ExactVec<i32> = serde_json::from_str("[2,4]").unwrap();
        assert_eq!(back, v);
        assert_eq!(v.into_iter().collect::<Vec<_>>(), [2, 4]);
    }
}
