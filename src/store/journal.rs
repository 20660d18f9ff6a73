//! Group-committed persistence of account states to SQLite.
//!
//! Decisions hand the new state of an account to [`SqliteJournal::record`]
//! (cheap: a push under a mutex) and get a log sequence number. One writer
//! thread takes everything pending, writes it in one transaction, and one
//! fsync later publishes the highest number it made durable; answers wait
//! for their number. Many concurrent requests thus share one fsync.

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
    closing: bool,
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
        pending.writes.push(Write {
            lsn,
            user: user.clone(),
            state,
        });
        drop(pending);
        self.shared.wake.notify_one();
        lsn
    }
}

fn write_loop(mut conn: Connection, shared: &Shared, durable: &watch::Sender<Durable>) {
    loop {
        let (batch, closing) = {
            let mut pending = shared.pending.lock().unwrap();
            while pending.writes.is_empty() && !pending.closing {
                pending = shared.wake.wait(pending).unwrap();
            }
            (std::mem::take(&mut pending.writes), pending.closing)
        };
        let Some(last) = batch.last().map(|w| w.lsn) else {
            if closing {
                return;
            }
            continue;
        };
        match write_batch(&mut conn, &batch) {
            Ok(()) => {
                metrics::histogram!("streamguard_journal_batch_size").record(batch.len() as f64);
                durable.send_modify(|d| d.lsn = last);
            }
            Err(e) => {
                tracing::error!(error = %e, "journal write failed; the store refuses further writes");
                durable.send_modify(|d| d.failed = true);
                return;
            }
        }
    }
}

fn write_batch(conn: &mut Connection, batch: &[Write]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut put = tx.prepare_cached(
            "INSERT INTO accounts (user_id, state) VALUES (?1, ?2)
             ON CONFLICT (user_id) DO UPDATE SET state = excluded.state",
        )?;
        let mut delete = tx.prepare_cached("DELETE FROM accounts WHERE user_id = ?1")?;
        for write in batch {
            match &write.state {
                Some(state) => put.execute(params![write.user.as_str(), state])?,
                None => delete.execute(params![write.user.as_str()])?,
            };
        }
    }
    tx.commit()
}
