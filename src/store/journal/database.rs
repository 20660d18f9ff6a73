//! The SQLite database: its file, its tables (`accounts`, `renewals`,
//! `meta`; what they hold: DESIGN.md, "file:", data model), and the
//! transaction that writes one batch.

use std::path::Path;

use rusqlite::{Connection, params};

use super::queue::{BehindWrite, Renewals, Write};
use super::restore::{self, Restored};
use crate::domain::Timestamp;
use crate::store::StoreError;

const DB_FILE: &str = "streamguard.sqlite3";

/// Opens (creating if needed) the database in `dir`, takes its exclusive
/// lock and returns every stored account. The page cache may grow to
/// 64 MiB (SQLite's default is 2 MiB): heartbeats renew leases at random,
/// and each renewal written behind upserts a row of `renewals` (one per
/// live stream) on a page the default cache rarely held (BENCHMARKS.md,
/// audience).
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
    let mut restored = restore::renewals(&conn)?;
    restored.accounts = restore::accounts(&conn)?;
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
/// renewals and `synced_at`.
pub(super) fn write_batch(
    conn: &mut Connection,
    batch: &[Write],
    behind: &[BehindWrite],
    renewals: &Renewals,
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
        // A queued state may be older than some renewals of its leases, so
        // only rows no lease of it can need go: those at or before its
        // earliest deadline (all of them when it has no lease). Without
        // this, the row of a lease that ran out stayed until the account's
        // next acknowledged write, which a viewer who never returns never
        // makes.
        let mut stale =
            tx.prepare_cached("DELETE FROM renewals WHERE user_id = ?1 AND expires_at <= ?2")?;
        for (user, state, stale_until) in behind {
            match state {
                Some(state) => put.execute(params![user.as_str(), state])?,
                None => delete.execute(params![user.as_str()])?,
            };
            stale.execute(params![user.as_str(), stale_until])?;
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
