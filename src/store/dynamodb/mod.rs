//! `dynamodb://TABLE`: one account as one partition of a DynamoDB table,
//! an account item plus one item per live lease (see [`item`]).
//!
//! - A heartbeat is one conditional `UpdateItem` on its lease item (it
//!   exists and is live): no read, about 1 WCU whatever the account's size.
//!   Only when the condition fails does it read, to tell 410 from 404.
//! - Every other change (start, stop, revoke, set_limit) reads the
//!   partition with one consistent `Query`, runs the domain rules, and
//!   commits with one `TransactWriteItems` conditioned on the account
//!   item's version, ended and new lease items in the same transaction.
//!   A transaction that lost a race runs again on a fresh read, after a
//!   jittered backoff, at most [`super::backoff::MAX_ATTEMPTS`] times.
//! - Decisions on one account that queue in one instance are decided
//!   together ([`super::group`]): one read, the rules applied to each in arrival
//!   order, one transaction.
//!
//! Decisions that change nothing write nothing. Expiry is decided by the
//! rules at read time; DynamoDB TTL only deletes items nobody needs.
//! Why a heartbeat that bumps no version cannot make a start decide
//! wrongly: see DESIGN.md, "DynamoDB".

use std::sync::Arc;

use async_trait::async_trait;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{ReturnValue, ReturnValuesOnConditionCheckFailure};

use super::{DynamoDbUrl, StoreError, StreamStore};
use crate::domain::{
    AccountView, Clock, EndReason, HeartbeatDecision, Lease, Limit, PlanName, Policy,
    ResumeDecision, SecretHash, StartDecision, StartRequest, StreamId, UserId,
};
use crate::telemetry;

mod commit;
mod diff;
mod item;
mod schema;

use super::backoff::Backoff;
use super::group::{self, Groups, Job, Outcome, Request};
use commit::Commit;
use diff::{Diff, MAX_TRANSACTION_ITEMS};
use item::{ACCOUNT_SK, EXPIRES_AT, Item, PK, Stored, TTL};

/// The key `ping` reads: not a valid account id, so never an account.
const PING_KEY: &str = "#ping";

pub struct DynamoDbStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    table: String,
    policy: Policy,
    clock: Arc<dyn Clock>,
    groups: Groups,
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
        Self::open_with_client(Client::new(config), table, policy, clock).await
    }

    /// As [`Self::open`], with a client made by the caller (tests count
    /// its requests with an interceptor).
    pub async fn open_with_client(
        client: Client,
        table: &str,
        policy: Policy,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, StoreError> {
        schema::check(&client, table).await?;
        Ok(Arc::new(Self {
            inner: Arc::new(Inner {
                client,
                table: table.to_owned(),
                policy,
                clock,
                groups: Groups::default(),
            }),
        }))
    }

    /// `streamguard init`: creates the table with TTL, as [`Self::create_table`].
    pub async fn init(url: &DynamoDbUrl) -> Result<(), StoreError> {
        Self::create_table(&sdk_config(url).await, &url.table).await
    }

    /// Creates `table` (on-demand billing, partition key `pk`, sort key
    /// `sk`) and enables TTL on its `ttl` attribute, unless already done.
    pub async fn create_table(config: &SdkConfig, table: &str) -> Result<(), StoreError> {
        schema::create(&Client::new(config), table).await
    }

    async fn submit(&self, user: &UserId, change: Request) -> Result<Outcome, StoreError> {
        let (job, answer) = Job::new(change);
        if self.inner.groups.enqueue(user, job) {
            let inner = self.inner.clone();
            let user = user.clone();
            tokio::spawn(async move { inner.lead(user).await });
        }
        answer.await.unwrap_or_else(|_| {
            Err(StoreError::unavailable(
                "deciding on DynamoDB",
                "the task deciding this account's queue stopped",
            ))
        })
    }
}

impl Inner {
    /// Decides the account's queue, group by group, until it is empty.
    async fn lead(self: Arc<Self>, user: UserId) {
        let mut leader = self.groups.leader(&user);
        while let Some(jobs) = leader.take() {
            self.decide_group(&user, jobs).await;
        }
    }

    /// Decides `jobs` in arrival order on one read with one transaction;
    /// the jobs whose changes do not fit in the transaction go on to the
    /// next read.
    async fn decide_group(&self, user: &UserId, mut jobs: Vec<Job>) {
        let mut backoff = Backoff::new();
        // A decision committed in parts has the rest of its ends to write,
        // even when deciding again finds them implied by expiry alone.
        let mut finishing = false;
        while !jobs.is_empty() {
            let stored = match self.read(user).await {
                Ok(stored) => stored,
                Err(e) => return group::fail_all(jobs, &e),
            };
            let now = self.clock.now();
            let before = stored.account.clone();
            let mut account = before.clone();
            let expired = account.expire(now, &self.policy);
            let mut outcomes = Vec::new();
            let mut changed = false;
            for job in &jobs {
                let undo = account.clone();
                let (outcome, job_changed) = job.change().apply(&mut account, now, &self.policy);
                let size = Diff::between(&before, &account, now).items();
                if job_changed && size > MAX_TRANSACTION_ITEMS && !outcomes.is_empty() {
                    account = undo; // this one waits for the next transaction
                    break;
                }
                outcomes.push(outcome);
                changed |= job_changed;
            }
            let decided = outcomes.len();
            let diff = Diff::between(&before, &account, now);
            let to_write = changed || (finishing && diff.items() > 1);
            if !to_write {
                group::answer(jobs.drain(..decided), outcomes);
                continue;
            }
            let commit = if diff.items() > MAX_TRANSACTION_ITEMS {
                // One decision changes more items than a transaction holds
                // (a limit lowered by hundreds, or as many leases expired
                // at once): commit part of what it implies, then decide
                // again on what is left. See DESIGN.md.
                jobs[0].remember_first(outcomes.swap_remove(0));
                let partial = diff.first_part(&before, &account, now, &self.policy);
                match self.commit(user, stored.version, &partial).await {
                    Ok(_) => {
                        finishing = true;
                        continue;
                    }
                    Err(e) => return group::fail_all(jobs, &e),
                }
            } else {
                self.commit(user, stored.version, &diff).await
            };
            match commit {
                Ok(Commit::Done) => {
                    finishing = false;
                    telemetry::record_decision("expired", expired);
                    group::answer(jobs.drain(..decided), outcomes);
                    backoff = Backoff::new();
                }
                Ok(Commit::Conflict) => {
                    metrics::counter!("streamguard_store_conflicts_total", "op" => "transaction")
                        .increment(1);
                    if !backoff.wait().await {
                        let e = StoreError::Contended {
                            attempts: backoff.attempts(),
                        };
                        return group::fail_all(jobs, &e);
                    }
                }
                Err(e) => return group::fail_all(jobs, &e),
            }
        }
    }

    /// The account's partition, with one consistent `Query`.
    async fn read(&self, user: &UserId) -> Result<Stored, StoreError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_values(":pk", item::s(user.as_str()))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| StoreError::unavailable("reading the account from DynamoDB", e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        item::decode(&items)
    }

    /// Writes `diff` if the account item is still at `version`.
    async fn commit(
        &self,
        user: &UserId,
        version: Option<u64>,
        diff: &Diff,
    ) -> Result<Commit, StoreError> {
        let writes = commit::transaction(&self.table, user, version, diff, &self.policy);
        if writes.is_empty() {
            return Ok(Commit::Done);
        }
        let sent = self
            .client
            .transact_write_items()
            .set_transact_items(Some(writes))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(Commit::Done),
            Err(e) if e.as_service_error().is_some_and(commit::lost_a_race) => Ok(Commit::Conflict),
            Err(e) => Err(StoreError::unavailable(
                "writing the account to DynamoDB",
                e,
            )),
        }
    }

    /// One `UpdateItem`: renews the lease if it exists, is live and
    /// `secret` opens it.
    async fn renew(
        &self,
        user: &UserId,
        id: &StreamId,
        secret: Option<&SecretHash>,
    ) -> Result<Renewal, StoreError> {
        let now = self.clock.now();
        let expires_at = now + self.policy.lease_ttl;
        // No hash is "-": a lease with a secret never matches it.
        let presented = secret.map_or_else(|| "-".to_owned(), |s| s.to_hex());
        let sent = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(item::key(user.as_str(), &item::lease_sk(id.as_str()))))
            .update_expression("SET #e = :new, #ttl = :ttl")
            .condition_expression(
                "attribute_exists(#pk) AND #e > :now AND (attribute_not_exists(#s) OR #s = :s)",
            )
            .expression_attribute_names("#e", EXPIRES_AT)
            .expression_attribute_names("#s", item::SECRET)
            .expression_attribute_values(":s", item::s(&presented))
            .expression_attribute_names("#ttl", TTL)
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":new", item::number(expires_at.as_millis()))
            .expression_attribute_values(":now", item::number(now.as_millis()))
            .expression_attribute_values(
                ":ttl",
                item::lease_ttl_attribute(expires_at, &self.policy),
            )
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match sent {
            Ok(out) => {
                let lease = item::decode_lease(id.as_str(), &out.attributes.unwrap_or_default())?;
                Ok(Renewal::Renewed(lease))
            }
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                    Ok(match &failed.item {
                        Some(old) if !old.is_empty() => {
                            let lease = item::decode_lease(id.as_str(), old)?;
                            if lease.is_live(now) {
                                // Live, so the secret did not open it.
                                Renewal::Closed
                            } else {
                                // The item is there, so nothing ended it: it ran out.
                                Renewal::Expired
                            }
                        }
                        _ => Renewal::NotLive,
                    })
                }
                _ => Err(StoreError::unavailable("renewing a lease on DynamoDB", e)),
            },
        }
    }
}

enum Renewal {
    Renewed(Lease),
    Expired,
    /// Live, but started with a secret the heartbeat did not present.
    Closed,
    /// No such lease item (or the emulator did not say): read to know why.
    NotLive,
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
    #[tracing::instrument(level = "debug", skip_all, fields(store = "dynamodb"))]
    async fn start(&self, user: &UserId, req: StartRequest) -> Result<StartDecision, StoreError> {
        match self.submit(user, Request::Start(req)).await? {
            Outcome::Start(decision) => Ok(decision),
            other => Err(group::mismatch("start", other)),
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(store = "dynamodb"))]
    async fn heartbeat_with(
        &self,
        user: &UserId,
        stream: &StreamId,
        secret: Option<&SecretHash>,
    ) -> Result<HeartbeatDecision, StoreError> {
        // A lease re-created between a failed renewal and the read is
        // renewed again; twice is enough for any real race.
        for _ in 0..3 {
            match self.inner.renew(user, stream, secret).await? {
                Renewal::Renewed(lease) => return Ok(HeartbeatDecision::Renewed(lease)),
                Renewal::Expired => return Ok(HeartbeatDecision::Ended(EndReason::Expired)),
                Renewal::Closed => return Ok(HeartbeatDecision::Unknown),
                Renewal::NotLive => {}
            }
            let mut account = self.inner.read(user).await?.account;
            let now = self.inner.clock.now();
            match account.heartbeat_with(stream, secret, now, &self.inner.policy) {
                HeartbeatDecision::Renewed(_) => continue,
                decision => return Ok(decision),
            }
        }
        Err(StoreError::Contended { attempts: 3 })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(store = "dynamodb"))]
    async fn end(
        &self,
        user: &UserId,
        stream: &StreamId,
        reason: EndReason,
    ) -> Result<bool, StoreError> {
        match self
            .submit(user, Request::End(stream.clone(), reason))
            .await?
        {
            Outcome::End(ended) => Ok(ended),
            other => Err(group::mismatch("end", other)),
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(store = "dynamodb"))]
    async fn view(&self, user: &UserId) -> Result<AccountView, StoreError> {
        let account = self.inner.read(user).await?.account;
        Ok(account.view(self.inner.clock.now(), &self.inner.policy))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(store = "dynamodb"))]
    async fn set_limit(
        &self,
        user: &UserId,
        limit: Option<Limit>,
    ) -> Result<Vec<StreamId>, StoreError> {
        match self.submit(user, Request::SetLimit(limit)).await? {
            Outcome::SetLimit(revoked) => Ok(revoked),
            other => Err(group::mismatch("set_limit", other)),
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(store = "dynamodb"))]
    async fn resume(&self, user: &UserId, req: StartRequest) -> Result<ResumeDecision, StoreError> {
        let (id, secret) = (req.stream_id.clone(), req.secret);
        match self.submit(user, Request::Resume(req)).await? {
            // Live after all: renewed by the heartbeat's own write.
            Outcome::Resume(ResumeDecision::Heartbeat(HeartbeatDecision::Renewed(_))) => Ok(
                ResumeDecision::Heartbeat(self.heartbeat_with(user, &id, secret.as_ref()).await?),
            ),
            Outcome::Resume(decision) => Ok(decision),
            other => Err(group::mismatch("resume", other)),
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(store = "dynamodb"))]
    async fn set_plan(
        &self,
        user: &UserId,
        plan: Option<PlanName>,
    ) -> Result<Vec<StreamId>, StoreError> {
        match self.submit(user, Request::SetPlan(plan)).await? {
            Outcome::SetLimit(revoked) => Ok(revoked),
            other => Err(group::mismatch("set_plan", other)),
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(store = "dynamodb"))]
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner
            .client
            .get_item()
            .table_name(&self.inner.table)
            .set_key(Some(item::key(PING_KEY, ACCOUNT_SK)))
            .send()
            .await
            .map(drop)
            .map_err(|e| StoreError::unavailable("reaching DynamoDB", e))
    }

    async fn close(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
