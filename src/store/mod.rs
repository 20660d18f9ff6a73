//! Where account state lives. A store applies the domain rules to one
//! account atomically: the memory and file stores (and DynamoDB's starts,
//! stops and admin changes) call `domain::rules`; Redis runs the same rules
//! in Lua, and a DynamoDB heartbeat is a conditional update stating them.
//! `tests/conformance` runs one suite against every store.

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::{
    AccountView, Clock, EndReason, HeartbeatDecision, Limit, Paced, PlanName, Policy, Rates,
    ResumeDecision, SecretHash, StartDecision, StartRequest, StreamId, UserId,
};

#[cfg(feature = "dynamodb")]
mod backoff;
#[cfg(feature = "dynamodb")]
mod dynamodb;
#[cfg(feature = "file")]
mod file;
#[cfg(feature = "dynamodb")]
mod group;
#[cfg(feature = "file")]
mod journal;
mod memory;
#[cfg(feature = "redis")]
mod redis;
mod sweeper;
mod table;
mod url;

#[cfg(feature = "dynamodb")]
pub use dynamodb::DynamoDbStore;
#[cfg(feature = "file")]
pub use file::FileStore;
pub use memory::MemoryStore;
#[cfg(feature = "redis")]
pub use redis::{Durability, RedisStore, RedisTime, ScriptCalls};
#[cfg(feature = "dynamodb")]
pub use url::DynamoDbUrl;
#[cfg(feature = "redis")]
pub use url::RedisTarget;
pub use url::{StoreUrl, redact_userinfo};

/// The store failed; contention and full accounts are decisions, not errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable while {context}")]
    Unavailable {
        context: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Other instances kept changing the account between our read and
    /// our conditional write, every time we tried.
    #[error("the account kept changing under us: gave up after {attempts} attempts")]
    Contended { attempts: u32 },
    #[error("stored data is unreadable: {detail}")]
    Corrupt { detail: String },
    #[error("{0}")]
    Config(String),
}

impl StoreError {
    pub fn unavailable(
        context: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StoreError::Unavailable {
            context,
            source: source.into(),
        }
    }

    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable { .. } | StoreError::Contended { .. }
        )
    }
}

/// One operation per API decision; each runs atomically on one account.
#[async_trait]
pub trait StreamStore: Send + Sync + 'static {
    async fn start(&self, user: &UserId, req: StartRequest) -> Result<StartDecision, StoreError>;

    /// Renews a lease started without a secret.
    async fn heartbeat(
        &self,
        user: &UserId,
        stream: &StreamId,
    ) -> Result<HeartbeatDecision, StoreError> {
        self.heartbeat_with(user, stream, None).await
    }

    /// Renews a live lease that `secret` opens (a lease started with a
    /// secret is `Unknown` to any other).
    async fn heartbeat_with(
        &self,
        user: &UserId,
        stream: &StreamId,
        secret: Option<&SecretHash>,
    ) -> Result<HeartbeatDecision, StoreError>;

    /// Re-admits a stream the store forgot, as `req` (built from a signed
    /// grant), in one atomic step: see `Account::resume`.
    async fn resume(&self, user: &UserId, req: StartRequest) -> Result<ResumeDecision, StoreError>;

    /// Ends a live stream (`stopped` or `revoked`); `false` if it was not live.
    async fn end(
        &self,
        user: &UserId,
        stream: &StreamId,
        reason: EndReason,
    ) -> Result<bool, StoreError>;

    async fn view(&self, user: &UserId) -> Result<AccountView, StoreError>;

    /// Sets or clears the limit override; returns the streams it revoked.
    async fn set_limit(
        &self,
        user: &UserId,
        limit: Option<Limit>,
    ) -> Result<Vec<StreamId>, StoreError>;

    /// Sets or clears the plan an administrator assigned; returns the
    /// streams it revoked (above the new plan's limit or rules).
    async fn set_plan(
        &self,
        user: &UserId,
        plan: Option<PlanName>,
    ) -> Result<Vec<StreamId>, StoreError>;

    /// Counts a request of `user` (about `stream`, if given) against the
    /// flood limits `rates`, where this store keeps them with its accounts
    /// (`memory`, `file:`: the lease's pace in the lease, the account's
    /// beside it, found by one lookup). Stores that keep none, and accounts
    /// or streams a store lacks, answer `NotKept`: the caller counts those.
    fn pace(&self, _user: &UserId, _stream: Option<&StreamId>, _rates: Rates) -> Paced {
        Paced::NOT_KEPT
    }

    /// Succeeds when the store can serve requests.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Makes everything acknowledged durable and releases the store.
    async fn close(&self) -> Result<(), StoreError>;
}

/// Opens the store a URL names.
/// How a store is used, beside where it is: the flags that belong to the
/// store and not to its URL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreOptions {
    /// `--redis-strict`: refuse a Redis that may forget keys.
    pub redis_strict: bool,
}

/// Opens the store at `url` with the default [`StoreOptions`].
pub async fn connect(
    url: &StoreUrl,
    policy: Policy,
    clock: Arc<dyn Clock>,
) -> Result<Arc<dyn StreamStore>, StoreError> {
    connect_with(url, StoreOptions::default(), policy, clock).await
}

/// Opens the store at `url`, used as `options` say.
pub async fn connect_with(
    url: &StoreUrl,
    #[allow(unused_variables)] options: StoreOptions,
    policy: Policy,
    clock: Arc<dyn Clock>,
) -> Result<Arc<dyn StreamStore>, StoreError> {
    match url {
        StoreUrl::Memory => Ok(MemoryStore::open(policy, clock)),
        #[cfg(feature = "file")]
        StoreUrl::File(path) => Ok(FileStore::open(path, policy, clock).await?),
        #[cfg(feature = "redis")]
        StoreUrl::Redis(target) => {
            Ok(
                RedisStore::open_checked(target, policy, RedisTime::Server, options.redis_strict)
                    .await?,
            )
        }
        #[cfg(feature = "dynamodb")]
        StoreUrl::DynamoDb(url) => Ok(DynamoDbStore::connect(url, policy, clock).await?),
    }
}

/// Creates what a store needs before first use; idempotent. Redis needs
/// nothing created, but is connected to and checked (its function library
/// loaded, its settings read), so a wrong URL fails here too.
/// `options` are the ones `serve` would use, so that `init --redis-strict`
/// refuses what `serve --redis-strict` would.
pub async fn init(
    url: &StoreUrl,
    #[allow(unused_variables)] options: StoreOptions,
) -> Result<(), StoreError> {
    match url {
        StoreUrl::Memory => Ok(()),
        #[cfg(feature = "file")]
        StoreUrl::File(path) => FileStore::init(path).await,
        #[cfg(feature = "redis")]
        StoreUrl::Redis(target) => {
            let store = RedisStore::open_checked(
                target,
                Policy::default(),
                RedisTime::Server,
                options.redis_strict,
            )
            .await?;
            store.ping().await?;
            store.close().await
        }
        #[cfg(feature = "dynamodb")]
        StoreUrl::DynamoDb(url) => DynamoDbStore::init(url).await,
    }
}
