//! The in-memory account table behind the `memory` and `file:` stores: a
//! sharded map whose shard lock is the atomic step around each decision.
//!
//! A [`Journal`] sees every change while the account is still locked, so
//! the order it records for one account is the order of the decisions.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use dashmap::DashMap;

use crate::domain::{
    Account, AccountView, Clock, EndReason, HeartbeatDecision, Limit, Pace, PaceInstant, Paced,
    PlanName, Policy, Rates, ResumeDecision, SecretHash, StartDecision, StartRequest, StreamId,
    Timestamp, UserId, Verdict,
};
use crate::telemetry;

/// Receives account states that must reach disk.
pub(crate) trait Journal: Send + Sync + 'static {
    /// Records `account` as the new state of `user`; returns the journal
    /// position an answer that depends on it must wait for.
    fn record(&self, user: &UserId, account: &Account) -> u64;

    /// Records a change that no answer waits for (what the sweeper found
    /// expired): the journal may write it later, behind acknowledged
    /// writes, keeping only the newest state per account.
    fn record_behind(&self, user: &UserId, account: &Account) {
        self.record(user, account);
    }

    /// A sweep that began at `at` is over: it has recorded the expiry of
    /// every lease whose deadline was at or before `at`.
    fn swept(&self, _at: Timestamp) {}
}

/// The memory store journals nothing.
impl Journal for () {
    fn record(&self, _: &UserId, _: &Account) -> u64 {
        0
    }
}

struct Entry {
    account: Account,
    /// Journal position of the last recorded change of this account.
    lsn: u64,
    /// The per-account flood limit's state (a lease's is in the lease).
    pace: Pace,
}

impl Entry {
    fn new(account: Account) -> Box<Self> {
        Box::new(Entry {
            account,
            lsn: 0,
            pace: Pace::default(),
        })
    }
}

/// What one operation did, as far as persistence cares.
#[derive(PartialEq, Eq)]
enum Change {
    /// Nothing, or only what a restart restores anyway (a renewed lease).
    Volatile,
    /// A change an acknowledgement promises (grant, end, limit).
    Recorded,
}

/// Now on the flood limits' clock: monotonic, from the first call.
fn pace_now() -> PaceInstant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    PaceInstant::after(ORIGIN.get_or_init(Instant::now).elapsed())
}

/// Shards of the account map: many, so a shard's lock guards few accounts.
const SHARDS: usize = 256;

pub(crate) struct AccountTable<J> {
    /// Entries are boxed: a hash table keeps its slots between half and
    /// seven eighths full, and a slot holding only the key and a pointer
    /// wastes less of the empty ones (BENCHMARKS.md, memory per live stream).
    accounts: DashMap<UserId, Box<Entry>>,
    policy: Policy,
    clock: Arc<dyn Clock>,
    journal: J,
}

/// An answer together with the journal position it depends on.
#[cfg_attr(not(feature = "file"), allow(dead_code))]
pub(crate) struct Applied<R> {
    pub value: R,
    pub lsn: u64,
}

impl<J: Journal> AccountTable<J> {
    pub fn new(policy: Policy, clock: Arc<dyn Clock>, journal: J) -> Self {
        Self {
            accounts: DashMap::with_shard_amount(SHARDS),
            policy,
            clock,
            journal,
        }
    }

    /// A table holding recovered accounts, sized for them up front: growing
    /// it by doubling would leave the outgrown tables (half the final
    /// size again) with the allocator after a restart.
    #[cfg_attr(not(feature = "file"), allow(dead_code))]
    pub fn restored(
        policy: Policy,
        clock: Arc<dyn Clock>,
        journal: J,
        accounts: Vec<(UserId, Account)>,
    ) -> Self {
        let table = Self {
            accounts: DashMap::with_capacity_and_shard_amount(accounts.len(), SHARDS),
            policy,
            clock,
            journal,
        };
        for (user, account) in accounts {
            table.accounts.insert(user, Entry::new(account));
        }
        table
    }

    #[cfg_attr(not(feature = "file"), allow(dead_code))]
    pub fn journal(&self) -> &J {
        &self.journal
    }

    pub fn start(&self, user: &UserId, req: StartRequest) -> Applied<StartDecision> {
        self.update(user, |acc, now, policy| {
            let before = acc.marks();
            let decision = acc.start(req, now, policy);
            let change = if decision.is_grant() || before.moved(acc) {
                Change::Recorded
            } else {
                Change::Volatile
            };
            (decision, change)
        })
    }

    pub fn heartbeat(
        &self,
        user: &UserId,
        id: &StreamId,
        secret: Option<&SecretHash>,
    ) -> Applied<HeartbeatDecision> {
        self.update_existing(user, HeartbeatDecision::Unknown, |acc, now, policy| {
            (
                acc.heartbeat_with(id, secret, now, policy),
                Change::Volatile,
            )
        })
    }

    pub fn resume(&self, user: &UserId, req: StartRequest) -> Applied<ResumeDecision> {
        self.update(user, |acc, now, policy| {
            let before = acc.marks();
            let decision = acc.resume(req, now, policy);
            let change = if decision.is_grant() || before.moved(acc) {
                Change::Recorded
            } else {
                Change::Volatile
            };
            (decision, change)
        })
    }

    pub fn end(&self, user: &UserId, id: &StreamId, reason: EndReason) -> Applied<bool> {
        self.update_existing(user, false, |acc, now, policy| {
            let live_before = acc.live.len();
            let ended = acc.end(id, reason, now, policy);
            // A plan change may also have revoked streams on the way.
            let change = if ended || acc.live.len() != live_before {
                Change::Recorded
            } else {
                Change::Volatile
            };
            (ended, change)
        })
    }

    pub fn set_limit(&self, user: &UserId, limit: Option<Limit>) -> Applied<Vec<StreamId>> {
        self.update(user, |acc, now, policy| {
            (acc.set_limit(limit, now, policy), Change::Recorded)
        })
    }

    pub fn set_plan(&self, user: &UserId, plan: Option<PlanName>) -> Applied<Vec<StreamId>> {
        self.update(user, |acc, now, policy| {
            (acc.set_plan(plan, now, policy), Change::Recorded)
        })
    }

    /// Counts a request of `user` (about `stream`, if given) against the
    /// flood limits kept in the account's entry: the lease's pace, then the
    /// account's. `NotKept` for an account or stream this table lacks.
    pub fn pace(&self, user: &UserId, stream: Option<&StreamId>, rates: Rates) -> Paced {
        let Some(mut entry) = self.accounts.get_mut(user) else {
            return Paced::NOT_KEPT;
        };
        let now = pace_now();
        let entry = &mut **entry;
        let stream = match (stream, rates.stream) {
            (Some(id), Some(rate)) => match entry.account.live.iter_mut().find(|l| &l.id == id) {
                Some(lease) => lease.pace.admit(now, rate),
                None => Verdict::NotKept,
            },
            _ => Verdict::Pass,
        };
        let account = match (stream, rates.account) {
            (Verdict::Wait(_), _) | (_, None) => Verdict::Pass,
            (_, Some(rate)) => entry.pace.admit(now, rate),
        };
        Paced { stream, account }
    }

    pub fn view(&self, user: &UserId) -> Applied<AccountView> {
        let now = self.clock.now();
        match self.accounts.get(user) {
            Some(entry) => Applied {
                value: entry.account.view(now, &self.policy),
                lsn: entry.lsn,
            },
            None => Applied {
                value: Account::default().view(now, &self.policy),
                lsn: 0,
            },
        }
    }

    /// Expires leases and forgets old tombstones in every account, dropping
    /// accounts left with nothing. Returns how many accounts remain.
    ///
    /// It first finds the accounts with something to do, holding each
    /// shard's read lock only while it looks, then fixes them one at a time,
    /// so decisions never wait long behind a sweep.
    pub fn sweep(&self) -> usize {
        let now = self.clock.now();
        let stale: Vec<UserId> = self
            .accounts
            .iter()
            .filter(|e| e.account.is_idle() || e.account.has_lapsed(now, &self.policy))
            .map(|e| e.key().clone())
            .collect();
        for user in stale {
            if let Some(mut entry) = self.accounts.get_mut(&user)
                && entry.account.has_lapsed(now, &self.policy)
            {
                let expired = entry.account.expire(now, &self.policy);
                telemetry::record_decision("expired", expired);
                // Nothing waits for it, so a mass expiry cannot queue ahead
                // of acknowledged writes; `entry.lsn` stays the position of
                // the last change an answer was promised.
                self.journal.record_behind(&user, &entry.account);
            }
            self.accounts.remove_if(&user, |_, e| e.account.is_idle());
        }
        self.journal.swept(now);
        self.accounts.len()
    }

    /// Runs `op` on the account, creating it if needed.
    fn update<R>(
        &self,
        user: &UserId,
        op: impl FnOnce(&mut Account, Timestamp, &Policy) -> (R, Change),
    ) -> Applied<R> {
        let mut entry = self
            .accounts
            .entry(user.clone())
            .or_insert_with(|| Entry::new(Account::default()));
        let applied = self.apply(user, &mut entry, op);
        let idle = entry.account.is_idle();
        drop(entry);
        if idle {
            self.accounts.remove_if(user, |_, e| e.account.is_idle());
        }
        applied
    }

    /// Runs `op` on the account if it exists; otherwise answers `absent`.
    fn update_existing<R>(
        &self,
        user: &UserId,
        absent: R,
        op: impl FnOnce(&mut Account, Timestamp, &Policy) -> (R, Change),
    ) -> Applied<R> {
        match self.accounts.get_mut(user) {
            Some(mut entry) => self.apply(user, &mut entry, op),
            None => Applied {
                value: absent,
                lsn: 0,
            },
        }
    }

    fn apply<R>(
        &self,
        user: &UserId,
        entry: &mut Entry,
        op: impl FnOnce(&mut Account, Timestamp, &Policy) -> (R, Change),
    ) -> Applied<R> {
        let now = self.clock.now();
        let lapsed = entry.account.has_lapsed(now, &self.policy);
        let expired = entry.account.expire(now, &self.policy);
        telemetry::record_decision("expired", expired);
        let (value, change) = op(&mut entry.account, now, &self.policy);
        if change == Change::Recorded || lapsed {
            entry.lsn = self.journal.record(user, &entry.account);
        }
        Applied {
            value,
            lsn: entry.lsn,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::domain::{ManualClock, SystemClock};

    /// Remembers what was recorded, in order.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<(String, Account)>>);

    impl Journal for Recorder {
        fn record(&self, user: &UserId, account: &Account) -> u64 {
            let mut log = self.0.lock().unwrap();
            log.push((user.to_string(), account.clone()));
            log.len() as u64
        }
    }

    fn table() -> (AccountTable<Recorder>, ManualClock) {
        let clock = ManualClock::new(Timestamp::from_millis(1_800_000_000_000));
        let table = AccountTable::new(
            Policy::default(),
            Arc::new(clock.clone()),
            Recorder::default(),
        );
        (table, clock)
    }

    fn user(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    fn req(s: &str) -> StartRequest {
        StartRequest::new(StreamId::parse(s).unwrap())
    }

    #[test]
    fn grants_are_recorded_heartbeats_are_not() {
        let (table, _) = table();
        let applied = table.start(&user("u"), req("a"));
        assert_eq!(applied.lsn, 1);
        let beat = table.heartbeat(&user("u"), &StreamId::parse("a").unwrap(), None);
        assert!(matches!(beat.value, HeartbeatDecision::Renewed(_)));
        assert_eq!(beat.lsn, 1, "a heartbeat waits for the grant it renews");
        assert_eq!(table.journal().0.lock().unwrap().len(), 1);
    }

    #[test]
    fn one_lease_takes_room_for_one_whether_granted_or_restored() {
        let (table, _) = table();
        table.start(&user("u"), req("a"));
        assert_eq!(
            table
                .accounts
                .get(&user("u"))
                .unwrap()
                .account
                .live
                .capacity(),
            1
        );
        let json = r#"{"live":[{"id":"b","started_at":1,"expires_at":2,"seq":0}],"ended":[],"next_seq":1}"#;
        let table = AccountTable::restored(
            Policy::default(),
            Arc::new(SystemClock),
            Recorder::default(),
            vec![(user("r"), serde_json::from_str(json).unwrap())],
        );
        let restored = table.accounts.get(&user("r")).unwrap();
        assert_eq!(restored.account.live.capacity(), 1);
        assert_eq!(serde_json::to_string(&restored.account).unwrap(), json);
    }

    #[test]
    fn the_entry_keeps_each_leases_pace_and_the_accounts() {
        let (table, clock) = table();
        let (u, a, b) = (
            user("u"),
            StreamId::parse("a").unwrap(),
            StreamId::parse("b").unwrap(),
        );
        table.start(&u, req("a"));
        table.start(&u, req("b"));
        let rates = Rates {
            stream: crate::domain::Rate::per_second(10),
            account: crate::domain::Rate::per_second(15),
        };
        let pass = |p: Paced| p.stream == Verdict::Pass && p.account == Verdict::Pass;
        let passed = (0..100)
            .filter(|_| pass(table.pace(&u, Some(&a), rates)))
            .count();
        assert_eq!(passed, 10, "a's burst");
        let refused = table.pace(&u, Some(&a), rates);
        assert!(matches!(refused.stream, Verdict::Wait(_)), "{refused:?}");
        assert_eq!(
            refused.account,
            Verdict::Pass,
            "not counted for the account"
        );
        let passed = (0..100)
            .filter(|_| pass(table.pace(&u, Some(&b), rates)))
            .count();
        assert_eq!(passed, 5, "b has its own pace, the account 5 left");
        assert!(matches!(
            table.pace(&u, None, rates).account,
            Verdict::Wait(_)
        ));
        // Unknown accounts and streams are left to the caller.
        assert_eq!(table.pace(&user("v"), Some(&a), rates), Paced::NOT_KEPT);
        let other = table.pace(&u, Some(&StreamId::parse("c").unwrap()), rates);
        assert_eq!(other.stream, Verdict::NotKept);
        // Paces follow real time, not the decisions' clock: held still, it
        // refills nothing; 150 ms later a has room for one more.
        clock.advance(Duration::from_secs(60));
        assert!(matches!(
            table.pace(&u, Some(&a), rates).stream,
            Verdict::Wait(_)
        ));
        std::thread::sleep(Duration::from_millis(150));
        assert!(pass(table.pace(&u, Some(&a), rates)));
        let beat = table.heartbeat(&u, &a, None).value;
        assert!(matches!(beat, HeartbeatDecision::Renewed(_)), "{beat:?}");
    }

    #[test]
    fn reads_of_unknown_accounts_create_nothing() {
        let (table, _) = table();
        assert!(table.view(&user("nobody")).value.live.is_empty());
        let beat = table.heartbeat(&user("nobody"), &StreamId::parse("x").unwrap(), None);
        assert_eq!(beat.value, HeartbeatDecision::Unknown);
        assert!(
            !table
                .end(
                    &user("nobody"),
                    &StreamId::parse("x").unwrap(),
                    EndReason::Stopped
                )
                .value
        );
        assert_eq!(table.sweep(), 0);
        assert!(table.journal().0.lock().unwrap().is_empty());
    }

    #[test]
    fn sweep_reclaims_idle_accounts_and_records_what_it_changed() {
        let (table, clock) = table();
        table.start(&user("gone"), req("a"));
        table.set_limit(&user("kept"), Some(Limit::new(5).unwrap()));
        assert_eq!(table.sweep(), 2);

        clock.advance(Duration::from_secs(91));
        assert_eq!(table.sweep(), 2, "the expired lease leaves a tombstone");
        let log = table.journal().0.lock().unwrap().clone();
        let (who, last) = log.last().unwrap();
        assert_eq!(who, "gone");
        assert!(last.live.is_empty());
        assert_eq!(last.ended[0].reason, EndReason::Expired);

        clock.advance(Duration::from_secs(900));
        assert_eq!(table.sweep(), 1, "only the limit override is left");
        let log = table.journal().0.lock().unwrap();
        assert!(log.last().unwrap().1.is_idle());
    }

    #[test]
    fn clearing_the_only_state_forgets_the_account() {
        let (table, _) = table();
        table.set_limit(&user("u"), Some(Limit::new(5).unwrap()));
        table.set_limit(&user("u"), None);
        assert_eq!(table.accounts.len(), 0);
        let log = table.journal().0.lock().unwrap();
        assert!(
            log.last().unwrap().1.is_idle(),
            "the journal learns it is gone"
        );
    }
}
