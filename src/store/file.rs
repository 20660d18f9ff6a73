//! `file:PATH`: the account table in memory, every acknowledged change
//! group-committed to SQLite before the answer leaves.
//!
//! Heartbeats are written behind (see `journal`). Recovery loads every
//! account and gives each stream that was live when the process stopped a
//! fresh lease, so downtime ends no playback; a lease that had already run
//! out before the stop is buried as `expired` at its deadline.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

use super::journal::{self, Restored, SqliteJournal};
use super::sweeper;
use super::table::{AccountTable, Applied, Journal};
use super::{StoreError, StreamStore};
use crate::domain::{
    Account, AccountView, Clock, EndReason, HeartbeatDecision, Limit, Paced, PlanName, Policy,
    Rates, ResumeDecision, SecretHash, StartDecision, StartRequest, StreamId, Timestamp, UserId,
};

/// Restored accounts queued for the journal ahead of what it has written,
/// at most (twice this): each queued write holds the account's serialized
/// state, and holding all of them at once left freed memory in the
/// process after the restart (BENCHMARKS.md, restart of `file:`).
const RESTORE_AHEAD: u64 = 65_536;

pub struct FileStore {
    table: Arc<AccountTable<SqliteJournal>>,
}

impl FileStore {
    /// Opens the store in `dir`, restoring what it holds.
    pub async fn open(
        dir: &Path,
        policy: Policy,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, StoreError> {
        let dir = dir.to_path_buf();
        let (conn, mut behind) = tokio::task::spawn_blocking(move || journal::open(&dir))
            .await
            .map_err(|e| StoreError::unavailable("opening the database", e))??;
        let now = clock.now();
        let journal = SqliteJournal::start(conn, clock.clone(), policy.lease_ttl, behind.log_tail);
        let (mut restored, mut expired, mut lsn) = (0, 0, 0);
        let mut chunk_start = 0;
        let mut accounts = std::mem::take(&mut behind.accounts);
        for (user, account) in &mut accounts {
            if account.live.is_empty() {
                continue;
            }
            expired += restore_leases(user, account, &behind, now, &policy);
            restored += account.live.len();
            // On disk before serving: after a second crash the restore must
            // find the fresh leases, not the old deadlines.
            lsn = journal.record(user, account);
            if lsn - chunk_start >= RESTORE_AHEAD {
                journal.wait(chunk_start).await?;
                chunk_start = lsn;
            }
        }
        journal.wait(lsn).await?;
        let lease_ttl = policy.lease_ttl;
        let table = Arc::new(AccountTable::restored(policy, clock, journal, accounts));
        tracing::info!(
            streams = restored,
            expired,
            "restored live streams from disk"
        );
        sweeper::spawn(Arc::downgrade(&table), lease_ttl);
        Ok(Arc::new(Self { table }))
    }

    /// Creates the data directory and database; nothing else is needed.
    pub async fn init(dir: &Path) -> Result<(), StoreError> {
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || journal::open(&dir).map(drop))
            .await
            .map_err(|e| StoreError::unavailable("creating the database", e))?
    }

    /// Refuses to decide while the disk refuses writes: a decision taken
    /// now could not be acknowledged, and would only wait in memory.
    fn writable(&self) -> Result<(), StoreError> {
        if self.table.journal().is_healthy() {
            Ok(())
        } else {
            Err(StoreError::unavailable(
                "writing to disk",
                "the journal writer failed; retrying",
            ))
        }
    }

    /// Answers once the state the answer depends on is on disk.
    async fn durable<R>(&self, applied: Applied<R>) -> Result<R, StoreError> {
        self.table.journal().wait(applied.lsn).await?;
        Ok(applied.value)
    }
}

/// Decides, for each lease of a restored account, whether it was live when
/// the process stopped: its deadline on disk is the later of the account
/// row's and the renewals written behind. A deadline before `synced_at` is
/// final (every renewal decided before `synced_at` is on disk, and a lease
/// that ran out is never renewed), so that lease is buried as `expired` at
/// its deadline. Any other lease was live at the stop or may have been
/// renewed in the unflushed moment before it, and gets a fresh lease.
/// Returns how many leases were found expired.
fn restore_leases(
    user: &UserId,
    account: &mut Account,
    behind: &Restored,
    now: Timestamp,
    policy: &Policy,
) -> usize {
    let mut ran_out = 0;
    for lease in &mut account.live {
        let renewed = behind.renewals.get(&(user.clone(), lease.id.clone()));
        let deadline = renewed.map_or(lease.expires_at, |&r| r.max(lease.expires_at));
        if behind.synced_at.is_some_and(|synced| deadline <= synced) && deadline <= now {
            lease.expires_at = deadline;
            ran_out += 1;
        } else {
            lease.expires_at = now + policy.lease_ttl;
        }
    }
    account.expire(now, policy);
    ran_out
}

#[async_trait]
impl StreamStore for FileStore {
    async fn start(&self, user: &UserId, req: StartRequest) -> Result<StartDecision, StoreError> {
        self.writable()?;
        self.durable(self.table.start(user, req)).await
    }

    async fn heartbeat_with(
        &self,
        user: &UserId,
        stream: &StreamId,
        secret: Option<&SecretHash>,
    ) -> Result<HeartbeatDecision, StoreError> {
        self.writable()?;
        let applied = self.table.heartbeat(user, stream, secret);
        if let HeartbeatDecision::Renewed(lease) = &applied.value {
            // Written behind: the answer does not wait for it.
            self.table
                .journal()
                .renewed(user, &lease.id, lease.expires_at);
        }
        self.durable(applied).await
    }

    async fn resume(&self, user: &UserId, req: StartRequest) -> Result<ResumeDecision, StoreError> {
        self.writable()?;
        let applied = self.table.resume(user, req);
        if let ResumeDecision::Heartbeat(HeartbeatDecision::Renewed(lease)) = &applied.value {
            self.table
                .journal()
                .renewed(user, &lease.id, lease.expires_at);
        }
        self.durable(applied).await
    }

    async fn end(
        &self,
        user: &UserId,
        stream: &StreamId,
        reason: EndReason,
    ) -> Result<bool, StoreError> {
        self.writable()?;
        self.durable(self.table.end(user, stream, reason)).await
    }

    async fn view(&self, user: &UserId) -> Result<AccountView, StoreError> {
        self.writable()?;
        self.durable(self.table.view(user)).await
    }

    async fn set_limit(
        &self,
        user: &UserId,
        limit: Option<Limit>,
    ) -> Result<Vec<StreamId>, StoreError> {
        self.writable()?;
        self.durable(self.table.set_limit(user, limit)).await
    }

    async fn set_plan(
        &self,
        user: &UserId,
        plan: Option<PlanName>,
    ) -> Result<Vec<StreamId>, StoreError> {
        self.writable()?;
        self.durable(self.table.set_plan(user, plan)).await
    }

    fn pace(&self, user: &UserId, stream: Option<&StreamId>, rates: Rates) -> Paced {
        self.table.pace(user, stream, rates)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.writable()
    }

    async fn close(&self) -> Result<(), StoreError> {
        let table = self.table.clone();
        // A last sweep first, so leases that ran out are on disk as expired
        // and a restart does not bring them back with a fresh lease.
        tokio::task::spawn_blocking(move || {
            table.sweep();
            table.journal().close();
        })
        .await
        .map_err(|e| StoreError::unavailable("closing the database", e))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::{EndReason, Lease};

    const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);

    fn at(secs: u64) -> Timestamp {
        T0 + Duration::from_secs(secs)
    }

    fn lease(id: &str, expires_at: Timestamp) -> Lease {
        Lease {
            id: StreamId::parse(id).unwrap(),
            device_id: None,
            content_id: None,
            tags: Default::default(),
            secret: None,
            started_at: T0,
            expires_at,
            seq: 0,
            pace: Default::default(),
        }
    }

    #[test]
    fn restore_buries_only_leases_that_ran_out_before_the_synced_time() {
        let p = Policy::default(); // 90 s leases
        let user = UserId::parse("u").unwrap();
        let mut account = Account {
            live: vec![
                lease("ran-out", at(90)),
                lease("renewed", at(90)),
                lease("maybe-renewed", at(120)),
                lease("live", at(300)),
            ]
            .into(),
            ..Account::default()
        };
        let behind = Restored {
            renewals: [((user.clone(), StreamId::parse("renewed").unwrap()), at(190))].into(),
            synced_at: Some(at(100)),
            ..Restored::default()
        };
        let now = at(200);
        assert_eq!(restore_leases(&user, &mut account, &behind, now, &p), 1);
        let live: Vec<_> = account.live.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(live, ["renewed", "maybe-renewed", "live"]);
        assert!(
            account
                .live
                .iter()
                .all(|l| l.expires_at == now + p.lease_ttl)
        );
        assert_eq!(account.ended.len(), 1);
        assert_eq!(account.ended[0].reason, EndReason::Expired);
        assert_eq!(account.ended[0].ended_at, at(90), "ended at its deadline");
    }

    #[test]
    fn a_database_never_synced_restores_every_lease() {
        let p = Policy::default();
        let user = UserId::parse("u").unwrap();
        let mut account = Account {
            live: vec![lease("old", at(90))].into(),
            ..Account::default()
        };
        let now = at(10_000);
        assert_eq!(
            restore_leases(&user, &mut account, &Restored::default(), now, &p),
            0
        );
        assert_eq!(account.live[0].expires_at, now + p.lease_ttl);
    }
}
