//! The `TransactWriteItems` that commits a [`Diff`]: the account item put
//! (or deleted once idle) on the condition that its version is the one
//! read, ended lease items deleted and granted ones put, each of those
//! conditioned on the `expires_at` read when it replaces an expired lease.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};

use super::diff::Diff;
use super::item::{self, ACCOUNT_SK, EXPIRES_AT, Item, PK, VERSION};
use crate::domain::{Policy, UserId};

/// Whether a transaction went through.
pub(super) enum Commit {
    Done,
    /// Someone else changed the account (or renewed a lease this
    /// transaction ends as expired) first.
    Conflict,
}

/// The writes of one transaction committing `diff` to `table`, if the
/// account item is still at `version` (`None`: there was none).
pub(super) fn transaction(
    table: &str,
    user: &UserId,
    version: Option<u64>,
    diff: &Diff,
    policy: &Policy,
) -> Vec<TransactWriteItem> {
    let user = user.as_str();
    let mut writes = Vec::with_capacity(diff.items());
    let version_condition = |names: &mut HashMap<String, String>, values: &mut Item| -> String {
        match version {
            Some(v) => {
                names.insert("#v".into(), VERSION.into());
                values.insert(":v".into(), item::number(v));
                "#v = :v".into()
            }
            None => {
                names.insert("#pk".into(), PK.into());
                "attribute_not_exists(#pk)".into()
            }
        }
    };
    let (mut names, mut values) = (HashMap::new(), Item::new());
    let condition = version_condition(&mut names, &mut values);
    if diff.account.is_idle() {
        if version.is_some() {
            let delete = Delete::builder()
                .table_name(table)
                .set_key(Some(item::key(user, ACCOUNT_SK)))
                .condition_expression(condition)
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values((!values.is_empty()).then_some(values))
                .build()
                .expect("table and key are set");
            writes.push(TransactWriteItem::builder().delete(delete).build());
        }
    } else {
        let next = version.map_or(1, |v| v + 1);
        let put = Put::builder()
            .table_name(table)
            .set_item(Some(item::encode_account(
                user,
                &diff.account,
                next,
                policy,
            )))
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values((!values.is_empty()).then_some(values))
            .build()
            .expect("table and item are set");
        writes.push(TransactWriteItem::builder().put(put).build());
    }
    for end in &diff.ended {
        let mut delete = Delete::builder()
            .table_name(table)
            .set_key(Some(item::key(user, &item::lease_sk(end.id.as_str()))));
        if let Some(read) = end.expired_at {
            // Ended as expired on what we read: only if no heartbeat
            // renewed it since.
            delete = delete
                .condition_expression("#e = :e")
                .expression_attribute_names("#e", EXPIRES_AT)
                .expression_attribute_values(":e", item::number(read.as_millis()));
        }
        let delete = delete.build().expect("table and key are set");
        writes.push(TransactWriteItem::builder().delete(delete).build());
    }
    for (lease, replaces_expired) in &diff.added {
        let mut put = Put::builder()
            .table_name(table)
            .set_item(Some(item::encode_lease(user, lease, policy)));
        if let Some(read) = replaces_expired {
            put = put
                .condition_expression("#e = :e")
                .expression_attribute_names("#e", EXPIRES_AT)
                .expression_attribute_values(":e", item::number(read.as_millis()));
        }
        let put = put.build().expect("table and item are set");
        writes.push(TransactWriteItem::builder().put(put).build());
    }
    writes
}

/// The transaction was cancelled because a condition no longer held or a
/// concurrent transaction touched its items: decide again on a fresh read.
pub(super) fn lost_a_race(e: &TransactWriteItemsError) -> bool {
    match e {
        TransactWriteItemsError::TransactionCanceledException(cancelled) => {
            cancelled.cancellation_reasons().iter().any(|r| {
                matches!(
                    r.code(),
                    Some("ConditionalCheckFailed" | "TransactionConflict")
                )
            })
        }
        _ => false,
    }
}
