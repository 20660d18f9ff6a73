//! `memory`: the account table alone. Volatile; for tests and demos.

use std::sync::Arc;

use async_trait::async_trait;

use super::sweeper;
use super::table::AccountTable;
use super::{StoreError, StreamStore};
use crate::domain::{
    AccountView, Clock, EndReason, HeartbeatDecision, Limit, Paced, PlanName, Policy, Rates,
    ResumeDecision, SecretHash, StartDecision, StartRequest, StreamId, UserId,
};

pub struct MemoryStore {
    table: Arc<AccountTable<()>>,
}

impl MemoryStore {
    /// A new empty store whose idle accounts are reclaimed in the background.
    pub fn open(policy: Policy, clock: Arc<dyn Clock>) -> Arc<Self> {
        let lease_ttl = policy.lease_ttl;
        let table = Arc::new(AccountTable::new(policy, clock, ()));
        sweeper::spawn(Arc::downgrade(&table), lease_ttl);
        Arc::new(Self { table })
    }
}

#[async_trait]
impl StreamStore for MemoryStore {
    async fn start(&self, user: &UserId, req: StartRequest) -> Result<StartDecision, StoreError> {
        Ok(self.table.start(user, req).value)
    }

    async fn heartbeat_with(
        &self,
        user: &UserId,
        stream: &StreamId,
        secret: Option<&SecretHash>,
    ) -> Result<HeartbeatDecision, StoreError> {
        Ok(self.table.heartbeat(user, stream, secret).value)
    }

    async fn resume(&self, user: &UserId, req: StartRequest) -> Result<ResumeDecision, StoreError> {
        Ok(self.table.resume(user, req).value)
    }

    async fn end(
        &self,
        user: &UserId,
        stream: &StreamId,
        reason: EndReason,
    ) -> Result<bool, StoreError> {
        Ok(self.table.end(user, stream, reason).value)
    }

    async fn view(&self, user: &UserId) -> Result<AccountView, StoreError> {
        Ok(self.table.view(user).value)
    }

    async fn set_limit(
        &self,
        user: &UserId,
        limit: Option<Limit>,
    ) -> Result<Vec<StreamId>, StoreError> {
        Ok(self.table.set_limit(user, limit).value)
    }

    async fn set_plan(
        &self,
        user: &UserId,
        plan: Option<PlanName>,
    ) -> Result<Vec<StreamId>, StoreError> {
        Ok(self.table.set_plan(user, plan).value)
    }

    fn pace(&self, user: &UserId, stream: Option<&StreamId>, rates: Rates) -> Paced {
        self.table.pace(user, stream, rates)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn close(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
