//! What a decision changed, as DynamoDB items: pure, no I/O. The account
//! item is always rewritten; lease items are deleted when their stream
//! ended and put when a stream was granted (a renewal is written by the
//! heartbeat's own `UpdateItem`, never here).

use std::collections::{HashMap, HashSet};

use crate::domain::{Account, Lease, Policy, StreamId, Timestamp};

/// Most items one `TransactWriteItems` may hold (DynamoDB's limit).
pub(super) const MAX_TRANSACTION_ITEMS: usize = 100;

/// What a decision changed, as items to write.
pub(super) struct Diff {
    /// The account after the decision (its item is always rewritten).
    pub account: Account,
    /// Lease items to delete.
    pub ended: Vec<Ended>,
    /// Lease items to put, with the `expires_at` read of an expired lease
    /// item of the same id it replaces.
    pub added: Vec<(Lease, Option<Timestamp>)>,
}

pub(super) struct Ended {
    pub id: StreamId,
    /// Set when the lease ended as expired on what was read: the delete
    /// is conditioned on `expires_at` being unchanged.
    pub expired_at: Option<Timestamp>,
}

impl Diff {
    pub fn between(before: &Account, after: &Account, now: Timestamp) -> Diff {
        let kept: HashMap<&StreamId, &Lease> = after.live.iter().map(|l| (&l.id, l)).collect();
        let read: HashMap<&StreamId, &Lease> = before.live.iter().map(|l| (&l.id, l)).collect();
        let expired_read = |l: &Lease| (!l.is_live(now)).then_some(l.expires_at);
        let ended = before
            .live
            .iter()
            .filter(|l| !kept.contains_key(&l.id))
            .map(|l| Ended {
                id: l.id.clone(),
                expired_at: expired_read(l),
            })
            .collect();
        let added = after
            .live
            .iter()
            .filter(|l| read.get(&l.id).is_none_or(|old| old.seq != l.seq))
            .map(|l| (l.clone(), read.get(&l.id).and_then(|old| expired_read(old))))
            .collect();
        Diff {
            account: after.clone(),
            ended,
            added,
        }
    }

    /// Items in the transaction.
    pub fn items(&self) -> usize {
        1 + self.ended.len() + self.added.len()
    }

    /// The first `MAX_TRANSACTION_ITEMS - 1` lease items this diff ends,
    /// with the account as it is once they are gone: a state every reader
    /// settles to the same result (see DESIGN.md). Leases that expiry and
    /// the limit in force end anyway (what any reader's rules end) go
    /// first, the decision's own ends last.
    pub fn first_part(
        &self,
        before: &Account,
        after: &Account,
        now: Timestamp,
        policy: &Policy,
    ) -> Diff {
        let mut settled = before.clone();
        settled.expire(now, policy);
        let still_live: HashSet<&StreamId> = settled.live.iter().map(|l| &l.id).collect();
        let mut order: Vec<&Ended> = self.ended.iter().collect();
        order.sort_by_key(|e| still_live.contains(&e.id));
        let (first, rest) = order.split_at(order.len().min(MAX_TRANSACTION_ITEMS - 1));
        let ended: Vec<Ended> = first
            .iter()
            .map(|e| Ended {
                id: e.id.clone(),
                expired_at: e.expired_at,
            })
            .collect();
        let gone: HashSet<&StreamId> = ended.iter().map(|e| &e.id).collect();
        let pending: HashSet<&StreamId> = rest.iter().map(|e| &e.id).collect();
        let mut account = after.clone();
        account.live = before
            .live
            .iter()
            .filter(|l| !gone.contains(&l.id))
            .cloned()
            .collect();
        account.ended.retain(|t| !pending.contains(&t.id));
        Diff {
            account,
            ended,
            added: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::{EndReason, Limit, StartRequest};

    const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);

    fn sid(s: &str) -> StreamId {
        StreamId::parse(s).unwrap()
    }

    fn at(secs: u64) -> Timestamp {
        T0 + Duration::from_secs(secs)
    }

    /// An account with streams `ids` started at `T0`.
    fn playing(ids: &[&str], policy: &Policy) -> Account {
        let mut account = Account::default();
        for id in ids {
            account.start(StartRequest::new(sid(id)), T0, policy);
        }
        account
    }

    fn ended(diff: &Diff) -> Vec<(&str, Option<Timestamp>)> {
        diff.ended
            .iter()
            .map(|e| (e.id.as_str(), e.expired_at))
            .collect()
    }

    fn added(diff: &Diff) -> Vec<(&str, Option<Timestamp>)> {
        diff.added
            .iter()
            .map(|(l, replaces)| (l.id.as_str(), *replaces))
            .collect()
    }

    #[test]
    fn no_change_rewrites_the_account_item_alone() {
        let policy = Policy::default();
        let account = playing(&["a", "b"], &policy);
        let diff = Diff::between(&account, &account, at(1));
        assert_eq!((ended(&diff), added(&diff)), (vec![], vec![]));
        assert_eq!(diff.items(), 1);
        assert_eq!(diff.account, account);
    }

    #[test]
    fn a_new_stream_puts_its_lease_item() {
        let policy = Policy::default();
        let before = playing(&["a"], &policy);
        let mut after = before.clone();
        after.start(StartRequest::new(sid("b")), at(1), &policy);
        let diff = Diff::between(&before, &after, at(1));
        assert_eq!(added(&diff), [("b", None)]);
        assert_eq!(ended(&diff), []);
        assert_eq!(diff.items(), 2);
        assert_eq!(diff.account.live.len(), 2);
    }

    #[test]
    fn a_renewed_lease_writes_no_lease_item() {
        let policy = Policy::default();
        let before = playing(&["a"], &policy);
        let mut after = before.clone();
        after.heartbeat(&sid("a"), at(30), &policy);
        assert_ne!(after.live[0].expires_at, before.live[0].expires_at);
        let diff = Diff::between(&before, &after, at(30));
        assert_eq!((ended(&diff), added(&diff)), (vec![], vec![]));
    }

    #[test]
    fn a_stopped_stream_deletes_its_item_unconditionally_and_leaves_a_tombstone() {
        let policy = Policy::default();
        let before = playing(&["a", "b"], &policy);
        let mut after = before.clone();
        assert!(after.end(&sid("a"), EndReason::Stopped, at(1), &policy));
        let diff = Diff::between(&before, &after, at(1));
        assert_eq!(ended(&diff), [("a", None)]);
        assert_eq!(added(&diff), []);
        let tombstones: Vec<_> = diff.account.ended.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(tombstones, ["a"], "the account item carries the tombstone");
    }

    #[test]
    fn an_expired_lease_is_deleted_only_if_no_heartbeat_renewed_it() {
        let policy = Policy::default();
        let before = playing(&["a"], &policy);
        let deadline = before.live[0].expires_at;
        let now = at(100);
        let mut after = before.clone();
        after.expire(now, &policy);
        let diff = Diff::between(&before, &after, now);
        assert_eq!(ended(&diff), [("a", Some(deadline))]);
        let reasons: Vec<_> = diff.account.ended.iter().map(|t| t.reason).collect();
        assert_eq!(reasons, [EndReason::Expired]);
    }

    #[test]
    fn a_stream_started_again_over_its_expired_item_replaces_it_conditionally() {
        let policy = Policy::default();
        let before = playing(&["a"], &policy);
        let deadline = before.live[0].expires_at;
        let now = at(100);
        let mut after = before.clone();
        after.start(StartRequest::new(sid("a")), now, &policy);
        let diff = Diff::between(&before, &after, now);
        assert_eq!(added(&diff), [("a", Some(deadline))]);
        assert_eq!(ended(&diff), [], "the put replaces the item, no delete");
    }

    #[test]
    fn a_lowered_limit_deletes_the_revoked_items_and_rewrites_the_account() {
        let policy = Policy::default();
        let before = playing(&["a", "b", "c"], &policy);
        let mut after = before.clone();
        let revoked = after.set_limit(Some(Limit::new(1).unwrap()), at(1), &policy);
        assert_eq!(revoked.len(), 2);
        let diff = Diff::between(&before, &after, at(1));
        let mut gone: Vec<_> = ended(&diff).into_iter().map(|(id, _)| id).collect();
        gone.sort_unstable();
        let mut expected: Vec<_> = revoked.iter().map(StreamId::as_str).collect();
        expected.sort_unstable();
        assert_eq!(gone, expected);
        assert_eq!(diff.account.limit, Some(Limit::new(1).unwrap()));
    }

    #[test]
    fn a_raised_limit_only_rewrites_the_account_item() {
        let policy = Policy::default();
        let before = playing(&["a"], &policy);
        let mut after = before.clone();
        after.set_limit(Some(Limit::new(9).unwrap()), at(1), &policy);
        let diff = Diff::between(&before, &after, at(1));
        assert_eq!(diff.items(), 1);
        assert_eq!(diff.account.limit, Some(Limit::new(9).unwrap()));
    }

    #[test]
    fn a_diff_too_large_for_one_transaction_commits_expired_ends_first() {
        let policy = Policy {
            default_limit: Limit::new(200).unwrap(),
            ..Policy::default()
        };
        let ids: Vec<String> = (0..150).map(|n| format!("s{n:03}")).collect();
        let mut before = Account::default();
        for (n, id) in ids.iter().enumerate() {
            // The first 100 run out at 90 s, the others later.
            let now = if n < 100 { T0 } else { at(60) };
            before.start(StartRequest::new(sid(id)), now, &policy);
        }
        let now = at(100);
        let mut after = before.clone();
        after.set_limit(Some(Limit::new(1).unwrap()), now, &policy);
        let diff = Diff::between(&before, &after, now);
        assert_eq!(diff.items(), 1 + 149, "one stream stays");
        let part = diff.first_part(&before, &after, now, &policy);
        assert_eq!(part.items(), MAX_TRANSACTION_ITEMS);
        assert!(
            part.ended.iter().all(|e| e.expired_at.is_some()),
            "the ends any reader implies go first"
        );
        let live: HashSet<&str> = part.account.live.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(live.len(), 150 - (MAX_TRANSACTION_ITEMS - 1));
        assert!(part.ended.iter().all(|e| !live.contains(e.id.as_str())));
        assert!(part.added.is_empty());
    }
}
