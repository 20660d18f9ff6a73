//! The SQLite database: its file, its tables (`accounts`, `renewal_log`,
//! `meta`, and `renewals`, which older versions wrote; what they hold:
//! DESIGN.md, "file:", data model), and the transaction that writes one
//! batch.

use std::path::Path;

use rusqlite::{Connection, params};

use super::queue::{BehindWrite, Renewals, Write};
use super::restore::{self, Restored};
use crate::domain::Timestamp;
use crate::store::StoreError;

const DB_FILE: &str = "streamguard.sqlite3";

/// Opens (creating if needed) the database in `dir`, takes its exclusive
/// lock and returns every stored account. The page cache may grow to
/// 64 MiB (SQLite's default is 2 MiB), for the account rows decisions
/// rewrite at random. Renewals are appended to `renewal_log` instead: an
/// upsert per renewal into a table of every live stream dirtied a page of
/// its own per heartbeat once the table outgrew the cache (BENCHMARKS.md,
/// audience at 10 M).
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
         CREATE TABLE IF NOT EXISTS renewal_log (
             seq        INTEGER PRIMARY KEY,
             user_id    TEXT NOT NULL,
             stream_id  TEXT NOT NULL,
             expires_at INTEGER NOT NULL
         );
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
    let accounts = restore::accounts(&conn)?;
    let live = accounts.iter().map(|(_, a)| a.live.len()).sum();
    let mut restored = restore::renewals(&conn, live)?;
    restored.accounts = accounts;
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

/// Writes `batch`, then `behind` (whose states are newer where both name
/// an account: an acknowledged write cancels older queued ones), then the
/// renewals, appended to `renewal_log`, less the log's entries up to
/// `prune_through` (a `seq`), and `synced_at`. Returns the `seq` of the
/// last renewal appended, if any.
pub(super) fn write_batch(
    conn: &mut Connection,
    batch: &[Write],
    behind: &[BehindWrite],
    renewals: &Renewals,
    prune_through: Option<i64>,
    synced_at: Timestamp,
) -> rusqlite::Result<Option<i64>> {
    let tx = conn.transaction()?;
    let mut last_seq = None;
    {
        let mut put = tx.prepare_cached(
            "INSERT INTO accounts (user_id, state) VALUES (?1, ?2)
             ON CONFLICT (user_id) DO UPDATE SET state = excluded.state",
        )?;
        let mut delete = tx.prepare_cached("DELETE FROM accounts WHERE user_id = ?1")?;
        // Rows of `renewals`, which older versions wrote, go as their
        // accounts are written: an account row holds every deadline as of
        // its decision.
        let mut forget = tx.prepare_cached("DELETE FROM renewals WHERE user_id = ?1")?;
        for write in batch {
            match &write.state {
                Some(state) => put.execute(params![write.user.as_str(), state])?,
                None => delete.execute(params![write.user.as_str()])?,
            };
            forget.execute(params![write.user.as_str()])?;
        }
        // A queued state may be older than some renewals of its leases, so
        // only rows no lease of it can need go: those at or before its
        // earliest deadline (all of them when it has no lease).
        let mut stale =
            tx.prepare_cached("DELETE FROM renewals WHERE user_id = ?1 AND expires_at <= ?2")?;
        for (user, state, stale_until) in behind {
            match state {
                Some(state) => put.execute(params![user.as_str(), state])?,
                None => delete.execute(params![user.as_str()])?,
            };
            stale.execute(params![user.as_str(), stale_until])?;
        }
        if let Some(seq) = prune_through {
            tx.prepare_cached("DELETE FROM renewal_log WHERE seq <= ?1")?
                .execute(params![seq])?;
        }
        let mut append = tx.prepare_cached(
            "INSERT INTO renewal_log (user_id, stream_id, expires_at) VALUES (?1, ?2, ?3)",
        )?;
        for ((user, stream), expires_at) in renewals {
            append.execute(params![
                user.as_str(),
                stream.as_str(),
                expires_at.as_millis()
            ])?;
            last_seq = Some(tx.last_insert_rowid());
        }
        tx.prepare_cached(
            "INSERT INTO meta (key, value) VALUES ('synced_at', ?1)
             ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
        )?
        .execute(params![synced_at.as_millis()])?;
    }
    tx.commit()?;
    Ok(last_seq)
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
