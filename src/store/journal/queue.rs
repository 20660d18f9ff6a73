//! What waits for the writer: acknowledged writes in log order, the
//! coalesced background queue, and renewals noted by heartbeats.

use std::collections::{HashMap, VecDeque};

use crate::domain::{StreamId, Timestamp, UserId};

/// Everything recorded and not yet taken by the writer; behind the
/// journal's one mutex.
pub(super) struct Pending {
    pub next_lsn: u64,
    pub writes: Vec<Write>,
    pub behind: Behind,
    /// Renewed deadlines not yet taken by the writer, as noted: a push
    /// costs a heartbeat no lookup and, once the buffer has grown, no
    /// allocation; the writer keeps the latest per lease.
    pub renewals: Vec<Renewal>,
    /// When the last complete sweep began: it queued the expiry of every
    /// lease whose deadline was before then (see `Writer::take`).
    pub swept_at: Option<Timestamp>,
    pub closing: bool,
}

impl Pending {
    pub fn new() -> Self {
        Self {
            next_lsn: 1,
            writes: Vec::new(),
            behind: Behind::default(),
            renewals: Vec::new(),
            swept_at: None,
            closing: false,
        }
    }
}

/// A heartbeat's renewed deadline, as noted.
pub(super) type Renewal = (UserId, StreamId, Timestamp);

/// The latest renewed deadline per lease, as the writer writes them.
pub(super) type Renewals = HashMap<(UserId, StreamId), Timestamp>;

/// An acknowledged write: an answer waits until its `lsn` is durable.
pub(super) struct Write {
    pub lsn: u64,
    pub user: UserId,
    /// The account's new state as JSON; `None` deletes it.
    pub state: Option<Vec<u8>>,
}

/// A write no answer waits for: the account, its state (`None` deletes
/// it), and the deadline at or before which the account's `renewals` rows
/// are stale (ms; the earliest deadline of the state's leases, or
/// `i64::MAX` when it has none): no lease of the state has a deadline
/// below it, so deleting those rows cannot shorten one at restore.
pub(super) type BehindWrite = (UserId, Option<Vec<u8>>, i64);

/// Writes no answer waits for, oldest first, at most one per account: a
/// newer state replaces a queued one in place, and an acknowledged write
/// of the account (which carries the newer state) cancels it.
#[derive(Default)]
pub(super) struct Behind {
    queue: VecDeque<Option<BehindWrite>>,
    /// Position in `queue` of each account's queued write, counted from
    /// the first write ever queued (`popped` of them are gone).
    index: HashMap<UserId, u64>,
    popped: u64,
}

impl Behind {
    pub fn push(&mut self, user: &UserId, state: Option<Vec<u8>>, stale_until: i64) {
        let write = Some((user.clone(), state, stale_until));
        match self.index.get(user) {
            Some(&at) => self.queue[(at - self.popped) as usize] = write,
            None => {
                self.index
                    .insert(user.clone(), self.popped + self.queue.len() as u64);
                self.queue.push_back(write);
            }
        }
    }

    pub fn cancel(&mut self, user: &UserId) {
        if let Some(at) = self.index.remove(user) {
            self.queue[(at - self.popped) as usize] = None;
        }
    }

    pub fn take(&mut self, max: usize) -> Vec<BehindWrite> {
        let mut taken = Vec::new();
        while taken.len() < max {
            let Some(slot) = self.queue.pop_front() else {
                break;
            };
            self.popped += 1;
            if let Some(write) = slot {
                self.index.remove(&write.0);
                taken.push(write);
            }
        }
        taken
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(n: u32) -> UserId {
        UserId::parse(&format!("u{n}")).unwrap()
    }

    #[test]
    fn behind_keeps_one_write_per_account_in_first_queued_order() {
        let mut behind = Behind::default();
        behind.push(&user(1), Some(b"1a".to_vec()), 5);
        behind.push(&user(2), Some(b"2".to_vec()), 5);
        behind.push(&user(1), Some(b"1b".to_vec()), 6);
        behind.push(&user(3), None, i64::MAX);
        behind.cancel(&user(2));
        let first = behind.take(1);
        assert_eq!(first, [(user(1), Some(b"1b".to_vec()), 6)]);
        assert_eq!(
            behind.take(10),
            [(user(3), None, i64::MAX)],
            "the cancelled write is gone"
        );
        assert!(behind.is_empty());
        behind.push(&user(1), None, i64::MAX);
        assert_eq!(behind.take(10), [(user(1), None, i64::MAX)]);
    }
}
