//! What only the DynamoDB store promises: exact limits across instances that
//! share one table, no write for decisions that change nothing, a heartbeat
//! that is one write and no read, hot accounts answered within the store
//! timeout, the items' TTL, and a clear refusal of a table it cannot use.
#![cfg(feature = "dynamodb")]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TimeToLiveStatus,
};
use streamguard::domain::{OnLimit, StartDecision, StartRequest, StreamId, UserId};
use streamguard::store::{DynamoDbStore, StoreError, StreamStore};

use crate::cases::user;
use crate::harness::{dynamodb_config, policy, start_clock, unique_table};

fn req(s: &str) -> StartRequest {
    StartRequest::new(StreamId::parse(s).unwrap())
}

/// The account's item as stored, read around the store.
async fn raw_item(client: &Client, table: &str, u: &UserId) -> HashMap<String, AttributeValue> {
    client
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(u.to_string()))
        .key("sk", AttributeValue::S("#account".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("the account has an item")
}

/// Every item of the account's partition, sorted by sort key.
async fn partition(
    client: &Client,
    table: &str,
    u: &UserId,
) -> Vec<HashMap<String, AttributeValue>> {
    client
        .query()
        .table_name(table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(u.to_string()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default()
}

async fn new_table() -> (aws_config::SdkConfig, String) {
    let config = dynamodb_config().await;
    let table = unique_table();
    DynamoDbStore::create_table(&config, &table).await.unwrap();
    (config, table)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_racing_grant_exactly_the_limit() {
    let (config, table) = new_table().await;
    let clock = start_clock();
    let p = policy(3, OnLimit::Reject);
    // Two stores, each with its own SDK client and connections, as two
    // streamguard instances behind one load balancer.
    let a = DynamoDbStore::open(&config, &table, p.clone(), Arc::new(clock.clone()))
        .await
        .unwrap();
    let b = DynamoDbStore::open(&dynamodb_config().await, &table, p, Arc::new(clock.clone()))
        .await
        .unwrap();
    let u = user("two-instances");
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let store: Arc<dyn StreamStore> = if i % 2 == 0 { a.clone() } else { b.clone() };
            let u = u.clone();
            tokio::spawn(async move { store.start(&u, req(&format!("s{i}"))).await })
        })
        .collect();
    let mut grants = 0;
    for task in tasks {
        match task
            .await
            .unwrap()
            .expect("no start gives up under this contention")
        {
            StartDecision::Granted(_) => grants += 1,
            StartDecision::LimitReached { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(grants, 3);
    assert_eq!(a.view(&u).await.unwrap().live.len(), 3);
    assert_eq!(b.view(&u).await.unwrap().live.len(), 3);
    let item = raw_item(&Client::new(&config), &table, &u).await;
    let AttributeValue::N(version) = &item["version"] else {
        panic!("{item:?}")
    };
    let transactions: u32 = version.parse().unwrap();
    assert!(
        (1..=3).contains(&transactions),
        "three grants take at most three transactions (fewer when grouped); \
         the 97 refusals wrote nothing: {transactions}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_instances_evicting_at_once_keep_the_limit() {
    // Every start here writes, so the instances keep losing conditional
    // writes to each other: this passes only if those retries work.
    let (config, table) = new_table().await;
    let clock = start_clock();
    let p = policy(2, OnLimit::EvictOldest);
    let mut instances: Vec<Arc<dyn StreamStore>> = Vec::new();
    for _ in 0..4 {
        let config = dynamodb_config().await;
        instances.push(
            DynamoDbStore::open(&config, &table, p.clone(), Arc::new(clock.clone()))
                .await
                .unwrap(),
        );
    }
    let u = user("four-instances");
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let store = instances[i % 4].clone();
            let u = u.clone();
            tokio::spawn(async move { store.start(&u, req(&format!("s{i}"))).await })
        })
        .collect();
    let mut evicted = 0;
    for task in tasks {
        match task
            .await
            .unwrap()
            .expect("no start gives up under this contention")
        {
            StartDecision::Granted(grant) => evicted += grant.evicted.len(),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        evicted, 98,
        "every grant past the second evicts exactly one"
    );
    assert_eq!(instances[0].view(&u).await.unwrap().live.len(), 2);
    let item = raw_item(&Client::new(&config), &table, &u).await;
    let AttributeValue::N(version) = &item["version"] else {
        panic!("{item:?}")
    };
    let transactions: u32 = version.parse().unwrap();
    assert!(
        (4..=100).contains(&transactions),
        "each instance groups what queues in it: {transactions} transactions"
    );
    assert_eq!(
        partition(&Client::new(&config), &table, &u).await.len(),
        3,
        "two leases and the account"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_that_change_nothing_write_nothing() {
    let (config, table) = new_table().await;
    let clock = start_clock();
    let store = DynamoDbStore::open(&config, &table, policy(2, OnLimit::Reject), Arc::new(clock))
        .await
        .unwrap();
    let client = Client::new(&config);
    let u = user("no-write");
    for id in ["a", "b"] {
        store.start(&u, req(id)).await.unwrap();
    }
    let before = partition(&client, &table, &u).await;
    assert_eq!(
        raw_item(&client, &table, &u).await["version"],
        AttributeValue::N("2".into())
    );

    assert!(matches!(
        store.start(&u, req("c")).await.unwrap(),
        StartDecision::LimitReached { .. }
    ));
    assert!(matches!(
        store.start(&u, req("a")).await.unwrap(),
        StartDecision::AlreadyLive { .. }
    ));
    let unknown = StreamId::parse("never").unwrap();
    store.heartbeat(&u, &unknown).await.unwrap();
    store
        .end(&u, &unknown, streamguard::domain::EndReason::Stopped)
        .await
        .unwrap();
    store.view(&u).await.unwrap();
    assert_eq!(partition(&client, &table, &u).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_carry_a_ttl_and_idle_accounts_are_deleted() {
    let (config, table) = new_table().await;
    let clock = start_clock();
    let p = policy(2, OnLimit::Reject);
    let store = DynamoDbStore::open(&config, &table, p.clone(), Arc::new(clock.clone()))
        .await
        .unwrap();
    let client = Client::new(&config);

    let ttl = client
        .describe_time_to_live()
        .table_name(&table)
        .send()
        .await
        .unwrap()
        .time_to_live_description
        .unwrap();
    assert_eq!(ttl.attribute_name(), Some("ttl"));
    assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));

    let u = user("ttl");
    store.start(&u, req("a")).await.unwrap();
    // The lease ends 90 s after the start; its tombstone is kept 900 s more.
    let deadline = 1_800_000_000 + 90 + 900;
    for item in partition(&client, &table, &u).await {
        assert_eq!(
            item["ttl"],
            AttributeValue::N(deadline.to_string()),
            "{item:?}"
        );
    }
    // A heartbeat moves its lease item's ttl along.
    clock.advance(Duration::from_secs(30));
    store
        .heartbeat(&u, &StreamId::parse("a").unwrap())
        .await
        .unwrap();
    let lease = partition(&client, &table, &u)
        .await
        .into_iter()
        .find(|i| i["sk"] == AttributeValue::S("lease#a".into()))
        .unwrap();
    assert_eq!(lease["ttl"], AttributeValue::N((deadline + 30).to_string()));

    let capped = user("capped");
    let five = streamguard::domain::Limit::new(5).unwrap();
    store.set_limit(&capped, Some(five)).await.unwrap();
    assert!(
        !raw_item(&client, &table, &capped).await.contains_key("ttl"),
        "a limit override must not be garbage-collected"
    );
    store.set_limit(&capped, None).await.unwrap();
    let gone = client
        .get_item()
        .table_name(&table)
        .key("pk", AttributeValue::S(capped.to_string()))
        .key("sk", AttributeValue::S("#account".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    assert!(
        gone.item.is_none(),
        "an account with nothing left is deleted"
    );

    // TTL is only garbage collection: an item past its ttl that DynamoDB has
    // not deleted yet still reads as expired.
    clock.advance(Duration::from_secs(2_000));
    assert_eq!(
        store
            .heartbeat(&u, &StreamId::parse("a").unwrap())
            .await
            .unwrap(),
        streamguard::domain::HeartbeatDecision::Ended(streamguard::domain::EndReason::Expired),
        "a lease item past its expires_at is never renewed"
    );
    assert!(store.view(&u).await.unwrap().live.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_is_idempotent() {
    let (config, table) = new_table().await;
    DynamoDbStore::create_table(&config, &table)
        .await
        .expect("a second init changes nothing and succeeds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_foreign_table_is_refused_with_the_reason() {
    let config = dynamodb_config().await;
    let p = policy(3, OnLimit::Reject);
    let missing = unique_table();
    let error = DynamoDbStore::open(&config, &missing, p.clone(), Arc::new(start_clock()))
        .await
        .err()
        .expect("a missing table is refused");
    assert!(matches!(error, StoreError::Config(_)));
    assert!(error.to_string().contains("does not exist"), "{error}");
    assert!(error.to_string().contains("streamguard init"), "{error}");

    let foreign = unique_table();
    Client::new(&config)
        .create_table()
        .table_name(&foreign)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::N)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let error = DynamoDbStore::open(&config, &foreign, p.clone(), Arc::new(start_clock()))
        .await
        .err()
        .expect("a table with another key is refused");
    let message = error.to_string();
    assert!(message.contains("partition key `id` (N)"), "{message}");
    assert!(message.contains("`pk`"), "{message}");

    // The table of earlier versions: one item per account, no sort key.
    let single_item = unique_table();
    Client::new(&config)
        .create_table()
        .table_name(&single_item)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let error = DynamoDbStore::open(&config, &single_item, p.clone(), Arc::new(start_clock()))
        .await
        .err()
        .expect("a single-item table is refused");
    let message = error.to_string();
    assert!(message.contains("single-item layout"), "{message}");
    assert!(
        message.contains("streamguard init --store dynamodb://NEW_TABLE"),
        "{message}"
    );
}

/// Counts the DynamoDB operations a client sends, by their `X-Amz-Target`.
#[derive(Clone, Debug, Default)]
struct Requests(Arc<std::sync::Mutex<Vec<String>>>);

impl Requests {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

impl aws_sdk_dynamodb::config::Intercept for Requests {
    fn name(&self) -> &'static str {
        "count requests"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_sdk_dynamodb::config::RuntimeComponents,
        _cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let target = context
            .request()
            .headers()
            .get("x-amz-target")
            .unwrap_or("?");
        let operation = target.rsplit('.').next().unwrap_or(target).to_owned();
        self.0.lock().unwrap().push(operation);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_is_one_conditional_update_and_no_read() {
    let (config, table) = new_table().await;
    let requests = Requests::default();
    let client = Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&config)
            .interceptor(requests.clone())
            .build(),
    );
    let clock = start_clock();
    let store = DynamoDbStore::open_with_client(
        client,
        &table,
        policy(1000, OnLimit::Reject),
        Arc::new(clock.clone()),
    )
    .await
    .unwrap();
    let u = user("one-request");
    for i in 0..20 {
        store.start(&u, req(&format!("s{i}"))).await.unwrap();
    }
    requests.take();
    let s7 = StreamId::parse("s7").unwrap();
    for _ in 0..5 {
        clock.advance(Duration::from_secs(30));
        assert!(matches!(
            store.heartbeat(&u, &s7).await.unwrap(),
            streamguard::domain::HeartbeatDecision::Renewed(_)
        ));
        assert_eq!(requests.take(), ["UpdateItem"], "one write, no read");
    }
    // A start is one read and one transaction.
    store.start(&u, req("new")).await.unwrap();
    assert_eq!(requests.take(), ["Query", "TransactWriteItems"]);
    // Only a heartbeat that is not renewed reads, to say why.
    store
        .end(&u, &s7, streamguard::domain::EndReason::Stopped)
        .await
        .unwrap();
    requests.take();
    assert_eq!(
        store.heartbeat(&u, &s7).await.unwrap(),
        streamguard::domain::HeartbeatDecision::Ended(streamguard::domain::EndReason::Stopped)
    );
    assert_eq!(requests.take(), ["UpdateItem", "Query"]);
}

/// 100 concurrent starts on one account, each bounded by the default
/// `--store-timeout` as the HTTP layer bounds it: (granted, refused, timed out).
async fn hot_account(instances: &[Arc<dyn StreamStore>], u: &UserId) -> (usize, usize, usize) {
    let _alone = crate::harness::heavy_or_timed().await;
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let store = instances[i % instances.len()].clone();
            let u = u.clone();
            tokio::spawn(async move {
                tokio::time::timeout(
                    Duration::from_millis(250),
                    store.start(&u, req(&format!("s{i}"))),
                )
                .await
            })
        })
        .collect();
    let (mut granted, mut refused, mut timed_out) = (0, 0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(Ok(StartDecision::Granted(_))) => granted += 1,
            Ok(Ok(StartDecision::LimitReached { .. })) => refused += 1,
            Ok(Ok(other)) => panic!("{other:?}"),
            Ok(Err(e)) => panic!("the store failed: {e}"),
            Err(_) => timed_out += 1,
        }
    }
    (granted, refused, timed_out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hot_account_on_one_instance_gets_answers_not_timeouts() {
    let (config, table) = new_table().await;
    let store: Arc<dyn StreamStore> = DynamoDbStore::open(
        &config,
        &table,
        policy(3, OnLimit::Reject),
        Arc::new(start_clock()),
    )
    .await
    .unwrap();
    let (granted, refused, timed_out) = hot_account(&[store], &user("hot-one")).await;
    assert_eq!((granted, refused, timed_out), (3, 97, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hot_account_on_two_instances_grants_exactly_the_limit() {
    let (config, table) = new_table().await;
    let clock = start_clock();
    let p = policy(3, OnLimit::Reject);
    let a: Arc<dyn StreamStore> =
        DynamoDbStore::open(&config, &table, p.clone(), Arc::new(clock.clone()))
            .await
            .unwrap();
    let b: Arc<dyn StreamStore> =
        DynamoDbStore::open(&dynamodb_config().await, &table, p, Arc::new(clock.clone()))
            .await
            .unwrap();
    let u = user("hot-two");
    let (granted, refused, timed_out) = hot_account(&[a.clone(), b], &u).await;
    println!(
        "two instances, 100 starts: {granted} granted, {refused} refused, {timed_out} timed out (503)"
    );
    assert_eq!(granted, 3, "{refused} refused, {timed_out} timed out");
    assert_eq!(a.view(&u).await.unwrap().live.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn decisions_larger_than_one_transaction_commit_in_parts() {
    let _alone = crate::harness::heavy_or_timed().await;
    let (config, table) = new_table().await;
    let clock = start_clock();
    let store = DynamoDbStore::open(
        &config,
        &table,
        policy(1000, OnLimit::Reject),
        Arc::new(clock.clone()),
    )
    .await
    .unwrap();
    let client = Client::new(&config);
    let u = user("parts");
    let start_many = |n: usize, tag: &'static str| {
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let (store, u) = (store.clone(), u.clone());
                tokio::spawn(
                    async move { store.start(&u, req(&format!("{tag}{i}"))).await.unwrap() },
                )
            })
            .collect();
        async move {
            for task in tasks {
                assert!(matches!(task.await.unwrap(), StartDecision::Granted(_)));
            }
        }
    };

    // Lowering the limit by 240 revokes 240 lease items: three transactions.
    start_many(250, "s").await;
    let oldest_first: Vec<StreamId> = store
        .view(&u)
        .await
        .unwrap()
        .live
        .into_iter()
        .map(|l| l.id)
        .collect();
    let revoked = store
        .set_limit(&u, Some(streamguard::domain::Limit::new(10).unwrap()))
        .await
        .unwrap();
    let newest_first: Vec<StreamId> = oldest_first[10..].iter().rev().cloned().collect();
    assert_eq!(
        revoked, newest_first,
        "the answer names every revoked stream; the newest give way under reject"
    );
    assert_eq!(store.view(&u).await.unwrap().live.len(), 10);
    assert_eq!(partition(&client, &table, &u).await.len(), 11);
    // Revoked streams never renew; the 100 most recent tombstones say why.
    for id in newest_first.iter().step_by(24) {
        let decision = store.heartbeat(&u, id).await.unwrap();
        assert!(
            matches!(
                decision,
                streamguard::domain::HeartbeatDecision::Ended(
                    streamguard::domain::EndReason::Revoked
                ) | streamguard::domain::HeartbeatDecision::Unknown
            ),
            "{id}: {decision:?}"
        );
    }

    // 150 leases that ran out unseen are cleaned up by the next start, in parts.
    store.set_limit(&u, None).await.unwrap();
    start_many(140, "t").await;
    clock.advance(Duration::from_secs(91));
    assert!(matches!(
        store.start(&u, req("fresh")).await.unwrap(),
        StartDecision::Granted(_)
    ));
    assert_eq!(
        partition(&client, &table, &u).await.len(),
        2,
        "the account and the fresh lease"
    );
}
