//! Reading back what the database holds when the store opens.

use std::collections::HashMap;

use rusqlite::Connection;

use crate::domain::{Account, StreamId, Timestamp, UserId};
use crate::store::StoreError;

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
    /// The last entry of `renewal_log` (its `seq`) and the latest deadline
    /// in it: what the writer may prune once no restore can need it.
    pub log_tail: Option<(i64, Timestamp)>,
}

/// Reads the renewals written behind. `live` is how many leases the
/// account rows hold: the map is made that large at once, since growing
/// it by doubling rehashed every lease already read (at 10 M live streams
/// the log holds up to 60 M rows).
pub(super) fn renewals(conn: &Connection, live: usize) -> Result<Restored, StoreError> {
    let read = |e| StoreError::unavailable("reading the database", e);
    let mut restored = Restored::default();
    restored.renewals.reserve(live);
    // The table older versions wrote, then the log; the latest deadline of
    // a lease wins (in the log, an earlier one can follow a later one only
    // across a clock step).
    for table in ["renewals", "renewal_log"] {
        latest_deadlines(conn, table, &mut restored.renewals)?;
    }
    let (seq, deadline) = conn
        .query_row(
            "SELECT max(seq), max(expires_at) FROM renewal_log",
            [],
            |r| Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?)),
        )
        .map_err(read)?;
    restored.log_tail = seq.zip(deadline.map(Timestamp::from_millis));
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

/// Reads `table`'s `(user_id, stream_id, expires_at)` rows into
/// `deadlines`, keeping the latest deadline of each lease.
fn latest_deadlines(
    conn: &Connection,
    table: &str,
    deadlines: &mut HashMap<(UserId, StreamId), Timestamp>,
) -> Result<(), StoreError> {
    let read = |e| StoreError::unavailable("reading the database", e);
    let mut stmt = conn
        .prepare(&format!(
            "SELECT user_id, stream_id, expires_at FROM {table}"
        ))
        .map_err(read)?;
    let mut rows = stmt.query([]).map_err(read)?;
    while let Some(row) = rows.next().map_err(read)? {
        // Borrowed from SQLite's row: no allocation for each of the rows a
        // restart reads (six per live stream with the log at its longest).
        let text = |i| row.get_ref(i).and_then(|v| Ok(v.as_str()?)).map_err(read);
        let (user, stream) = (text(0)?, text(1)?);
        let corrupt = |detail: String| StoreError::Corrupt {
            detail: format!("{table} row of {user:?}/{stream:?}: {detail}"),
        };
        let key = (
            UserId::parse(user).map_err(|e| corrupt(e.to_string()))?,
            StreamId::parse(stream).map_err(|e| corrupt(e.to_string()))?,
        );
        let at = Timestamp::from_millis(row.get(2).map_err(read)?);
        let latest = deadlines.entry(key).or_insert(at);
        *latest = (*latest).max(at);
    }
    Ok(())
}

pub(super) fn accounts(conn: &Connection) -> Result<Vec<(UserId, Account)>, StoreError> {
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
