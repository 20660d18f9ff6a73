//! `redis://`, `rediss://`, `redis+cluster://`: many stateless instances
//! share one exact limit.
//!
//! Each account is one hash, `<prefix>:{<account>}` (the braces make it its
//! own cluster hash slot), one field per lease and tombstone plus a few
//! small ones (DESIGN.md, "Redis and Redis Cluster", data model). Each decision is one `FCALL` (or
//! `EVALSHA` on Redis < 7) of a Lua function that runs the same rules as
//! `domain::rules` on that key alone, with `now` from the Redis server's
//! clock: one round trip, atomic because Redis runs a script without
//! interleaving anything.

mod connection;
mod durability;
mod reply;
mod scripts;

use std::sync::Arc;

use async_trait::async_trait;

use self::connection::Connection;
pub use self::durability::Durability;
use self::reply::{Reply, unpack_lease};
pub use self::scripts::ScriptCalls;
use self::scripts::{Op, Scripts};
use super::url::RedisTarget;
use super::{StoreError, StreamStore};
use crate::domain::rules::MAX_TOMBSTONES;
use crate::domain::{
    AccountView, Admission, Clock, Conflict, EndReason, HeartbeatDecision, Lease, Limit, OnLimit,
    PlanName, Plans, Policy, Refusal, ResumeDecision, SecretHash, StartDecision, StartRequest,
    StreamId, UserId,
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
    /// `Auto` once the library is loaded means `FCALL`.
    calls: ScriptCalls,
    durability: Durability,
    prefix: String,
    policy: Policy,
    /// ARGV[2] of every call: the policy, packed once.
    packed_policy: Arc<str>,
    /// ARGV[3]: the plans as last packed, and what they were packed from.
    plans_cache: std::sync::Mutex<Option<(Arc<Plans>, Arc<str>)>>,
    time: RedisTime,
}

impl RedisStore {
    /// Connects to the server or cluster; fails if it does not answer.
    /// Checks that the server keeps what it is told (see [`durability`])
    /// and loads the scripts as a function library where it can.
    pub async fn open(
        target: &RedisTarget,
        policy: Policy,
        time: RedisTime,
    ) -> Result<Arc<Self>, StoreError> {
        Self::open_checked(target, policy, time, false).await
    }

    /// As [`Self::open`]; with `strict` (`--redis-strict`), refuses a
    /// server that may forget keys instead of logging it.
    pub async fn open_checked(
        target: &RedisTarget,
        policy: Policy,
        time: RedisTime,
        strict: bool,
    ) -> Result<Arc<Self>, StoreError> {
        Self::open_inner(target, policy, time, ScriptCalls::Auto, strict).await
    }

    /// As [`Self::open`], choosing how scripts are called.
    pub async fn open_with(
        target: &RedisTarget,
        policy: Policy,
        time: RedisTime,
        calls: ScriptCalls,
    ) -> Result<Arc<Self>, StoreError> {
        Self::open_inner(target, policy, time, calls, false).await
    }

    async fn open_inner(
        target: &RedisTarget,
        policy: Policy,
        time: RedisTime,
        calls: ScriptCalls,
        strict: bool,
    ) -> Result<Arc<Self>, StoreError> {
        let connection = Connection::open(target).await?;
        let mut store = Self {
            connection,
            scripts: Scripts::new(),
            calls,
            durability: Durability::Safe,
            prefix: target.prefix.clone(),
            packed_policy: packed_policy(&policy),
            plans_cache: std::sync::Mutex::new(None),
            policy,
            time,
        };
        store.ping().await?;
        store.durability = durability::check(&store.connection, strict).await?;
        if calls == ScriptCalls::Auto
            && let Err(e) = store.load_library().await
        {
            tracing::warn!(
                error = %e,
                "Redis did not take the function library (Redis < 7?); calling scripts with EVALSHA"
            );
            store.calls = ScriptCalls::Evalsha;
        }
        Ok(Arc::new(store))
    }

    /// What the server said at connect about keeping every key.
    pub fn durability(&self) -> &Durability {
        &self.durability
    }

    /// How this store calls its scripts: `Auto` means `FCALL`.
    pub fn script_calls(&self) -> ScriptCalls {
        self.calls
    }

    async fn load_library(&self) -> Result<(), StoreError> {
        let mut load = redis::cmd("FUNCTION");
        load.arg("LOAD").arg("REPLACE").arg(self.scripts.library());
        self.connection
            .query::<String>(&load)
            .await
            .map(drop)
            .map_err(|e| StoreError::unavailable("loading the function library into Redis", e))
    }

    fn key(&self, user: &UserId) -> String {
        format!("{}:{{{}}}", self.prefix, user)
    }

    /// Runs one script on the account's key: KEYS[1] is the key, ARGV[1..6]
    /// the clock and the policy, then the operation's own arguments.
    async fn run(&self, op: Op, user: &UserId, args: &[&str]) -> Result<Reply, StoreError> {
        let key = self.key(user);
        let raw = match self.calls {
            ScriptCalls::Auto => self.fcall(op, &key, args).await,
            ScriptCalls::Evalsha => {
                let mut call = self.scripts.evalsha(op).key(key);
                for arg in self.common_args() {
                    call.arg(&*arg);
                }
                for arg in args {
                    call.arg(*arg);
                }
                self.connection.invoke(&call).await
            }
        };
        let op = op.name();
        let raw = raw.map_err(|e| StoreError::unavailable(op, e))?;
        let reply: Reply = serde_json::from_str(&raw).map_err(|e| StoreError::Corrupt {
            detail: format!("{op} script answered {raw:?}: {e}"),
        })?;
        telemetry::record_decision("expired", reply.expired());
        Ok(reply)
    }

    /// `FCALL`; a server that lost the library gets it again, once.
    async fn fcall(&self, op: Op, key: &str, args: &[&str]) -> redis::RedisResult<String> {
        let mut call = redis::cmd("FCALL");
        call.arg(self.scripts.function(op))
            .arg(1)
            .arg(key)
            .arg(
                self.common_args()
                    .iter()
                    .map(|a| &**a)
                    .collect::<Vec<&str>>(),
            )
            .arg(args);
        match self.connection.query(&call).await {
            Err(e) if e.to_string().contains("Function not found") => {
                tracing::warn!("Redis lost the function library; loading it again");
                self.load_library().await.map_err(|_| e)?;
                self.connection.query(&call).await
            }
            answer => answer,
        }
    }

    /// ARGV[1..3]: the clock, the policy and the plans (see
    /// `streamguard.lua`).
    fn common_args(&self) -> [Arc<str>; 3] {
        let now = match &self.time {
            RedisTime::Server => Arc::from(""),
            RedisTime::Clock(clock) => Arc::from(clock.now().as_millis().to_string()),
        };
        [now, self.packed_policy.clone(), self.packed_plans()]
    }

    /// The plans as the scripts take them, packed again only when the
    /// plans file changed.
    fn packed_plans(&self) -> Arc<str> {
        let Some(book) = &self.policy.plans else {
            return Arc::from("");
        };
        let plans = book.current();
        let mut cache = self.plans_cache.lock().expect("plans cache");
        match &*cache {
            Some((packed_from, packed)) if Arc::ptr_eq(packed_from, &plans) => packed.clone(),
            _ => {
                let packed: Arc<str> = Arc::from(plans.packed());
                *cache = Some((plans, packed.clone()));
                packed
            }
        }
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn packed_policy(policy: &Policy) -> Arc<str> {
    let on_limit = match policy.on_limit {
        OnLimit::Reject => "reject",
        OnLimit::EvictOldest => "evict-oldest",
    };
    Arc::from(format!(
        "{}|{}|{on_limit}|{}|{MAX_TOMBSTONES}",
        policy.default_limit.get(),
        millis(policy.lease_ttl),
        millis(policy.tombstone_ttl()),
    ))
}

/// A start's arguments, in the order `streamguard.lua` takes them.
struct StartArgs<'a> {
    req: &'a StartRequest,
    limit_claim: String,
    tags: String,
    secret: String,
}

fn start_args(req: &StartRequest) -> StartArgs<'_> {
    StartArgs {
        req,
        limit_claim: req
            .limit_claim
            .map_or(String::new(), |l| l.get().to_string()),
        // Sorted by name, as the domain keeps them: the script compares a
        // retry's tags as this string.
        tags: req
            .tags
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join(","),
        secret: req.secret.map(|s| s.to_hex()).unwrap_or_default(),
    }
}

impl StartArgs<'_> {
    fn as_args(&self) -> Vec<&str> {
        let req = self.req;
        let mut args = vec![
            req.stream_id.as_str(),
            req.device_id.as_ref().map_or("", |d| d.as_str()),
            req.content_id.as_ref().map_or("", |c| c.as_str()),
            &self.limit_claim,
            &self.tags,
            req.plan.as_ref().map_or("", PlanName::as_str),
            &self.secret,
        ];
        args.extend(req.terminate.iter().map(StreamId::as_str));
        args
    }
}

/// What a start's reply decided.
fn start_decision(reply: Reply) -> Result<StartDecision, StoreError> {
    Ok(match reply {
        Reply::Granted {
            stream,
            evicted,
            replaced,
            active,
            limit,
            ..
        } => StartDecision::Granted(Admission {
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
        Reply::LimitReached { conflicts, .. } if !conflicts.is_empty() => {
            StartDecision::LimitReached(Refusal {
                conflicts: conflicts
                    .into_iter()
                    .map(|c| Conflict {
                        rule: c.rule.into(),
                        limit: c.limit,
                        live: c.live.0,
                    })
                    .collect(),
            })
        }
        Reply::MissingAttribute {
            rule, attribute, ..
        } => StartDecision::MissingAttribute {
            rule: rule.into(),
            attribute,
        },
        Reply::StreamIdConflict { .. } => StartDecision::StreamIdConflict,
        other => return Err(unexpected("start", other)),
    })
}

/// The lease a renewal answered with, as the script stores it.
fn renewed(id: &StreamId, packed: &str) -> Result<Lease, StoreError> {
    unpack_lease(id, packed).ok_or_else(|| StoreError::Corrupt {
        detail: format!("heartbeat script renewed {id} as {packed:?}"),
    })
}

fn unexpected(op: &'static str, reply: Reply) -> StoreError {
    StoreError::Corrupt {
        detail: format!("{op} script gave an answer of another operation: {reply:?}"),
    }
}

#[async_trait]
impl StreamStore for RedisStore {
    #[tracing::instrument(level = "debug", skip_all, name = "redis.start")]
    async fn start(&self, user: &UserId, req: StartRequest) -> Result<StartDecision, StoreError> {
        let reply = self
            .run(Op::Start, user, &start_args(&req).as_args())
            .await?;
        start_decision(reply)
    }

    #[tracing::instrument(level = "debug", skip_all, name = "redis.resume")]
    async fn resume(&self, user: &UserId, req: StartRequest) -> Result<ResumeDecision, StoreError> {
        let reply = self
            .run(Op::Resume, user, &start_args(&req).as_args())
            .await?;
        match reply {
            Reply::Renewed { lease, .. } => Ok(ResumeDecision::Heartbeat(
                HeartbeatDecision::Renewed(renewed(&req.stream_id, &lease)?),
            )),
            Reply::Ended { reason, .. } => {
                Ok(ResumeDecision::Heartbeat(HeartbeatDecision::Ended(reason)))
            }
            Reply::Unknown { .. } => Ok(ResumeDecision::Heartbeat(HeartbeatDecision::Unknown)),
            other => start_decision(other).map(ResumeDecision::Start),
        }
    }

    #[tracing::instrument(level = "debug", skip_all, name = "redis.heartbeat")]
    async fn heartbeat_with(
        &self,
        user: &UserId,
        stream: &StreamId,
        secret: Option<&SecretHash>,
    ) -> Result<HeartbeatDecision, StoreError> {
        let secret = secret.map(|s| s.to_hex());
        let args = [stream.as_str(), secret.as_deref().unwrap_or("")];
        let reply = self.run(Op::Heartbeat, user, &args).await?;
        match reply {
            Reply::Renewed { lease, .. } => {
                Ok(HeartbeatDecision::Renewed(renewed(stream, &lease)?))
            }
            Reply::Ended { reason, .. } => Ok(HeartbeatDecision::Ended(reason)),
            Reply::Unknown { .. } => Ok(HeartbeatDecision::Unknown),
            other => Err(unexpected("heartbeat", other)),
        }
    }

    #[tracing::instrument(level = "debug", skip_all, name = "redis.end")]
    async fn end(
        &self,
        user: &UserId,
        stream: &StreamId,
        reason: EndReason,
    ) -> Result<bool, StoreError> {
        let args = [stream.as_str(), reason.as_str()];
        match self.run(Op::End, user, &args).await? {
            Reply::EndedStream { ended, .. } => Ok(ended),
            other => Err(unexpected("end", other)),
        }
    }

    #[tracing::instrument(level = "debug", skip_all, name = "redis.view")]
    async fn view(&self, user: &UserId) -> Result<AccountView, StoreError> {
        match self.run(Op::View, user, &[]).await? {
            Reply::View {
                limit,
                source,
                plan,
                plan_source,
                live,
                ended,
            } => Ok(AccountView {
                limit,
                source,
                live: live.0,
                ended: ended.0,
                plan: match (&self.policy.plans, plan) {
                    (Some(book), Some(name)) => book.current().get(&name).cloned(),
                    _ => None,
                },
                plan_source,
            }),
            other => Err(unexpected("view", other)),
        }
    }

    #[tracing::instrument(level = "debug", skip_all, name = "redis.set_limit")]
    async fn set_limit(
        &self,
        user: &UserId,
        limit: Option<Limit>,
    ) -> Result<Vec<StreamId>, StoreError> {
        let limit = limit.map(|l| l.get().to_string()).unwrap_or_default();
        match self.run(Op::SetLimit, user, &[&limit]).await? {
            Reply::LimitSet { revoked, .. } => Ok(revoked.0),
            other => Err(unexpected("set_limit", other)),
        }
    }

    #[tracing::instrument(level = "debug", skip_all, name = "redis.set_plan")]
    async fn set_plan(
        &self,
        user: &UserId,
        plan: Option<PlanName>,
    ) -> Result<Vec<StreamId>, StoreError> {
        let plan = plan.as_ref().map_or("", PlanName::as_str);
        match self.run(Op::SetPlan, user, &[plan]).await? {
            Reply::LimitSet { revoked, .. } => Ok(revoked.0),
            other => Err(unexpected("set_plan", other)),
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
