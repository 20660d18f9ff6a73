//! `file:PATH`: the account table in memory, every acknowledged change
//! group-committed to SQLite before the answer leaves.
//!
//! Recovery loads every account and gives each stream that was live a fresh
//! lease: heartbeats are not written at all, so the stored `expires_at` may
//! be stale, and a crashed player's slot still frees within one lease.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

use super::journal::{self, SqliteJournal};
use super::sweeper;
use super::table::{AccountTable, Applied};
use super::{StoreError, StreamStore};
use crate::domain::{
    AccountView, Clock, EndReason, HeartbeatDecision, Limit, Policy, StartDecision, StartRequest,
    StreamId, UserId,
};

pub struct EmbeddedStore {
    table: Arc<AccountTable<SqliteJournal>>,
}

impl EmbeddedStore {
    /// Opens the store in `dir`, restoring what it holds.
    pub async fn open(
        dir: &Path,
        policy: Policy,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, StoreError> {
        let dir = dir.to_path_buf();
        let (conn, accounts) = tokio::task::spawn_blocking(move || journal::open(&dir))
            .await
            .map_err(|e| StoreError::unavailable("opening the database", e))??;
        let now = clock.now();
        let table = Arc::new(AccountTable::new(policy, clock, SqliteJournal::start(conn)));
        let mut restored = 0;
        for (user, mut account) in accounts {
            for lease in &mut account.live {
                lease.expires_at = now + policy.lease_ttl;
                restored += 1;
            }
            table.restore(user, account);
        }
        tracing::info!(streams = restored, "restored live streams from disk");
        sweeper::spawn(Arc::downgrade(&table), policy.lease_ttl);
        Ok(Arc::new(Self { table }))
    }

    /// Creates the data directory and database; nothing else is needed.
    pub async fn init(dir: &Path) -> Result<(), StoreError> {
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || journal::open(&dir).map(drop))
            .await
            .map_err(|e| StoreError::unavailable("creating the database", e))?
    }

    /// Answers once the state the answer depends on is on disk.
    async fn durable<R>(&self, applied: Applied<R>) -> Result<R, StoreError> {
        self.table.journal().wait(applied.lsn).await?;
        Ok(applied.value)
    }
}

#[async_trait]
impl StreamStore for EmbeddedStore {
    async fn start(&self, user: &UserId, req: StartRequest) -> Result<StartDecision, StoreError> {
        self.durable(self.table.start(user, req)).await
    }

    async fn heartbeat(
        &self,
        user: &UserId,
        stream: &StreamId,
    ) -> Result<HeartbeatDecision, StoreError> {
        self.durable(self.table.heartbeat(user, stream)).await
    }

    async fn end(
        &self,
        user: &UserId,
        stream: &StreamId,
        reason: EndReason,
    ) -> Result<bool, StoreError> {
        self.durable(self.table.end(user, stream, reason)).await
    }

    async fn view(&self, user: &UserId) -> Result<AccountView, StoreError> {
        self.durable(self.table.view(user)).await
    }

    async fn set_limit(
        &self,
        user: &UserId,
        limit: Option<Limit>,
    ) -> Result<Vec<StreamId>, StoreError> {
        self.durable(self.table.set_limit(user, limit)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if self.table.journal().is_healthy() {
            Ok(())
        } else {
            Err(StoreError::unavailable(
                "writing to disk",
                "the journal writer failed",
            ))
        }
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
