//! One account as one DynamoDB item:
//!
//! | attribute | type | holds |
//! |---|---|---|
//! | `pk` | S | the account id (partition key) |
//! | `state` | S | `domain::Account` as JSON |
//! | `version` | N | bumped by every write; each write is conditioned on it |
//! | `ttl` | N | epoch seconds after which nothing in the item matters; DynamoDB TTL deletes it some time later |

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::domain::{Account, Policy};
use crate::store::StoreError;

pub const PK: &str = "pk";
pub const STATE: &str = "state";
pub const VERSION: &str = "version";
pub const TTL: &str = "ttl";

pub type Item = HashMap<String, AttributeValue>;

/// An account as read, with the version a write must find unchanged.
#[derive(Debug, PartialEq, Eq)]
pub struct Stored {
    pub account: Account,
    pub version: u64,
}

pub fn key(user: &str) -> AttributeValue {
    AttributeValue::S(user.to_owned())
}

pub fn number(n: u64) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

/// Reads an item written by [`encode`].
pub fn decode(item: &Item) -> Result<Stored, StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt { detail };
    let state = match item.get(STATE) {
        Some(AttributeValue::S(json)) => json,
        _ => return Err(corrupt(format!("item has no string attribute `{STATE}`"))),
    };
    let account = serde_json::from_str(state)
        .map_err(|e| corrupt(format!("attribute `{STATE}` is not an account: {e}")))?;
    let version = match item.get(VERSION) {
        Some(AttributeValue::N(n)) => n
            .parse()
            .map_err(|_| corrupt(format!("attribute `{VERSION}` is not a whole number: {n}")))?,
        _ => return Err(corrupt(format!("item has no number attribute `{VERSION}`"))),
    };
    Ok(Stored { account, version })
}

/// The item holding `account` at `version`.
pub fn encode(key: AttributeValue, account: &Account, version: u64, policy: &Policy) -> Item {
    let state = serde_json::to_string(account).expect("an account always serializes");
    let mut item = Item::from([
        (PK.to_owned(), key),
        (STATE.to_owned(), AttributeValue::S(state)),
        (VERSION.to_owned(), number(version)),
    ]);
    if let Some(ttl) = expires_at_epoch_seconds(account, policy) {
        item.insert(TTL.to_owned(), AttributeValue::N(ttl.to_string()));
    }
    item
}

/// When DynamoDB may delete the item: the end of its last lease or
/// tombstone, rounded up to a whole second. Never for an account with a
/// limit override, which must outlive its streams.
fn expires_at_epoch_seconds(account: &Account, policy: &Policy) -> Option<i64> {
    if account.limit.is_some() {
        return None;
    }
    let until = account.retain_until(policy)?.as_millis();
    Some(until.div_euclid(1000) + i64::from(until.rem_euclid(1000) != 0))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::{Limit, StartRequest, StreamId, Timestamp};

    fn account_with_a_stream(now: Timestamp, policy: &Policy) -> Account {
        let mut account = Account::default();
        account.start(
            StartRequest::new(StreamId::parse("tv").unwrap()),
            now,
            policy,
        );
        account
    }

    #[test]
    fn an_account_round_trips_with_its_version() {
        let policy = Policy::default();
        let account = account_with_a_stream(Timestamp::from_millis(1_000), &policy);
        let item = encode(key("alice"), &account, 7, &policy);
        assert_eq!(item[PK], AttributeValue::S("alice".into()));
        assert_eq!(
            decode(&item).unwrap(),
            Stored {
                account,
                version: 7
            }
        );
    }

    #[test]
    fn ttl_is_the_end_of_the_last_tombstone_rounded_up() {
        let policy = Policy::default();
        let account = account_with_a_stream(Timestamp::from_millis(1_001), &policy);
        // lease ends at 1.001 s + 90 s; its tombstone is kept 900 s more.
        let item = encode(key("alice"), &account, 1, &policy);
        assert_eq!(item[TTL], AttributeValue::N("992".into()));
    }

    #[test]
    fn a_limit_override_is_never_expired() {
        let policy = Policy::default();
        let mut account = account_with_a_stream(Timestamp::from_millis(0), &policy);
        account.set_limit(
            Some(Limit::new(5).unwrap()),
            Timestamp::from_millis(0),
            &policy,
        );
        assert!(!encode(key("alice"), &account, 1, &policy).contains_key(TTL));
        assert_eq!(
            account.retain_until(&policy),
            Some(Timestamp::from_millis(0) + Duration::from_secs(990))
        );
    }

    #[test]
    fn unreadable_items_are_corrupt_not_empty() {
        let mut item = encode(key("alice"), &Account::default(), 1, &Policy::default());
        item.insert(STATE.into(), AttributeValue::S("{not json".into()));
        assert!(matches!(decode(&item), Err(StoreError::Corrupt { .. })));
        item.remove(STATE);
        assert!(matches!(decode(&item), Err(StoreError::Corrupt { .. })));
    }
}
