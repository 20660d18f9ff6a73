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
//! notes with its next batch, at the latest [`FLUSH_EVERY`] later, in a
//! `renewals` table, together with `synced_at`: a time before which every
//! renewal is on disk. While any lease may still be live the writer moves
//! `synced_at` on every [`FLUSH_EVERY`] even with nothing else to write, so
//! after a crash the restore can tell a lease that had run out (its
//! deadline is before `synced_at`: no renewal can be missing, and a lease
//! that ran out is never renewed again) from one that may have been renewed
//! in the last unflushed moment (see `EmbeddedStore::open`).

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
use std::time::Duration;

use rusqlite::{Connection, params};
use tokio::sync::watch;

use super::StoreError;
use super::table::Journal;
use crate::domain::{Account, Clock, StreamId, Timestamp, UserId};

const DB_FILE: &str = "streamguard.sqlite3";

/// The longest a renewal waits in memory before the writer takes it. With
/// [`NOTE_SLACK`] this bounds how far `synced_at` trails the clock while
/// leases may be live: the write-behind bound (2 s, while the disk keeps up).
pub(crate) const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// How often a failed write is tried again.
const RETRY_EVERY: Duration = Duration::from_millis(200);

/// How long a heartbeat may take from reading the clock to noting its
/// renewal (microseconds in practice). `synced_at` is the writer's clock
/// minus this, so a renewal decided before `synced_at` but noted a moment
/// after the writer took the notes cannot be missed.
const NOTE_SLACK: Duration = Duration::from_secs(1);

/// What the database holds.
#[derive(Debug, Default)]
pub(crate) struct Restored {
    pub accounts: Vec<(UserId, Account)>,
    /// Lease deadlines written behind by heartbeats; newer than the
    /// account row's when a heartbeat came after the last decision.
    pub renewals: HashMap<(UserId, StreamId), Timestamp>,
    /// Every renewal decided before this instant is in `renewals` or in the
    /// account rows. `None` for a database never synced (fresh, or older).
    pub synced_at: Option<Timestamp>,
}

/// How far the writer got.
#[derive(Clone, Copy, Debug, Default)]
struct Durable {
    lsn: u64,
    /// The last write failed: nothing can be acknowledged until a retry
    /// succeeds.
    failed: bool,
}

struct Pending {
    next_lsn: u64,
    writes: Vec<Write>,
    behind: Behind,
    /// Renewed deadlines not yet taken by the writer, as noted: a push
    /// costs a heartbeat no lookup and, once the buffer has grown, no
    /// allocation; the writer keeps the latest per lease.
    renewals: Vec<(UserId, StreamId, Timestamp)>,
    closing: bool,
}

/// Background rows per transaction while answers wait for it: each row of
/// a large table dirties its own page, so a big chunk would make the fsync
/// they wait for slow (measured in BENCHMARKS.md, durable starts on `file:`).
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
/// lock and returns every stored account. The page cache may grow to
/// 64 MiB (SQLite's default is 2 MiB): heartbeats renew leases at random,
/// and each renewal written behind upserts a row of `renewals` (one per
/// live stream) on a page that, with the default, was rarely cached — a
/// read of 4 KB from the file per heartbeat (BENCHMARKS.md, audience).
pub(crate) fn open(dir: &Path) -> Result<(Connection, Restored), StoreError> {
    private_files(dir)?;
    let conn = Connection::open(dir.join(DB_FILE))
        .map_err(|e| StoreError::unavailable("opening the database", e))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA locking_mode = EXCLUSIVE;
         PRAGMA cache_size = -65536;
         CREATE TABLE IF NOT EXISTS accounts (
             user_id TEXT PRIMARY KEY NOT NULL,
             state   BLOB NOT NULL
         ) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS renewals (
             user_id    TEXT NOT NULL,
             stream_id  TEXT NOT NULL,
             expires_at INTEGER NOT NULL,
             PRIMARY KEY (user_id, stream_id)
         ) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS meta (
             key   TEXT PRIMARY KEY NOT NULL,
             value INTEGER NOT NULL
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
    let mut restored = load_renewals(&conn)?;
    restored.accounts = load(&conn)?;
    Ok((conn, restored))
}

/// Creates the data directory (0700) and the database file (0600) when
/// they are not there: they hold every account's streams. SQLite gives its
/// WAL and shared-memory files the database file's mode. What exists
/// already keeps the mode its operator gave it.
fn private_files(dir: &Path) -> Result<(), StoreError> {
    let mut dirs = std::fs::DirBuilder::new();
    dirs.recursive(true);
    let mut file = std::fs::OpenOptions::new();
    file.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        dirs.mode(0o700);
        file.mode(0o600);
    }
    dirs.create(dir)
        .map_err(|e| StoreError::unavailable("creating the data directory", e))?;
    file.open(dir.join(DB_FILE))
        .map_err(|e| StoreError::unavailable("creating the database", e))?;
    Ok(())
}

fn load_renewals(conn: &Connection) -> Result<Restored, StoreError> {
    let read = |e| StoreError::unavailable("reading the database", e);
    let mut restored = Restored::default();
    let mut stmt = conn
        .prepare("SELECT user_id, stream_id, expires_at FROM renewals")
        .map_err(read)?;
    let mut rows = stmt.query([]).map_err(read)?;
    while let Some(row) = rows.next().map_err(read)? {
        let (user, stream): (String, String) =
            (row.get(0).map_err(read)?, row.get(1).map_err(read)?);
        let corrupt = |detail: String| StoreError::Corrupt {
            detail: format!("renewal of {user:?}/{stream:?}: {detail}"),
        };
        let key = (
            UserId::parse(&user).map_err(|e| corrupt(e.to_string()))?,
            StreamId::parse(&stream).map_err(|e| corrupt(e.to_string()))?,
        );
        restored
            .renewals
            .insert(key, Timestamp::from_millis(row.get(2).map_err(read)?));
    }
    restored.synced_at = conn
        .query_row("SELECT value FROM meta WHERE key = 'synced_at'", [], |r| {
            r.get(0)
        })
        .map(Timestamp::from_millis)
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(read(e)),
        })?;
    Ok(restored)
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
    /// Starts the writer thread on an opened database. `clock` and
    /// `lease_ttl` time `synced_at` (see the module's documentation).
    pub(crate) fn start(conn: Connection, clock: Arc<dyn Clock>, lease_ttl: Duration) -> Self {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                next_lsn: 1,
                writes: Vec::new(),
                behind: Behind::default(),
                renewals: Vec::new(),
                closing: false,
            }),
            wake: Condvar::new(),
        });
        let (tx, durable) = watch::channel(Durable::default());
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("streamguard-journal".into())
                .spawn(move || write_loop(conn, &shared, &tx, clock.as_ref(), lease_ttl))
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
        self.shared.pending.lock().unwrap().behind.push(user, state);
        self.shared.wake.notify_one();
    }
}

fn write_loop(
    mut conn: Connection,
    shared: &Arc<Shared>,
    durable: &watch::Sender<Durable>,
    clock: &dyn Clock,
    lease_ttl: Duration,
) {
    // No lease can be live past this (renewals and grants move it on), so
    // `synced_at` need not move beyond it: an idle store stops ticking.
    let mut active_until = clock.now() + lease_ttl;
    let mut synced_at = None;
    // What the last attempt failed to write, kept for the next one.
    let mut batch: Vec<Write> = Vec::new();
    let mut renewals: HashMap<(UserId, StreamId), Timestamp> = HashMap::new();
    // The notes taken from `pending`, whose buffer goes back to it.
    let mut noted = Vec::new();
    let mut behind: Vec<(UserId, Option<Vec<u8>>)> = Vec::new();
    let mut failing = false;
    loop {
        let more_behind;
        let closing = {
            let mut pending = shared.pending.lock().unwrap();
            if failing {
                if !pending.closing {
                    pending = shared.wake.wait_timeout(pending, RETRY_EVERY).unwrap().0;
                }
            } else {
                while pending.writes.is_empty() && pending.behind.is_empty() && !pending.closing {
                    let (guard, waited) = shared.wake.wait_timeout(pending, FLUSH_EVERY).unwrap();
                    pending = guard;
                    let behind = synced_at.is_none_or(|at| at <= active_until);
                    let orphaned = Arc::strong_count(shared) == 1;
                    if waited.timed_out() && (!pending.renewals.is_empty() || behind || orphaned) {
                        break;
                    }
                }
            }
            batch.append(&mut pending.writes);
            if behind.is_empty() {
                let chunk = if batch.is_empty() {
                    BEHIND_WHILE_IDLE
                } else {
                    BEHIND_WHILE_BUSY
                };
                behind = pending.behind.take(chunk);
            }
            more_behind = !pending.behind.is_empty();
            std::mem::swap(&mut pending.renewals, &mut noted);
            // Nobody can record any more (the store was dropped unclosed):
            // write what is left, then stop.
            pending.closing || Arc::strong_count(shared) == 1
        };
        for (user, stream, at) in noted.drain(..) {
            let latest = renewals.entry((user, stream)).or_insert(at);
            *latest = (*latest).max(at);
        }
        // Every renewal noted before now (less the slack) is in `renewals`.
        let now = clock.now();
        if !batch.is_empty() || !renewals.is_empty() {
            active_until = active_until.max(now + lease_ttl);
        }
        let synced = Timestamp::from_millis(now.as_millis() - NOTE_SLACK.as_millis() as i64);
        match write_batch(&mut conn, &batch, &behind, &renewals, synced) {
            Ok(()) => {
                synced_at = Some(synced);
                if failing {
                    tracing::warn!("journal writes succeed again; the store serves again");
                    failing = false;
                }
                let last = batch.last().map(|w| w.lsn);
                if !batch.is_empty() {
                    metrics::histogram!("streamguard_journal_batch_size")
                        .record(batch.len() as f64);
                }
                durable.send_modify(|d| {
                    d.failed = false;
                    if let Some(last) = last {
                        d.lsn = last;
                    }
                });
                batch.clear();
                behind.clear();
                renewals.clear();
            }
            Err(e) => {
                if !failing {
                    tracing::error!(
                        error = %e,
                        "journal write failed; the store refuses requests and retries"
                    );
                    failing = true;
                    durable.send_modify(|d| d.failed = true);
                }
                if closing {
                    tracing::error!(
                        writes = batch.len(),
                        "closing with writes the disk refused; they are lost"
                    );
                    return;
                }
            }
        }
        if closing && !more_behind {
            return;
        }
    }
}

/// Writes `batch`, then `behind` (whose states are newer where both name
/// an account: an acknowledged write cancels older queued ones), then the
/// renewals and `synced_at`.
fn write_batch(
    conn: &mut Connection,
    batch: &[Write],
    behind: &[(UserId, Option<Vec<u8>>)],
    renewals: &HashMap<(UserId, StreamId), Timestamp>,
    synced_at: Timestamp,
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut put = tx.prepare_cached(
            "INSERT INTO accounts (user_id, state) VALUES (?1, ?2)
             ON CONFLICT (user_id) DO UPDATE SET state = excluded.state",
        )?;
        let mut delete = tx.prepare_cached("DELETE FROM accounts WHERE user_id = ?1")?;
        // An account row holds every deadline as of its decision, so older
        // renewals of that account go; the renewals taken with this batch
        // are written after (the larger deadline wins at restore anyway).
        let mut forget = tx.prepare_cached("DELETE FROM renewals WHERE user_id = ?1")?;
        for write in batch {
            match &write.state {
                Some(state) => put.execute(params![write.user.as_str(), state])?,
                None => delete.execute(params![write.user.as_str()])?,
            };
            forget.execute(params![write.user.as_str()])?;
        }
        // Renewals stay: a queued state may be older than them, and the
        // larger deadline wins at restore.
        for (user, state) in behind {
            match state {
                Some(state) => put.execute(params![user.as_str(), state])?,
                None => delete.execute(params![user.as_str()])?,
            };
        }
        let mut renew = tx.prepare_cached(
            "INSERT INTO renewals (user_id, stream_id, expires_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (user_id, stream_id) DO UPDATE
             SET expires_at = max(expires_at, excluded.expires_at)",
        )?;
        for ((user, stream), expires_at) in renewals {
            renew.execute(params![
                user.as_str(),
                stream.as_str(),
                expires_at.as_millis()
            ])?;
        }
        tx.prepare_cached(
            "INSERT INTO meta (key, value) VALUES ('synced_at', ?1)
             ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
        )?
        .execute(params![synced_at.as_millis()])?;
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
        let clock = Arc::new(crate::domain::SystemClock);
        let journal = SqliteJournal::start(conn, clock, Duration::from_secs(90));
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
}

#[cfg(all(test, unix))]
mod permissions {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_directory_and_database_are_private() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("data/streams");
        drop(super::open(&dir).unwrap());
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&parent.path().join("data")), 0o700);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }
}
