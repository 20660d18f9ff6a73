//! The admission rules. The memory and file stores run these inside their
//! own atomic step, and so does the DynamoDB store for starts, stops and
//! limit changes (read, decide here, commit conditioned on the version).
//! Two paths state the same rules elsewhere: the Redis store decides in
//! Lua (`store/redis/streamguard.lua`), and a DynamoDB heartbeat is one
//! conditional update (the lease exists and has not run out). The store
//! conformance suite holds all of them to the same cases.
//!
//! Each operation first applies what `now` already implies (leases that ran
//! out become `expired` tombstones, old tombstones are forgotten), then decides.
//! A start that is refused leaves the account exactly as it found it, apart
//! from that clean-up, which changes no observable answer.

use super::account::{Account, EndReason, Lease, Tombstone};
use super::clock::Timestamp;
use super::ids::{ContentId, DeviceId, StreamId};
use super::policy::{Limit, OnLimit, Policy};

/// Ended streams remembered per account at most; past this, the oldest
/// tombstones are forgotten early (their stream still never comes back).
pub const MAX_TOMBSTONES: usize = 100;

/// A player asking to start (or resume) playback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartRequest {
    pub stream_id: StreamId,
    pub device_id: Option<DeviceId>,
    pub content_id: Option<ContentId>,
    /// Streams of the same account to end in the same step ("stop the TV").
    pub terminate: Vec<StreamId>,
    /// The account's limit as the caller's identity token states it
    /// (`--jwt-limit-claim`); recorded as the account's plan.
    pub plan: Option<Limit>,
}

impl StartRequest {
    pub fn new(stream_id: StreamId) -> Self {
        Self {
            stream_id,
            device_id: None,
            content_id: None,
            terminate: Vec::new(),
            plan: None,
        }
    }
}

/// A granted start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub stream: Lease,
    /// Streams this start ended by eviction: evict-oldest and `terminate`.
    pub evicted: Vec<StreamId>,
    /// Streams this start ended because they played on the same device.
    pub replaced: Vec<StreamId>,
    /// Live streams after the start, this one included.
    pub active: usize,
    pub limit: Limit,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartDecision {
    /// A new lease was granted.
    Granted(Grant),
    /// The named stream is already live: an idempotent retry, nothing changed.
    AlreadyLive {
        stream: Lease,
        active: usize,
        limit: Limit,
    },
    /// The account is full; nothing changed.
    LimitReached { limit: Limit, live: Vec<Lease> },
    /// The named stream is live on another device: a lease belongs to the
    /// device that got it, so this is neither a retry nor a grant. Nothing
    /// changed.
    StreamIdConflict,
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

impl Account {
    /// Applies what `now` and the policy already imply: leases that ran out
    /// become `expired` tombstones, tombstones past retention go, and if the
    /// account holds more live streams than its limit (a lowered
    /// `--default-limit`), the excess is revoked as [`Account::set_limit`]
    /// would. An account left with nothing forgets its plan: the plan is
    /// remembered while the account holds streams or tombstones, and the
    /// next start's token brings it again. Returns how many leases expired.
    pub fn expire(&mut self, now: Timestamp, policy: &Policy) -> usize {
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
        self.trim(now, policy);
        self.forget_plan_if_idle();
        expired
    }

    /// Decides a start. Only a grant changes the account's streams; a plan
    /// limit in the request is recorded whatever the decision (a lowered
    /// one revokes the excess at once), unless the account is left with
    /// nothing to remember it by.
    pub fn start(&mut self, req: StartRequest, now: Timestamp, policy: &Policy) -> StartDecision {
        self.expire(now, policy);
        if req.plan.is_some() && req.plan != self.plan {
            self.plan = req.plan;
            self.trim(now, policy);
        }
        let decision = self.admit(req, now, policy);
        self.forget_plan_if_idle();
        decision
    }

    fn forget_plan_if_idle(&mut self) {
        if self.limit.is_none() && self.live.is_empty() && self.ended.is_empty() {
            self.plan = None;
        }
    }

    /// The admission decision proper, on an account already brought to `now`.
    fn admit(&mut self, req: StartRequest, now: Timestamp, policy: &Policy) -> StartDecision {
        let limit = self.limit(policy);

        if let Some(stream) = self.live.iter().find(|s| s.id == req.stream_id) {
            if stream.device_id != req.device_id {
                return StartDecision::StreamIdConflict;
            }
            return StartDecision::AlreadyLive {
                stream: stream.clone(),
                active: self.live.len(),
                limit,
            };
        }

        let terminated = |s: &Lease| req.terminate.contains(&s.id);
        let same_device =
            |s: &Lease| req.device_id.is_some() && s.device_id == req.device_id && !terminated(s);
        let freed = self
            .live
            .iter()
            .filter(|s| terminated(s) || same_device(s))
            .count();
        let remaining = self.live.len() - freed;
        let overflow = if limit.is_reached_by(remaining) {
            if policy.on_limit == OnLimit::Reject || limit.get() == 0 {
                return StartDecision::LimitReached {
                    limit,
                    live: self.view(now, policy).live,
                };
            }
            remaining + 1 - limit.get() as usize
        } else {
            0
        };

        let mut evicted = Vec::new();
        let mut replaced = Vec::new();
        for lease in std::mem::take(&mut self.live) {
            if terminated(&lease) {
                evicted.push(lease.id.clone());
                self.bury(lease.id, EndReason::Evicted, now);
            } else if same_device(&lease) {
                replaced.push(lease.id.clone());
                self.bury(lease.id, EndReason::Replaced, now);
            } else {
                self.live.push(lease);
            }
        }
        for _ in 0..overflow {
            let oldest = self.oldest_index().expect("overflow implies live streams");
            let lease = self.live.remove(oldest);
            evicted.push(lease.id.clone());
            self.bury(lease.id, EndReason::Evicted, now);
        }

        self.ended.retain(|t| t.id != req.stream_id);
        let stream = Lease {
            id: req.stream_id,
            device_id: req.device_id,
            content_id: req.content_id,
            started_at: now,
            expires_at: now + policy.lease_ttl,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        self.live.push(stream.clone());
        StartDecision::Granted(Grant {
            stream,
            evicted,
            replaced,
            active: self.live.len(),
            limit,
        })
    }

    /// Renews a live lease; an ended stream is never revived here.
    pub fn heartbeat(
        &mut self,
        id: &StreamId,
        now: Timestamp,
        policy: &Policy,
    ) -> HeartbeatDecision {
        self.expire(now, policy);
        if let Some(lease) = self.live.iter_mut().find(|s| &s.id == id) {
            lease.expires_at = now + policy.lease_ttl;
            return HeartbeatDecision::Renewed(lease.clone());
        }
        match self.ended.iter().find(|t| &t.id == id) {
            Some(t) => HeartbeatDecision::Ended(t.reason),
            None => HeartbeatDecision::Unknown,
        }
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
        self.expire(now, policy);
        let Some(i) = self.live.iter().position(|s| &s.id == id) else {
            return false;
        };
        let lease = self.live.remove(i);
        self.bury(lease.id, reason, now);
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
        self.trim(now, policy)
    }

    /// Revokes live streams above the limit in force: the newest under
    /// `reject` (who came last yields), the oldest under `evict-oldest`.
    fn trim(&mut self, now: Timestamp, policy: &Policy) -> Vec<StreamId> {
        let allowed = self.limit(policy).get() as usize;
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

    fn granted(d: StartDecision) -> Grant {
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
            plan: Some(Limit::new(0).unwrap()),
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
        assert_eq!(acc.plan, Some(Limit::new(0).unwrap()));
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
            StartDecision::LimitReached { limit, live } => {
                assert_eq!(limit.get(), 3);
                assert_eq!(live.len(), 3);
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

    /// A tiny deterministic generator (xorshift64), so a failing walk can
    /// be replayed from its seed.
    struct Walk(u64);

    impl Walk {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn stream(&mut self) -> StreamId {
            sid(&format!("s{}", self.below(7)))
        }

        fn device(&mut self) -> Option<DeviceId> {
            match self.below(5) {
                4 => None,
                d => Some(DeviceId::parse(&format!("d{d}")).unwrap()),
            }
        }

        fn limit(&mut self) -> Option<Limit> {
            match self.below(6) {
                5 => None,
                n => Some(Limit::new(n as u32).unwrap()),
            }
        }
    }

    /// The account a refused start (or an idempotent retry) must leave:
    /// what `now` alone implies for the account as it was, after recording
    /// the plan from the caller's token. The plan is a fact about the caller
    /// that `start` records whatever it decides, before the expiry clean-up
    /// (which therefore already trims to the new plan's limit); "unchanged"
    /// means nothing *else* moved: no lease, tombstone, grant counter or
    /// override.
    fn untouched(before: &Account, req: &StartRequest, now: Timestamp, p: &Policy) -> Account {
        let mut expected = before.clone();
        if req.plan.is_some() {
            expected.plan = req.plan;
        }
        expected.expire(now, p);
        expected
    }

    /// The invariant, checked on the raw account (not on `view`, which
    /// trims an account over its limit and so would hide the very bug it
    /// is meant to catch).
    ///
    /// Each assertion was seen to fail on a planted bug (tried by hand,
    /// then reverted):
    /// - "over its limit": `limit.is_reached_by(remaining + 1)` in `start`
    ///   (an off-by-one that grants one stream too many), and separately
    ///   `set_limit` not calling `trim`; the old walk, which checked
    ///   `view()`, passed on both.
    /// - "live twice": the live-id lookup in `start` matching on
    ///   `(id, device)` instead of `id`, so another device's start of a live
    ///   id is granted as a second lease; the old `dedup` on an age-sorted
    ///   list passed.
    /// - "not live at now": `start` skipping its `expire` call.
    fn assert_invariant(acc: &Account, now: Timestamp, p: &Policy, step: usize) {
        let limit = acc.limit(p).get() as usize;
        assert!(
            acc.live.len() <= limit,
            "step {step}: {} live streams over its limit {limit}: {acc:?}",
            acc.live.len()
        );
        let ids: std::collections::HashSet<_> = acc.live.iter().map(|s| &s.id).collect();
        assert_eq!(
            ids.len(),
            acc.live.len(),
            "step {step}: a stream id is live twice: {acc:?}"
        );
        assert!(
            acc.live.iter().all(|s| s.is_live(now)),
            "step {step}: a lease is not live at now after a decision: {acc:?}"
        );
    }

    #[test]
    fn the_limit_holds_under_any_sequence_of_operations() {
        // A deterministic walk over every operation (starts with devices,
        // terminate lists and plan claims, heartbeats, stops, revokes, limit
        // overrides set and cleared), checking after each step:
        // - the invariant on the raw account (`assert_invariant`);
        // - every id a step reports ended (stop, revoke, eviction,
        //   replacement, a lowered limit) is no longer live. Planted bug
        //   caught: `end` burying the stream but leaving its lease in `live`;
        // - no heartbeat renews an ended stream (stopped, revoked, evicted,
        //   replaced, or whose lease ran out by `now`). Planted bug caught:
        //   `heartbeat` renewing the lease it finds *before* running
        //   `expire`, so an expired lease is revived (the invariant check
        //   alone passes on it: the revived lease is live and within the
        //   limit);
        // - a start that grants nothing (`LimitReached`, `StreamIdConflict`,
        //   and the idempotent `AlreadyLive`) leaves the account exactly as
        //   `untouched` says. Planted bugs caught: the requested id's
        //   tombstone dropped before the limit check instead of at the
        //   grant; `next_seq` bumped before the limit check. (Applying the
        //   terminate list before a refusal cannot happen: ending a live
        //   stream always leaves room, so that planted bug is unreachable and
        //   the walk rightly passes on it.)
        // Every planted bug above was tried by editing this file and
        // watching this test fail on the named assertion, then reverted.
        for on_limit in [OnLimit::Reject, OnLimit::EvictOldest] {
            let p = policy(3, on_limit);
            let mut acc = Account::default();
            let mut walk = Walk(0x9E37_79B9_7F4A_7C15);
            let mut now = T0;
            // Ids that ended (any reason) and were not granted again since.
            let mut ended: std::collections::HashSet<StreamId> = Default::default();
            let mut refusals = 0;
            let mut renewals = 0;
            let mut dead_beats = 0;
            for step in 0..20_000 {
                now = now + Duration::from_secs(walk.below(40));
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
                let mut granted = None;
                // Ids this step reports as ended (stop, revoke, eviction,
                // replacement, a lowered limit).
                let mut reported: Vec<StreamId> = Vec::new();
                match walk.below(8) {
                    0..=2 => {
                        let req = StartRequest {
                            stream_id: walk.stream(),
                            device_id: walk.device(),
                            content_id: None,
                            terminate: (0..walk.below(3)).map(|_| walk.stream()).collect(),
                            plan: if walk.below(4) == 0 {
                                walk.limit()
                            } else {
                                None
                            },
                        };
                        let expected = untouched(&before, &req, now, &p);
                        match acc.start(req.clone(), now, &p) {
                            StartDecision::Granted(g) => {
                                assert_eq!(g.stream.id, req.stream_id);
                                assert_eq!(g.active, acc.live.len());
                                reported.extend(g.evicted);
                                reported.extend(g.replaced);
                                granted = Some(g.stream.id);
                            }
                            StartDecision::AlreadyLive { .. }
                            | StartDecision::LimitReached { .. }
                            | StartDecision::StreamIdConflict => {
                                refusals += 1;
                                assert_eq!(
                                    acc, expected,
                                    "step {step}: a start that granted nothing changed the account ({req:?})"
                                );
                            }
                        }
                    }
                    3 | 4 => {
                        let id = walk.stream();
                        let dead = ended.contains(&id) || dead_now.contains(&id);
                        match acc.heartbeat(&id, now, &p) {
                            HeartbeatDecision::Renewed(lease) => {
                                renewals += 1;
                                assert!(
                                    !dead,
                                    "step {step}: heartbeat renewed ended stream {id}: {acc:?}"
                                );
                                assert_eq!(lease.expires_at, now + p.lease_ttl);
                            }
                            HeartbeatDecision::Ended(_) | HeartbeatDecision::Unknown => {
                                dead_beats += 1;
                            }
                        }
                    }
                    5 => {
                        let reason = if walk.below(2) == 0 {
                            EndReason::Stopped
                        } else {
                            EndReason::Revoked
                        };
                        let id = walk.stream();
                        let was_live =
                            before.live.iter().any(|s| s.id == id) && !dead_now.contains(&id);
                        let ended_now = acc.end(&id, reason, now, &p);
                        assert_eq!(ended_now, was_live);
                        if ended_now {
                            reported.push(id);
                        }
                    }
                    6 => {
                        reported.extend(acc.set_limit(walk.limit(), now, &p));
                    }
                    _ => {
                        let req = StartRequest::new(walk.stream());
                        let expected = untouched(&before, &req, now, &p);
                        match acc.start(req.clone(), now, &p) {
                            StartDecision::Granted(g) => {
                                reported.extend(g.evicted);
                                granted = Some(g.stream.id);
                            }
                            _ => {
                                refusals += 1;
                                assert_eq!(
                                    acc, expected,
                                    "step {step}: a start that granted nothing changed the account ({req:?})"
                                );
                            }
                        }
                    }
                }
                assert_invariant(&acc, now, &p, step);
                for lease in &before.live {
                    if !acc.live.iter().any(|s| s.id == lease.id) {
                        ended.insert(lease.id.clone());
                    }
                }
                for id in reported {
                    assert!(
                        !acc.live.iter().any(|s| s.id == id),
                        "step {step}: {id} was reported ended but is live: {acc:?}"
                    );
                    ended.insert(id);
                }
                if let Some(id) = granted {
                    ended.remove(&id);
                }
            }
            // The walk must reach the cases it checks, or it proves nothing.
            eprintln!(
                "{on_limit:?}: {refusals} refusals, {renewals} renewals, {dead_beats} dead heartbeats"
            );
            assert!(refusals > 1_000, "{on_limit:?}: only {refusals} refusals");
            assert!(renewals > 300, "{on_limit:?}: only {renewals} renewals");
            assert!(
                dead_beats > 1_000,
                "{on_limit:?}: only {dead_beats} dead heartbeats"
            );
        }
    }
}
