//! The table itself: `streamguard init` creates it (on-demand billing,
//! partition key `pk` and sort key `sk`, TTL on `ttl`), and every start
//! checks that its key schema is the one the store needs, saying what is
//! wrong when it is not; a table of the single-item layout (no sort key)
//! is refused with the way to move to a new one. `init` also says whether
//! the table is single-region or a global table, and in which mode ([`mode`]).

mod mode;

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    TableDescription, TimeToLiveSpecification, TimeToLiveStatus,
};

use super::item::{PK, SK, TTL};
use crate::store::StoreError;

/// How long `init` waits for a new table to become active.
const CREATE_TIMEOUT: Duration = Duration::from_secs(120);

/// Creates the table and enables TTL unless they already are; idempotent.
pub async fn create(client: &Client, table: &str) -> Result<(), StoreError> {
    let created = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .set_attribute_definitions(Some(
            [PK, SK]
                .map(|name| {
                    AttributeDefinition::builder()
                        .attribute_name(name)
                        .attribute_type(ScalarAttributeType::S)
                        .build()
                        .expect("name and type are set")
                })
                .to_vec(),
        ))
        .set_key_schema(Some(
            [(PK, KeyType::Hash), (SK, KeyType::Range)]
                .map(|(name, key)| {
                    KeySchemaElement::builder()
                        .attribute_name(name)
                        .key_type(key)
                        .build()
                        .expect("name and key type are set")
                })
                .to_vec(),
        ))
        .send()
        .await;
    match created {
        Ok(_) => tracing::info!(table, "created the DynamoDB table"),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) =>
        {
            tracing::info!(table, "the DynamoDB table already exists");
        }
        Err(e) => return Err(StoreError::unavailable("creating the DynamoDB table", e)),
    }
    client
        .wait_until_table_exists()
        .table_name(table)
        .wait(CREATE_TIMEOUT)
        .await
        .map_err(|e| StoreError::unavailable("waiting for the DynamoDB table", e))?;
    check(client, table).await?;
    enable_ttl(client, table).await?;
    mode::report(client, table).await;
    Ok(())
}

/// Fails unless the table exists with the key schema the store needs.
pub async fn check(client: &Client, table: &str) -> Result<(), StoreError> {
    let described = client.describe_table().table_name(table).send().await;
    let description = match described {
        Ok(out) => out
            .table
            .unwrap_or_else(|| TableDescription::builder().build()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            return Err(StoreError::Config(format!(
                "DynamoDB table {table:?} does not exist: create it with \
                 `streamguard init --store dynamodb://{table}` (same region and endpoint)"
            )));
        }
        Err(e) => {
            return Err(StoreError::Config(format!(
                "cannot describe DynamoDB table {table:?} (check credentials, region and \
                 the dynamodb:DescribeTable permission): {}",
                DisplayErrorContext(e)
            )));
        }
    };
    match key_schema_problem(&description) {
        None => Ok(()),
        Some(found) if found == format!("[partition key `{PK}` (S)]") => {
            Err(StoreError::Config(format!(
                "DynamoDB table {table:?} has the single-item layout of earlier streamguard \
                 versions (partition key `{PK}` only); this version keeps one item per lease \
                 and needs the sort key `{SK}` too. Create a new table with \
                 `streamguard init --store dynamodb://NEW_TABLE`, set limit overrides again \
                 through the admin API, and point the service at it (docs/stores.md: \"Moving \
                 from the single-item table\")"
            )))
        }
        Some(found) => Err(StoreError::Config(format!(
            "DynamoDB table {table:?} has the key schema {found}, but streamguard needs \
             the partition key `{PK}` and the sort key `{SK}`, both strings (S); \
             create a new table with `streamguard init --store dynamodb://NEW_TABLE`"
        ))),
    }
}

/// Describes the key schema if it is not exactly `pk` (S) as partition
/// key and `sk` (S) as sort key.
fn key_schema_problem(table: &TableDescription) -> Option<String> {
    let keys = table.key_schema();
    let type_of = |name: &str| {
        table
            .attribute_definitions()
            .iter()
            .find(|a| a.attribute_name() == name)
            .map_or("?", |a| a.attribute_type().as_str())
    };
    let is_expected = matches!(keys, [a, b] if a.attribute_name() == PK
        && *a.key_type() == KeyType::Hash
        && type_of(PK) == ScalarAttributeType::S.as_str()
        && b.attribute_name() == SK
        && *b.key_type() == KeyType::Range
        && type_of(SK) == ScalarAttributeType::S.as_str());
    if is_expected {
        return None;
    }
    let found: Vec<String> = keys
        .iter()
        .map(|k| {
            let role = match k.key_type() {
                KeyType::Hash => "partition key",
                _ => "sort key",
            };
            format!(
                "{role} `{}` ({})",
                k.attribute_name(),
                type_of(k.attribute_name())
            )
        })
        .collect();
    Some(format!("[{}]", found.join(", ")))
}

async fn enable_ttl(client: &Client, table: &str) -> Result<(), StoreError> {
    let current = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|e| StoreError::unavailable("reading the table's TTL setting", e))?;
    let description = current.time_to_live_description();
    let status = description.and_then(|d| d.time_to_live_status());
    let attribute = description.and_then(|d| d.attribute_name());
    match status {
        Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling) if attribute == Some(TTL) => {
            tracing::info!(table, "TTL is already enabled on `ttl`");
            Ok(())
        }
        Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling) => {
            Err(StoreError::Config(format!(
                "DynamoDB table {table:?} has TTL enabled on {attribute:?}, but streamguard \
                 writes expiry to `{TTL}`; disable that TTL or use another table"
            )))
        }
        _ => {
            client
                .update_time_to_live()
                .table_name(table)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .enabled(true)
                        .attribute_name(TTL)
                        .build()
                        .expect("enabled and attribute are set"),
                )
                .send()
                .await
                .map_err(|e| StoreError::unavailable("enabling TTL on the table", e))?;
            tracing::info!(table, "enabled TTL on `ttl`");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(keys: &[(&str, KeyType, ScalarAttributeType)]) -> TableDescription {
        let mut t = TableDescription::builder();
        for (name, key, kind) in keys {
            t = t
                .key_schema(
                    KeySchemaElement::builder()
                        .attribute_name(*name)
                        .key_type(key.clone())
                        .build()
                        .unwrap(),
                )
                .attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name(*name)
                        .attribute_type(kind.clone())
                        .build()
                        .unwrap(),
                );
        }
        t.build()
    }

    #[test]
    fn accepts_only_pk_and_sk_as_string_keys() {
        use ScalarAttributeType::{N, S};
        assert_eq!(
            key_schema_problem(&table(&[
                ("pk", KeyType::Hash, S),
                ("sk", KeyType::Range, S)
            ])),
            None
        );
        assert_eq!(
            key_schema_problem(&table(&[("pk", KeyType::Hash, S)])).unwrap(),
            "[partition key `pk` (S)]"
        );
        assert_eq!(
            key_schema_problem(&table(&[("id", KeyType::Hash, S)])).unwrap(),
            "[partition key `id` (S)]"
        );
        assert_eq!(
            key_schema_problem(&table(&[
                ("pk", KeyType::Hash, S),
                ("sk", KeyType::Range, N)
            ]))
            .unwrap(),
            "[partition key `pk` (S), sort key `sk` (N)]"
        );
    }
}
