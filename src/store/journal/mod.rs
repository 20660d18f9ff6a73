//! Group-committed persistence of account states to SQLite.
//!
//! Decisions hand the new state of an account to [`SqliteJournal::record`]
//! (cheap: a push under a mutex) and get a log sequence number. One writer
//! thread takes everything pending, writes it in one transaction, and one
//! fsync later publishes the highest number it made durable; answers wait
//! for their number. Many concurrent requests thus share one fsync.
//!
//! Heartbeats are written behind: [`SqliteJournal::renewed`] notes the new
//! deadline of a lease (nobody waits for it), and the writer persists the
//! notes with its next batch, at the latest [`FLUSH_EVERY`] later,
//! appended to `renewal_log`, together with `synced_at`: a time before
//! which every renewal is on disk. The log is pruned from the front once a
//! complete sweep covers its entries (`Writer::prune_through`; DESIGN.md,
//! "file:"). While any lease may still be live the writer moves
//! `synced_at` on every [`FLUSH_EVERY`] even with nothing else to write, so
//! after a crash the restore can tell a lease that had run out (its
//! deadline is before `synced_at`: no renewal can be missing, and a lease
//! that ran out is never renewed again) from one that may have been renewed
//! in the last unflushed moment (see `FileStore::open`).
//!
//! Changes no answer waits for (the sweeper's expiries) wait in a separate,
//! coalesced queue and go to disk a bounded chunk per transaction, after the
//! acknowledged writes (a small chunk while answers wait, a large one when
//! none do): when a million leases lapse at once, a grant still waits for
//! one small transaction, not for a million rows.
//!
//! The parts: [`queue`] (what waits for the writer), [`writer`] (the
//! thread and its transactions), [`database`] (the file, its tables and
//! how a batch is written), [`restore`] (reading them back at start).

mod database;
mod queue;
mod restore;
mod writer;

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::watch;

use super::StoreError;
use super::table::Journal;
use crate::domain::{Account, Clock, StreamId, Timestamp, UserId};
pub(crate) use database::open;
use queue::{Pending, Write};
pub(crate) use restore::Restored;
use writer::Writer;

/// The longest a renewal waits in memory before the writer takes it. With
/// the writer's note slack this bounds how far `synced_at` trails the clock
/// while leases may be live: the write-behind bound (2 s, while the disk
/// keeps up).
pub(crate) const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// How far the writer got.
#[derive(Clone, Copy, Debug, Default)]
struct Durable {
    lsn: u64,
    /// The last write failed: nothing can be acknowledged until a retry
    /// succeeds.
    failed: bool,
}

/// What the handle and the writer thread share.
struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
}

pub(crate) struct SqliteJournal {
    shared: Arc<Shared>,
    durable: watch::Receiver<Durable>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl SqliteJournal {
    /// Starts the writer thread on an opened database. `clock` and
    /// `lease_ttl` time `synced_at` (see the module's documentation);
    /// `log_tail` is what the database's `renewal_log` already holds.
    pub(crate) fn start(
        conn: Connection,
        clock: Arc<dyn Clock>,
        lease_ttl: Duration,
        log_tail: Option<(i64, Timestamp)>,
    ) -> Self {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::new()),
            wake: Condvar::new(),
        });
        let (tx, durable) = watch::channel(Durable::default());
        let writer = {
            let writer = Writer::new(conn, shared.clone(), tx, clock, lease_ttl, log_tail);
            std::thread::Builder::new()
                .name("streamguard-journal".into())
                .spawn(move || writer.run())
                .expect("spawning the journal writer")
        };
        Self {
            shared,
            durable,
            writer: Mutex::new(Some(writer)),
        }
    }

    /// Resolves once everything up to `lsn` is on disk.
    pub(crate) async fn wait(&self, lsn: u64) -> Result<(), StoreError> {
        let reached = |d: &Durable| d.lsn >= lsn || d.failed;
        let current = *self.durable.borrow();
        let durable = if reached(&current) {
            current
        } else {
            let mut rx = self.durable.clone();
            let seen = rx.wait_for(reached).await;
            seen.map(|d| *d).unwrap_or(Durable {
                lsn: 0,
                failed: true,
            })
        };
        if durable.lsn >= lsn {
            Ok(())
        } else {
            Err(StoreError::unavailable(
                "writing to disk",
                "the journal writer failed",
            ))
        }
    }

    /// Notes a heartbeat's new deadline, to be written behind. Cheap: a
    /// push under the queue's mutex (ids up to 24 bytes are copied inline).
    pub(crate) fn renewed(&self, user: &UserId, stream: &StreamId, expires_at: Timestamp) {
        if !self.is_healthy() {
            return;
        }
        let mut pending = self.shared.pending.lock().unwrap();
        pending
            .renewals
            .push((user.clone(), stream.clone(), expires_at));
    }

    pub(crate) fn is_healthy(&self) -> bool {
        !self.durable.borrow().failed
    }

    /// Writes what is pending, stops the writer and waits for it.
    pub(crate) fn close(&self) {
        self.shared.pending.lock().unwrap().closing = true;
        self.shared.wake.notify_one();
        if let Some(writer) = self.writer.lock().unwrap().take() {
            let _ = writer.join();
        }
    }
}

impl Journal for SqliteJournal {
    fn record(&self, user: &UserId, account: &Account) -> u64 {
        // Queued even while the disk fails: the writer retries, and the
        // state must reach the disk once it can (the store refuses new
        // decisions meanwhile; this is a race with one, or the sweeper).
        let state = (!account.is_idle())
            .then(|| serde_json::to_vec(account).expect("an account always serializes"));
        let mut pending = self.shared.pending.lock().unwrap();
        let lsn = pending.next_lsn;
        pending.next_lsn += 1;
        pending.behind.cancel(user);
        pending.writes.push(Write {
            lsn,
            user: user.clone(),
            state,
        });
        drop(pending);
        self.shared.wake.notify_one();
        lsn
    }

    fn record_behind(&self, user: &UserId, account: &Account) {
        if !self.is_healthy() {
            return;
        }
        let state = (!account.is_idle())
            .then(|| serde_json::to_vec(account).expect("an account always serializes"));
        let stale_until = account.live.iter().map(|l| l.expires_at.as_millis()).min();
        self.shared.pending.lock().unwrap().behind.push(
            user,
            state,
            stale_until.unwrap_or(i64::MAX),
        );
        self.shared.wake.notify_one();
    }

    fn swept(&self, at: Timestamp) {
        let mut pending = self.shared.pending.lock().unwrap();
        pending.swept_at = pending.swept_at.max(Some(at));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Limit;

    fn user(n: u32) -> UserId {
        UserId::parse(&format!("u{n}")).unwrap()
    }

    /// A journal on a fresh or existing database in `dir`, 90 s leases.
    fn started(dir: &std::path::Path) -> SqliteJournal {
        let (conn, _) = open(dir).unwrap();
        SqliteJournal::start(
            conn,
            Arc::new(crate::domain::SystemClock),
            Duration::from_secs(90),
            None,
        )
    }

    /// An account told apart by its limit override.
    fn account(limit: u32) -> Account {
        Account {
            limit: Some(Limit::new(limit).unwrap()),
            ..Account::default()
        }
    }

    #[tokio::test]
    async fn the_newest_state_wins_whichever_queue_it_came_from() {
        let dir = tempfile::tempdir().unwrap();
        let journal = started(dir.path());
        for n in 0..5_000 {
            journal.record_behind(&user(n), &account(1));
        }
        // An acknowledged write supersedes the queued one...
        let lsn = journal.record(&user(7), &account(2));
        // ...and a later background write supersedes an acknowledged one.
        journal.record(&user(8), &account(2));
        journal.record_behind(&user(8), &account(3));
        journal.wait(lsn).await.unwrap();
        journal.close();

        let (_, stored) = open(dir.path()).unwrap();
        let limit = |n: u32| {
            let (_, acc) = stored.accounts.iter().find(|(u, _)| *u == user(n)).unwrap();
            acc.limit.unwrap().get()
        };
        assert_eq!(
            stored.accounts.len(),
            5_000,
            "close drains the background queue"
        );
        assert_eq!((limit(7), limit(8), limit(9)), (2, 3, 1));
    }

    fn with_leases(deadlines: &[(&str, i64)]) -> Account {
        let live: Vec<_> = deadlines
            .iter()
            .map(|&(id, ms)| crate::domain::Lease {
                id: StreamId::parse(id).unwrap(),
                device_id: None,
                content_id: None,
                tags: Default::default(),
                secret: None,
                started_at: Timestamp::from_millis(0),
                expires_at: Timestamp::from_millis(ms),
                seq: 0,
                pace: Default::default(),
            })
            .collect();
        Account {
            live: live.into(),
            ..Account::default()
        }
    }

    #[tokio::test]
    async fn a_renewal_keeps_the_later_of_its_deadlines_across_batches() {
        let dir = tempfile::tempdir().unwrap();
        let journal = started(dir.path());
        let stream = |i: i64| StreamId::parse(&format!("s{i}")).unwrap();
        for i in 0..150 {
            journal.renewed(&user(1), &stream(i), Timestamp::from_millis(1_000 + i));
        }
        journal
            .wait(journal.record(&user(9), &Account::default()))
            .await
            .unwrap();
        // A later batch: even streams later, odd ones earlier (kept).
        for i in 0..150 {
            let shift = if i % 2 == 0 { 500 } else { -500 };
            journal.renewed(
                &user(1),
                &stream(i),
                Timestamp::from_millis(1_000 + i + shift),
            );
        }
        journal
            .wait(journal.record(&user(9), &account(2)))
            .await
            .unwrap();
        journal.close();

        let (_, stored) = open(dir.path()).unwrap();
        assert_eq!(stored.renewals.len(), 150);
        for i in 0..150 {
            let expected = 1_000 + i + if i % 2 == 0 { 500 } else { 0 };
            assert_eq!(
                stored.renewals[&(user(1), stream(i))].as_millis(),
                expected,
                "s{i}"
            );
        }
    }

    #[tokio::test]
    async fn a_lease_renewed_twice_in_one_batch_restores_the_later_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let journal = started(dir.path());
        let stream = StreamId::parse("s").unwrap();
        for ms in [2_000, 3_000, 2_500] {
            journal.renewed(&user(1), &stream, Timestamp::from_millis(ms));
        }
        journal
            .wait(journal.record(&user(9), &account(2)))
            .await
            .unwrap();
        journal.close();

        let (_, stored) = open(dir.path()).unwrap();
        assert_eq!(stored.renewals[&(user(1), stream)].as_millis(), 3_000);
    }

    #[tokio::test]
    async fn a_complete_sweep_lets_the_log_drop_what_it_covers() {
        let dir = tempfile::tempdir().unwrap();
        let journal = started(dir.path());
        let renew = |id: &str, ms: i64| {
            journal.renewed(
                &user(1),
                &StreamId::parse(id).unwrap(),
                Timestamp::from_millis(ms),
            )
        };
        let commit = |limit: u32| {
            let lsn = journal.record(&user(9), &account(limit));
            journal.wait(lsn)
        };
        // Three transactions of renewals: deadlines up to 200, then one at
        // 300 with one at 900, then 1 000.
        renew("a", 100);
        renew("b", 200);
        renew("d", 150);
        commit(1).await.unwrap();
        renew("a", 300);
        renew("c", 900);
        commit(2).await.unwrap();
        renew("b", 1_000);
        commit(3).await.unwrap();
        // A sweep from 500 on: the first transaction's entries go; the
        // second's stay whole (one of its deadlines is later), and with it
        // every later one.
        journal.swept(Timestamp::from_millis(500));
        commit(4).await.unwrap();
        journal.close();

        let (_, stored) = open(dir.path()).unwrap();
        let mut rows: Vec<_> = stored
            .renewals
            .iter()
            .map(|((_, s), at)| (s.as_str().to_owned(), at.as_millis()))
            .collect();
        rows.sort();
        // `d`, renewed only in the first transaction, is gone.
        assert_eq!(
            rows,
            [("a".into(), 300), ("b".into(), 1_000), ("c".into(), 900)]
        );
        let logged: i64 = rusqlite::Connection::open(dir.path().join("streamguard.sqlite3"))
            .unwrap()
            .query_row("SELECT count(*) FROM renewal_log", [], |r| r.get(0))
            .unwrap();
        assert_eq!(logged, 3);
        // What is left is the log's tail, for the next run to prune.
        assert_eq!(stored.log_tail.unwrap().1.as_millis(), 1_000);
    }

    #[tokio::test]
    async fn the_log_keeps_everything_until_a_sweep_is_complete() {
        let dir = tempfile::tempdir().unwrap();
        let journal = started(dir.path());
        let stream = StreamId::parse("a").unwrap();
        journal.renewed(&user(1), &stream, Timestamp::from_millis(100));
        journal
            .wait(journal.record(&user(9), &account(1)))
            .await
            .unwrap();
        journal
            .wait(journal.record(&user(9), &account(2)))
            .await
            .unwrap();
        journal.close();
        let (_, stored) = open(dir.path()).unwrap();
        assert_eq!(stored.renewals.len(), 1, "no sweep, no pruning");
        assert_eq!(stored.log_tail.map(|(_, at)| at.as_millis()), Some(100));
    }

    #[tokio::test]
    async fn a_later_run_prunes_what_an_earlier_one_logged() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(crate::domain::SystemClock);
        let (conn, _) = open(dir.path()).unwrap();
        let journal = SqliteJournal::start(conn, clock.clone(), Duration::from_secs(90), None);
        journal.renewed(
            &user(1),
            &StreamId::parse("a").unwrap(),
            Timestamp::from_millis(100),
        );
        journal
            .wait(journal.record(&user(9), &account(1)))
            .await
            .unwrap();
        journal.close();

        let (conn, stored) = open(dir.path()).unwrap();
        assert_eq!(stored.renewals.len(), 1);
        let journal = SqliteJournal::start(conn, clock, Duration::from_secs(90), stored.log_tail);
        journal.swept(Timestamp::from_millis(500));
        journal
            .wait(journal.record(&user(9), &account(2)))
            .await
            .unwrap();
        journal.close();
        let (_, stored) = open(dir.path()).unwrap();
        assert!(stored.renewals.is_empty());
        assert_eq!(stored.log_tail, None);
    }

    #[tokio::test]
    async fn rows_of_the_old_renewals_table_go_as_their_accounts_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, _) = open(dir.path()).unwrap();
        // What a version before the log left behind.
        conn.execute_batch(
            "INSERT INTO renewals VALUES ('u1', 'a', 150), ('u1', 'b', 350),
                                         ('u2', 'a', 150), ('u2', 'b', 350),
                                         ('u3', 'a', 150);",
        )
        .unwrap();
        let clock = Arc::new(crate::domain::SystemClock);
        let journal = SqliteJournal::start(conn, clock, Duration::from_secs(90), None);
        // An acknowledged write of u1 drops all of its rows; the sweeper's
        // write of u2, whose earliest deadline is 200, drops the rows up
        // to it; u3 is not written.
        journal.record(&user(1), &with_leases(&[("a", 400)]));
        journal.record_behind(&user(2), &with_leases(&[("b", 200)]));
        journal.close();
        let (_, stored) = open(dir.path()).unwrap();
        let mut rows: Vec<_> = stored
            .renewals
            .iter()
            .map(|((u, s), at)| (u.as_str().to_owned(), s.as_str().to_owned(), at.as_millis()))
            .collect();
        rows.sort();
        assert_eq!(
            rows,
            [
                ("u2".to_owned(), "b".to_owned(), 350),
                ("u3".to_owned(), "a".to_owned(), 150)
            ]
        );
    }
}
