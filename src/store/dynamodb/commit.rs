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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use aws_sdk_dynamodb::types::AttributeValue;

    use super::*;
    use crate::domain::{Account, EndReason, StartRequest, StreamId, Timestamp};

    const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);

    fn user() -> UserId {
        UserId::parse("u").unwrap()
    }

    fn start(account: &mut Account, id: &str, now: Timestamp) {
        let req = StartRequest::new(StreamId::parse(id).unwrap());
        account.start(req, now, &Policy::default());
    }

    /// Each write as (kind, sort key, condition, the `:v`/`:e` value).
    fn shape(writes: &[TransactWriteItem]) -> Vec<(&str, String, Option<&str>, Option<String>)> {
        let value = |values: Option<&HashMap<String, AttributeValue>>| {
            let values = values?;
            let n = values.get(":v").or(values.get(":e"))?;
            Some(n.as_n().unwrap().clone())
        };
        let sk = |item: &Item| item[item::SK].as_s().unwrap().clone();
        writes
            .iter()
            .map(|w| match (w.put(), w.delete()) {
                (Some(p), _) => (
                    "put",
                    sk(p.item()),
                    p.condition_expression(),
                    value(p.expression_attribute_values()),
                ),
                (_, Some(d)) => (
                    "delete",
                    sk(d.key()),
                    d.condition_expression(),
                    value(d.expression_attribute_values()),
                ),
                _ => panic!("only puts and deletes"),
            })
            .collect()
    }

    #[test]
    fn a_first_grant_creates_the_account_item_if_there_is_none() {
        let before = Account::default();
        let mut after = before.clone();
        start(&mut after, "a", T0);
        let diff = Diff::between(&before, &after, T0);
        let writes = transaction("t", &user(), None, &diff, &Policy::default());
        assert_eq!(
            shape(&writes),
            [
                (
                    "put",
                    "#account".into(),
                    Some("attribute_not_exists(#pk)"),
                    None
                ),
                ("put", "lease#a".into(), None, None),
            ]
        );
    }

    #[test]
    fn an_account_left_idle_is_deleted_at_the_version_read() {
        let policy = Policy::default();
        let mut before = Account::default();
        start(&mut before, "a", T0);
        let mut after = before.clone();
        after.end(
            &StreamId::parse("a").unwrap(),
            EndReason::Stopped,
            T0,
            &policy,
        );
        // Past the tombstone's retention, nothing is left to keep.
        let later = T0 + policy.tombstone_ttl() + Duration::from_secs(1);
        after.expire(later, &policy);
        assert!(after.is_idle());
        let diff = Diff::between(&before, &after, T0);
        let writes = transaction("t", &user(), Some(3), &diff, &policy);
        assert_eq!(
            shape(&writes),
            [
                (
                    "delete",
                    "#account".into(),
                    Some("#v = :v"),
                    Some("3".into())
                ),
                ("delete", "lease#a".into(), None, None),
            ]
        );
        let none = transaction("t", &user(), None, &diff, &policy);
        assert_eq!(shape(&none), [("delete", "lease#a".into(), None, None)]);
    }

    #[test]
    fn an_expired_lease_is_deleted_or_replaced_only_at_the_deadline_read() {
        let policy = Policy::default();
        let mut before = Account::default();
        start(&mut before, "a", T0);
        start(&mut before, "b", T0);
        let deadline = before.live[0].expires_at.as_millis().to_string();
        let now = T0 + Duration::from_secs(100);
        let mut after = before.clone();
        start(&mut after, "a", now);
        let diff = Diff::between(&before, &after, now);
        let writes = transaction("t", &user(), Some(1), &diff, &policy);
        assert_eq!(
            shape(&writes),
            [
                ("put", "#account".into(), Some("#v = :v"), Some("1".into())),
                (
                    "delete",
                    "lease#b".into(),
                    Some("#e = :e"),
                    Some(deadline.clone())
                ),
                ("put", "lease#a".into(), Some("#e = :e"), Some(deadline)),
            ]
        );
    }
}
