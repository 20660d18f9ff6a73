//! Group-committed persistence of account states to SQLite.
//!
//! Decisions hand the new state of an account to [`SqliteJournal::record`]
//! (cheap: a push under a mutex) and get a log sequence number. One writer
//! thread takes everything pending, writes it in one transaction, and one
//! fsync later publishes the highest number it made durable; answers wait
//! for their number. Many concurrent requests thus share one fsync.
//!
//! Changes no answer waits for (the sweeper's expiries) wait in a separate,
//! coalesced queue and go to disk a bounded chunk per transaction, after the
//! acknowledged writes (a small chunk while answers wait, a large one when
//! none do): when a million leases lapse at once, a grant still waits for
//! one small transaction, not for a million rows.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use rusqlite::{Connection, params};
use tokio::sync::watch;

use super::StoreError;
use super::table::Journal;
use crate::domain::{Account, UserId};

const DB_FILE: &str = "streamguard.sqlite3";

/// How far the writer got.
#[derive(Clone, Copy, Debug, Default)]
struct Durable {
    lsn: u64,
    /// A write failed: nothing after it can be acknowledged.
    failed: bool,
}

struct Pending {
    next_lsn: u64,
    writes: Vec<Write>,
    behind: Behind,
    closing: bool,
}

/// Background rows per transaction while answers wait for it: each row of
/// a large table dirties its own page, so a big chunk would make the fsync
/// they wait for slow (1 024 rows took a start from a few ms to ≈ 60 ms).
const BEHIND_WHILE_BUSY: usize = 32;
/// Background rows per transaction when no answer waits.
const BEHIND_WHILE_IDLE: usize = 1024;

/// Writes no answer waits for, oldest first, at most one per account: a
/// newer state replaces a queued one in place, and an acknowledged write
/// of the account (which carries the newer state) cancels it.
#[derive(Default)]
struct Behind {
    queue: VecDeque<Option<(UserId, Option<Vec<u8>>)>>,
    /// Position in `queue` of each account's queued write, counted from
    /// the first write ever queued (`popped` of them are gone).
    index: HashMap<UserId, u64>,
    popped: u64,
}

impl Behind {
    fn push(&mut self, user: &UserId, state: Option<Vec<u8>>) {
        match self.index.get(user) {
            Some(&at) => self.queue[(at - self.popped) as usize] = Some((user.clone(), state)),
            None => {
                self.index
                    .insert(user.clone(), self.popped + self.queue.len() as u64);
                self.queue.push_back(Some((user.clone(), state)));
            }
        }
    }

    fn cancel(&mut self, user: &UserId) {
        if let Some(at) = self.index.remove(user) {
            self.queue[(at - self.popped) as usize] = None;
        }
    }

    fn take(&mut self, max: usize) -> Vec<(UserId, Option<Vec<u8>>)> {
        let mut taken = Vec::new();
        while taken.len() < max {
            let Some(slot) = self.queue.pop_front() else {
                break;
            };
            self.popped += 1;
            if let Some((user, state)) = slot {
                self.index.remove(&user);
                taken.push((user, state));
            }
        }
        taken
    }

    fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

struct Write {
    lsn: u64,
    user: UserId,
    /// The account's new state as JSON; `None` deletes it.
    state: Option<Vec<u8>>,
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
}

pub(crate) struct SqliteJournal {
    shared: Arc<Shared>,
    durable: watch::Receiver<Durable>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// Opens (creating if needed) the database in `dir`, takes its exclusive
/// lock and returns every stored account.
pub(crate) fn open(dir: &Path) -> Result<(Connection, Vec<(UserId, Account)>), StoreError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| StoreError::unavailable("creating the data directory", e))?;
    let conn = Connection::open(dir.join(DB_FILE))
        .map_err(|e| StoreError::unavailable("opening the database", e))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA locking_mode = EXCLUSIVE;
         CREATE TABLE IF NOT EXISTS accounts (
             user_id TEXT PRIMARY KEY NOT NULL,
             state   BLOB NOT NULL
         ) WITHOUT ROWID;
         BEGIN IMMEDIATE; COMMIT;",
    )
    .map_err(|e| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            StoreError::Config(format!(
                "{} is in use by another streamguard process",
                dir.display()
            ))
        }
        _ => StoreError::unavailable("preparing the database", e),
    })?;
    let accounts = load(&conn)?;
    Ok((conn, accounts))
}

fn load(conn: &Connection) -> Result<Vec<(UserId, Account)>, StoreError> {
    let read = |e| StoreError::unavailable("reading the database", e);
    let mut stmt = conn
        .prepare("SELECT user_id, state FROM accounts")
        .map_err(read)?;
    let mut rows = stmt.query([]).map_err(read)?;
    let mut accounts = Vec::new();
    while let Some(row) = rows.next().map_err(read)? {
        let user: String = row.get(0).map_err(read)?;
        let state: Vec<u8> = row.get(1).map_err(read)?;
        let corrupt = |detail: String| StoreError::Corrupt {
            detail: format!("account {user:?}: {detail}"),
        };
        let id = UserId::parse(&user).map_err(|e| corrupt(e.to_string()))?;
        let account = serde_json::from_slice(&state).map_err(|e| corrupt(e.to_string()))?;
        accounts.push((id, account));
    }
    Ok(accounts)
}

impl SqliteJournal {
    /// Starts the writer thread on an opened database.
    pub(crate) fn start(conn: Connection) -> Self {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                next_lsn: 1,
                writes: Vec::new(),
                behind: Behind::default(),
                closing: false,
            }),
            wake: Condvar::new(),
        });
        let (tx, durable) = watch::channel(Durable::default());
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("streamguard-journal".into())
                .spawn(move || write_loop(conn, &shared, &tx))
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
        if !self.is_healthy() {
            // Nothing drains the queue once the writer has failed, and the
            // answer waiting for this write is a 503 either way.
            return u64::MAX;
        }
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
        self.shared.pending.lock().unwrap().behind.push(user, state);
        self.shared.wake.notify_one();
    }
}

fn write_loop(mut conn: Connection, shared: &Shared, durable: &watch::Sender<Durable>) {
    loop {
        let (batch, behind, closing) = {
            let mut pending = shared.pending.lock().unwrap();
            while pending.writes.is_empty() && pending.behind.is_empty() && !pending.closing {
                pending = shared.wake.wait(pending).unwrap();
            }
            let chunk = if pending.writes.is_empty() {
                BEHIND_WHILE_IDLE
            } else {
                BEHIND_WHILE_BUSY
            };
            let behind = pending.behind.take(chunk);
            (std::mem::take(&mut pending.writes), behind, pending.closing)
        };
        if batch.is_empty() && behind.is_empty() {
            if closing {
                return;
            }
            continue;
        }
        match write_batch(&mut conn, &batch, &behind) {
            Ok(()) => {
                metrics::histogram!("streamguard_journal_batch_size").record(batch.len() as f64);
                if let Some(last) = batch.last().map(|w| w.lsn) {
                    durable.send_modify(|d| d.lsn = last);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "journal write failed; the store refuses further writes");
                durable.send_modify(|d| d.failed = true);
                return;
            }
        }
    }
}

/// Writes `batch` and then `behind` (whose states are newer where both
/// name an account: an acknowledged write cancels older queued ones).
fn write_batch(
    conn: &mut Connection,
    batch: &[Write],
    behind: &[(UserId, Option<Vec<u8>>)],
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut put = tx.prepare_cached(
            "INSERT INTO accounts (user_id, state) VALUES (?1, ?2)
             ON CONFLICT (user_id) DO UPDATE SET state = excluded.state",
        )?;
        let mut delete = tx.prepare_cached("DELETE FROM accounts WHERE user_id = ?1")?;
        let acknowledged = batch.iter().map(|w| (&w.user, &w.state));
        for (user, state) in acknowledged.chain(behind.iter().map(|(u, s)| (u, s))) {
            match state {
                Some(state) => put.execute(params![user.as_str(), state])?,
                None => delete.execute(params![user.as_str()])?,
            };
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Limit;

    fn user(n: u32) -> UserId {
        UserId::parse(&format!("u{n}")).unwrap()
    }

    /// An account told apart by its limit override.
    fn account(limit: u32) -> Account {
        Account {
            limit: Some(Limit::new(limit).unwrap()),
            ..Account::default()
        }
    }

    #[test]
    fn behind_keeps_one_write_per_account_in_first_queued_order() {
        let mut behind = Behind::default();
        behind.push(&user(1), Some(b"1a".to_vec()));
        behind.push(&user(2), Some(b"2".to_vec()));
        behind.push(&user(1), Some(b"1b".to_vec()));
        behind.push(&user(3), None);
        behind.cancel(&user(2));
        let first = behind.take(1);
        assert_eq!(first, [(user(1), Some(b"1b".to_vec()))]);
        assert_eq!(
            behind.take(10),
            [(user(3), None)],
            "the cancelled write is gone"
        );
        assert!(behind.is_empty());
        behind.push(&user(1), None);
        assert_eq!(behind.take(10), [(user(1), None)]);
    }

    #[tokio::test]
    async fn the_newest_state_wins_whichever_queue_it_came_from() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, _) = open(dir.path()).unwrap();
        let journal = SqliteJournal::start(conn);
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
            let (_, acc) = stored.iter().find(|(u, _)| *u == user(n)).unwrap();
            acc.limit.unwrap().get()
        };
        assert_eq!(stored.len(), 5_000, "close drains the background queue");
        assert_eq!((limit(7), limit(8), limit(9)), (2, 3, 1));
    }
}
