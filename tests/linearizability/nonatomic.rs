//! A planted bug: a store that runs the right rules but not atomically. It
//! reads the account, yields to other tasks, then writes back what it
//! decided, so two concurrent decisions can both start from the same state
//! and the later write undoes the earlier one. The checker must catch it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use streamguard::domain::{
    Account, AccountView, Clock, EndReason, HeartbeatDecision, Limit, PlanName, Policy,
    ResumeDecision, SecretHash, StartDecision, StartRequest, StreamId, UserId,
};
use streamguard::store::{StoreError, StreamStore};

pub struct ReadYieldWrite {
    accounts: Mutex<HashMap<UserId, Account>>,
    policy: Policy,
    clock: Arc<dyn Clock>,
}

impl ReadYieldWrite {
    pub fn new(policy: Policy, clock: Arc<dyn Clock>) -> Self {
        Self {
            accounts: Mutex::new(HashMap::new()),
            policy,
            clock,
        }
    }

    async fn decide<R>(&self, user: &UserId, rule: impl FnOnce(&mut Account) -> R) -> R {
        let mut account = self
            .accounts
            .lock()
            .unwrap()
            .get(user)
            .cloned()
            .unwrap_or_default();
        tokio::task::yield_now().await; // the bug: nothing holds the account here
        let answer = rule(&mut account);
        self.accounts.lock().unwrap().insert(user.clone(), account);
        answer
    }
}

#[async_trait]
impl StreamStore for ReadYieldWrite {
    async fn start(&self, user: &UserId, req: StartRequest) -> Result<StartDecision, StoreError> {
        let (now, p) = (self.clock.now(), self.policy.clone());
        Ok(self.decide(user, |a| a.start(req, now, &p)).await)
    }

    async fn heartbeat_with(
        &self,
        user: &UserId,
        stream: &StreamId,
        secret: Option<&SecretHash>,
    ) -> Result<HeartbeatDecision, StoreError> {
        let (now, p) = (self.clock.now(), self.policy.clone());
        Ok(self
            .decide(user, |a| a.heartbeat_with(stream, secret, now, &p))
            .await)
    }

    async fn resume(&self, user: &UserId, req: StartRequest) -> Result<ResumeDecision, StoreError> {
        let (now, p) = (self.clock.now(), self.policy.clone());
        Ok(self.decide(user, |a| a.resume(req, now, &p)).await)
    }

    async fn end(
        &self,
        user: &UserId,
        stream: &StreamId,
        reason: EndReason,
    ) -> Result<bool, StoreError> {
        let (now, p) = (self.clock.now(), self.policy.clone());
        Ok(self.decide(user, |a| a.end(stream, reason, now, &p)).await)
    }

    async fn view(&self, user: &UserId) -> Result<AccountView, StoreError> {
        let (now, p) = (self.clock.now(), self.policy.clone());
        Ok(self.decide(user, |a| a.view(now, &p)).await)
    }

    async fn set_limit(
        &self,
        user: &UserId,
        limit: Option<Limit>,
    ) -> Result<Vec<StreamId>, StoreError> {
        let (now, p) = (self.clock.now(), self.policy.clone());
        Ok(self.decide(user, |a| a.set_limit(limit, now, &p)).await)
    }

    async fn set_plan(
        &self,
        user: &UserId,
        plan: Option<PlanName>,
    ) -> Result<Vec<StreamId>, StoreError> {
        let (now, p) = (self.clock.now(), self.policy.clone());
        Ok(self.decide(user, |a| a.set_plan(plan, now, &p)).await)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn close(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
