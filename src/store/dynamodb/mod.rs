//! `dynamodb://TABLE`: one item per account in an Amazon DynamoDB table.
//!
//! A decision reads the account's item with a consistent read, runs the
//! domain rules on it with `now` from the injected clock, and writes the
//! result back only if the item still has the version it read (a
//! conditional write). A decision that lost that race runs again, after a
//! jittered backoff, on the item that won (a failed condition returns it),
//! at most [`backoff::MAX_ATTEMPTS`] times. Within one instance, decisions
//! on one account take turns ([`account_locks`]), so only other instances
//! race it.
//!
//! Decisions that change nothing (a refusal, an idempotent retry, an unknown
//! stream, a read) write nothing. Expiry is decided by the rules at read
//! time; DynamoDB TTL only deletes items nobody needs any more.

use std::sync::Arc;

use async_trait::async_trait;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;

use super::{DynamoDbUrl, StoreError, StreamStore};
use crate::domain::{
    Account, AccountView, Clock, EndReason, HeartbeatDecision, Limit, Policy, StartDecision,
    StartRequest, StreamId, Timestamp, UserId,
};
use crate::telemetry;

mod account_locks;
mod backoff;
mod item;
mod table;

use account_locks::AccountLocks;
use backoff::Backoff;
use item::{PK, Stored, VERSION};

/// Makes a failed condition return the item that failed it.
const ALL_OLD: ReturnValuesOnConditionCheckFailure = ReturnValuesOnConditionCheckFailure::AllOld;

/// The key `ping` reads: not a valid account id, so never an account.
const PING_KEY: &str = "#ping";

pub struct DynamoDbStore {
    client: Client,
    table: String,
    policy: Policy,
    clock: Arc<dyn Clock>,
    locks: AccountLocks,
}

/// Whether a conditional write went through.
enum Write {
    Done,
    /// Someone else wrote first; `current` is the item that made the
    /// condition fail (DynamoDB returns it), so a retry needs no new read.
    Conflict {
        current: Option<Stored>,
    },
}

impl DynamoDbStore {
    /// Connects with the AWS SDK's default chain for credentials and region,
    /// overridden by the URL's `region` and `endpoint`.
    pub async fn connect(
        url: &DynamoDbUrl,
        policy: Policy,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, StoreError> {
        Self::open(&sdk_config(url).await, &url.table, policy, clock).await
    }

    /// Opens `table` with an SDK configuration made by the caller, after
    /// checking that the table has the key schema the store needs.
    pub async fn open(
        config: &SdkConfig,
        table: &str,
        policy: Policy,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, StoreError> {
        let client = Client::new(config);
        table::check(&client, table).await?;
        Ok(Arc::new(Self {
            client,
            table: table.to_owned(),
            policy,
            clock,
            locks: AccountLocks::new(),
        }))
    }

    /// `streamguard init`: creates the table with TTL, as [`Self::create_table`].
    pub async fn init(url: &DynamoDbUrl) -> Result<(), StoreError> {
        Self::create_table(&sdk_config(url).await, &url.table).await
    }

    /// Creates `table` (on-demand billing, partition key `pk`) and enables
    /// TTL on its `ttl` attribute, unless already done.
    pub async fn create_table(config: &SdkConfig, table: &str) -> Result<(), StoreError> {
        table::create(&Client::new(config), table).await
    }

    /// Runs `rule` on the account until its result is written or nothing
    /// needs writing. `rule` returns its answer and whether it changed the
    /// account; it runs again on the item that won whenever a write loses.
    async fn decide<R>(
        &self,
        op: &'static str,
        user: &UserId,
        mut rule: impl FnMut(&mut Account, Timestamp, &Policy) -> (R, bool),
    ) -> Result<R, StoreError> {
        let _turn = self.locks.lock(user.as_str()).await;
        let mut backoff = Backoff::new();
        let mut stored = self.read(user).await?;
        loop {
            let version = stored.as_ref().map(|s| s.version);
            let mut account = stored.map(|s| s.account).unwrap_or_default();
            let now = self.clock.now();
            let expired = account.expire(now, &self.policy);
            let (answer, changed) = rule(&mut account, now, &self.policy);
            if !changed {
                return Ok(answer);
            }
            match self.write(user, &account, version).await? {
                Write::Done => {
                    telemetry::record_decision("expired", expired);
                    return Ok(answer);
                }
                Write::Conflict { current } => {
                    metrics::counter!("streamguard_store_conflicts_total", "op" => op).increment(1);
                    if !backoff.wait().await {
                        return Err(StoreError::Contended {
                            attempts: backoff.attempts(),
                        });
                    }
                    stored = current;
                }
            }
        }
    }

    async fn read(&self, user: &UserId) -> Result<Option<Stored>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, item::key(user.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::unavailable("reading the account from DynamoDB", e))?;
        out.item.as_ref().map(item::decode).transpose()
    }

    /// Writes `account` if the item is still at `read_version` (`None`: the
    /// item must not exist). An account left with nothing is deleted.
    async fn write(
        &self,
        user: &UserId,
        account: &Account,
        read_version: Option<u64>,
    ) -> Result<Write, StoreError> {
        let key = item::key(user.as_str());
        if account.is_idle() {
            let Some(version) = read_version else {
                return Ok(Write::Done);
            };
            let delete = self
                .client
                .delete_item()
                .table_name(&self.table)
                .key(PK, key)
                .condition_expression("#v = :v")
                .expression_attribute_names("#v", VERSION)
                .expression_attribute_values(":v", item::number(version));
            let delete = delete.return_values_on_condition_check_failure(ALL_OLD);
            return outcome(delete.send().await, "deleting an idle account");
        }
        let next = read_version.map_or(1, |v| v + 1);
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item::encode(key, account, next, &self.policy)));
        let put = match read_version {
            Some(version) => put
                .condition_expression("#v = :v")
                .expression_attribute_names("#v", VERSION)
                .expression_attribute_values(":v", item::number(version)),
            None => put
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", PK),
        };
        let put = put.return_values_on_condition_check_failure(ALL_OLD);
        outcome(put.send().await, "writing the account to DynamoDB")
    }
}

/// A conditional write's result: a failed condition is a lost race.
fn outcome<T, E: ConditionFailure + std::error::Error + Send + Sync + 'static>(
    sent: Result<T, SdkError<E, HttpResponse>>,
    context: &'static str,
) -> Result<Write, StoreError> {
    match sent {
        Ok(_) => Ok(Write::Done),
        Err(e) => match e
            .as_service_error()
            .and_then(ConditionFailure::current_item)
        {
            Some(current) => Ok(Write::Conflict {
                current: current.map(item::decode).transpose()?,
            }),
            None => Err(StoreError::unavailable(context, e)),
        },
    }
}

/// The errors of conditional writes.
trait ConditionFailure {
    /// `Some` if the condition failed, with the item that failed it (if any).
    fn current_item(&self) -> Option<Option<&item::Item>>;
}

impl ConditionFailure for PutItemError {
    fn current_item(&self) -> Option<Option<&item::Item>> {
        match self {
            PutItemError::ConditionalCheckFailedException(e) => Some(e.item.as_ref()),
            _ => None,
        }
    }
}

impl ConditionFailure for DeleteItemError {
    fn current_item(&self) -> Option<Option<&item::Item>> {
        match self {
            DeleteItemError::ConditionalCheckFailedException(e) => Some(e.item.as_ref()),
            _ => None,
        }
    }
}

async fn sdk_config(url: &DynamoDbUrl) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &url.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(endpoint) = &url.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}

#[async_trait]
impl StreamStore for DynamoDbStore {
    #[tracing::instrument(skip_all, fields(store = "dynamodb"))]
    async fn start(&self, user: &UserId, req: StartRequest) -> Result<StartDecision, StoreError> {
        let decision = self
            .decide("start", user, |account, now, policy| {
                let plan = account.plan;
                let decision = account.start(req.clone(), now, policy);
                // A new plan is recorded whatever the decision.
                let changed = matches!(decision, StartDecision::Granted(_)) || account.plan != plan;
                (decision, changed)
            })
            .await?;
        Ok(decision)
    }

    #[tracing::instrument(skip_all, fields(store = "dynamodb"))]
    async fn heartbeat(
        &self,
        user: &UserId,
        stream: &StreamId,
    ) -> Result<HeartbeatDecision, StoreError> {
        let decision = self
            .decide("heartbeat", user, |account, now, policy| {
                let decision = account.heartbeat(stream, now, policy);
                let renewed = matches!(decision, HeartbeatDecision::Renewed(_));
                (decision, renewed)
            })
            .await?;
        Ok(decision)
    }

    #[tracing::instrument(skip_all, fields(store = "dynamodb"))]
    async fn end(
        &self,
        user: &UserId,
        stream: &StreamId,
        reason: EndReason,
    ) -> Result<bool, StoreError> {
        let ended = self
            .decide("end", user, |account, now, policy| {
                let ended = account.end(stream, reason, now, policy);
                (ended, ended)
            })
            .await?;
        Ok(ended)
    }

    #[tracing::instrument(skip_all, fields(store = "dynamodb"))]
    async fn view(&self, user: &UserId) -> Result<AccountView, StoreError> {
        let account = self
            .read(user)
            .await?
            .map(|s| s.account)
            .unwrap_or_default();
        Ok(account.view(self.clock.now(), &self.policy))
    }

    #[tracing::instrument(skip_all, fields(store = "dynamodb"))]
    async fn set_limit(
        &self,
        user: &UserId,
        limit: Option<Limit>,
    ) -> Result<Vec<StreamId>, StoreError> {
        let revoked = self
            .decide("set_limit", user, |account, now, policy| {
                let before = account.limit;
                let revoked = account.set_limit(limit, now, policy);
                let changed = before != limit || !revoked.is_empty();
                (revoked, changed)
            })
            .await?;
        Ok(revoked)
    }

    #[tracing::instrument(skip_all, fields(store = "dynamodb"))]
    async fn ping(&self) -> Result<(), StoreError> {
        self.client
            .get_item()
            .table_name(&self.table)
            .key(PK, item::key(PING_KEY))
            .send()
            .await
            .map(drop)
            .map_err(|e| StoreError::unavailable("reaching DynamoDB", e))
    }

    async fn close(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
