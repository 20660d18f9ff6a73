//! `redis://`, `rediss://`, `redis+cluster://`: many stateless instances
//! share one exact limit.
//!
//! Each account is one key, `<prefix>:{<account>}` (the braces make it its
//! own cluster hash slot), holding the account's JSON. Each decision is one
//! `EVALSHA` of a Lua script that runs the same rules as `domain::rules`
//! on that key alone, with `now` from the Redis server's clock: one round
//! trip, atomic because Redis runs a script without interleaving anything.

mod connection;
mod reply;
mod scripts;

use std::sync::Arc;

use async_trait::async_trait;
use redis::ScriptInvocation;

use self::connection::Connection;
use self::reply::Reply;
use self::scripts::Scripts;
use super::url::RedisTarget;
use super::{StoreError, StreamStore};
use crate::domain::rules::MAX_TOMBSTONES;
use crate::domain::{
    AccountView, Clock, EndReason, Grant, HeartbeatDecision, Limit, OnLimit, Policy, StartDecision,
    StartRequest, StreamId, UserId,
};
use crate::telemetry;

/// Where the scripts read `now` from.
#[derive(Clone)]
pub enum RedisTime {
    /// The Redis server's `TIME`: instances with skewed clocks agree.
    Server,
    /// An injected clock, for tests that move time instead of sleeping.
    Clock(Arc<dyn Clock>),
}

pub struct RedisStore {
    connection: Connection,
    scripts: Scripts,
    prefix: String,
    policy: Policy,
    time: RedisTime,
}

impl RedisStore {
    /// Connects to the server or cluster; fails if it does not answer.
    pub async fn open(
        target: &RedisTarget,
        policy: Policy,
        time: RedisTime,
    ) -> Result<Arc<Self>, StoreError> {
        let connection = Connection::open(target).await?;
        let store = Self {
            connection,
            scripts: Scripts::new(),
            prefix: target.prefix.clone(),
            policy,
            time,
        };
        store.ping().await?;
        Ok(Arc::new(store))
    }

    fn key(&self, user: &UserId) -> String {
        format!("{}:{{{}}}", self.prefix, user)
    }

    /// Runs one script on the account's key: KEYS[1] is the key, ARGV[1..6]
    /// the clock and the policy, then the operation's own arguments.
    async fn run(
        &self,
        op: &'static str,
        script: &redis::Script,
        user: &UserId,
        args: &[&str],
    ) -> Result<Reply, StoreError> {
        let mut call = script.key(self.key(user));
        self.common_args(&mut call);
        for arg in args {
            call.arg(*arg);
        }
        let raw: String = self
            .connection
            .invoke(&call)
            .await
            .map_err(|e| StoreError::unavailable(op, e))?;
        let reply: Reply = serde_json::from_str(&raw).map_err(|e| StoreError::Corrupt {
            detail: format!("{op} script answered {raw:?}: {e}"),
        })?;
        telemetry::record_decision("expired", reply.expired());
        Ok(reply)
    }

    fn common_args(&self, call: &mut ScriptInvocation<'_>) {
        let now = match &self.time {
            RedisTime::Server => String::new(),
            RedisTime::Clock(clock) => clock.now().as_millis().to_string(),
        };
        let on_limit = match self.policy.on_limit {
            OnLimit::Reject => "reject",
            OnLimit::EvictOldest => "evict-oldest",
        };
        call.arg(now)
            .arg(self.policy.default_limit.get())
            .arg(millis(self.policy.lease_ttl))
            .arg(on_limit)
            .arg(millis(self.policy.tombstone_ttl()))
            .arg(MAX_TOMBSTONES);
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn unexpected(op: &'static str, reply: Reply) -> StoreError {
    StoreError::Corrupt {
        detail: format!("{op} script gave an answer of another operation: {reply:?}"),
    }
}

#[async_trait]
impl StreamStore for RedisStore {
    #[tracing::instrument(skip_all, name = "redis.start")]
    async fn start(&self, user: &UserId, req: StartRequest) -> Result<StartDecision, StoreError> {
        let plan = req.plan.map_or(String::new(), |l| l.get().to_string());
        let mut args = vec![
            req.stream_id.as_str(),
            req.device_id.as_ref().map_or("", |d| d.as_str()),
            req.content_id.as_ref().map_or("", |c| c.as_str()),
            &plan,
        ];
        args.extend(req.terminate.iter().map(StreamId::as_str));
        let decision = match self.run("start", &self.scripts.start, user, &args).await? {
            Reply::Granted {
                stream,
                evicted,
                replaced,
                active,
                limit,
                ..
            } => StartDecision::Granted(Grant {
                stream,
                evicted: evicted.0,
                replaced: replaced.0,
                active,
                limit,
            }),
            Reply::AlreadyLive {
                stream,
                active,
                limit,
                ..
            } => StartDecision::AlreadyLive {
                stream,
                active,
                limit,
            },
            Reply::LimitReached { limit, live, .. } => StartDecision::LimitReached {
                limit,
                live: live.0,
            },
            Reply::StreamIdConflict { .. } => StartDecision::StreamIdConflict,
            other => return Err(unexpected("start", other)),
        };
        Ok(decision)
    }

    #[tracing::instrument(skip_all, name = "redis.heartbeat")]
    async fn heartbeat(
        &self,
        user: &UserId,
        stream: &StreamId,
    ) -> Result<HeartbeatDecision, StoreError> {
        let reply = self
            .run(
                "heartbeat",
                &self.scripts.heartbeat,
                user,
                &[stream.as_str()],
            )
            .await?;
        match reply {
            Reply::Renewed { stream, .. } => Ok(HeartbeatDecision::Renewed(stream)),
            Reply::Ended { reason, .. } => Ok(HeartbeatDecision::Ended(reason)),
            Reply::Unknown { .. } => Ok(HeartbeatDecision::Unknown),
            other => Err(unexpected("heartbeat", other)),
        }
    }

    #[tracing::instrument(skip_all, name = "redis.end")]
    async fn end(
        &self,
        user: &UserId,
        stream: &StreamId,
        reason: EndReason,
    ) -> Result<bool, StoreError> {
        let args = [stream.as_str(), reason.as_str()];
        match self.run("end", &self.scripts.end, user, &args).await? {
            Reply::EndedStream { ended, .. } => Ok(ended),
            other => Err(unexpected("end", other)),
        }
    }

    #[tracing::instrument(skip_all, name = "redis.view")]
    async fn view(&self, user: &UserId) -> Result<AccountView, StoreError> {
        match self.run("view", &self.scripts.view, user, &[]).await? {
            Reply::View {
                limit,
                source,
                live,
            } => Ok(AccountView {
                limit,
                source,
                live: live.0,
            }),
            other => Err(unexpected("view", other)),
        }
    }

    #[tracing::instrument(skip_all, name = "redis.set_limit")]
    async fn set_limit(
        &self,
        user: &UserId,
        limit: Option<Limit>,
    ) -> Result<Vec<StreamId>, StoreError> {
        let limit = limit.map(|l| l.get().to_string()).unwrap_or_default();
        match self
            .run("set_limit", &self.scripts.set_limit, user, &[&limit])
            .await?
        {
            Reply::LimitSet { revoked, .. } => Ok(revoked.0),
            other => Err(unexpected("set_limit", other)),
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.connection
            .ping()
            .await
            .map_err(|e| StoreError::unavailable("pinging Redis", e))
    }

    async fn close(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
