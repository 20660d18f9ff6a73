//! One account as items of one partition (`pk` = the account id): the
//! `#account` item and one `lease#<stream id>` item per live lease, laid
//! out as DESIGN.md describes ("dynamodb", data model); here they are
//! encoded and decoded.
//!
//! A heartbeat updates its lease item alone. Everything else changes the
//! account item (its version is what transactions are conditioned on) and
//! the lease items it ends or adds, in one transaction. `ttl` (epoch
//! seconds) only lets DynamoDB delete what no answer depends on any more.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::domain::{Account, Lease, Limit, Policy, StreamId, Timestamp, Tombstone};
use crate::store::StoreError;

pub const PK: &str = "pk";
pub const SK: &str = "sk";
pub const ACCOUNT_SK: &str = "#account";
pub const LEASE_PREFIX: &str = "lease#";
pub const VERSION: &str = "version";
pub const TTL: &str = "ttl";
pub const EXPIRES_AT: &str = "expires_at";
const LIMIT: &str = "limit";
const PLAN: &str = "plan";
const NEXT_SEQ: &str = "next_seq";
const ENDED: &str = "ended";
const STARTED_AT: &str = "started_at";
const SEQ: &str = "seq";
const DEVICE_ID: &str = "device_id";
const CONTENT_ID: &str = "content_id";
const TAGS: &str = "tags";
pub const SECRET: &str = "secret";
const PLAN_NAMES: &str = "plan_names";

pub type Item = HashMap<String, AttributeValue>;

/// An account as read: the rules' state, the version a transaction must
/// find unchanged, and each lease item's `expires_at` as read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    pub account: Account,
    /// `None`: no account item yet.
    pub version: Option<u64>,
}

pub fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

pub fn number(n: impl ToString) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

pub fn lease_sk(id: &str) -> String {
    format!("{LEASE_PREFIX}{id}")
}

/// The key of an account's item or of one of its lease items.
pub fn key(user: &str, sk: &str) -> Item {
    Item::from([(PK.to_owned(), s(user)), (SK.to_owned(), s(sk))])
}

fn corrupt(detail: String) -> StoreError {
    StoreError::Corrupt { detail }
}

fn get_number<T: std::str::FromStr>(item: &Item, name: &str) -> Result<Option<T>, StoreError> {
    match item.get(name) {
        None => Ok(None),
        Some(AttributeValue::N(n)) => n
            .parse()
            .map(Some)
            .map_err(|_| corrupt(format!("attribute `{name}` is not a whole number: {n}"))),
        Some(other) => Err(corrupt(format!(
            "attribute `{name}` is {other:?}, not a number"
        ))),
    }
}

fn need_number<T: std::str::FromStr>(item: &Item, name: &str) -> Result<T, StoreError> {
    get_number(item, name)?.ok_or_else(|| corrupt(format!("item has no number `{name}`")))
}

fn get_string(item: &Item, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    }
}

fn limit(n: Option<u32>) -> Result<Option<Limit>, StoreError> {
    n.map(|n| Limit::new(n).map_err(|_| corrupt(format!("limit {n} out of range"))))
        .transpose()
}

/// Reads the items of one partition (any order) into the rules' state.
pub fn decode(items: &[Item]) -> Result<Stored, StoreError> {
    let mut stored = Stored::default();
    for item in items {
        let sk = get_string(item, SK).unwrap_or_default();
        if sk == ACCOUNT_SK {
            stored.version = Some(need_number(item, VERSION)?);
            let account = &mut stored.account;
            account.limit = limit(get_number(item, LIMIT)?)?;
            account.limit_claim = limit(get_number(item, PLAN)?)?;
            if let Some(json) = get_string(item, PLAN_NAMES) {
                account.plan_names = Some(serde_json::from_str(&json).map_err(|e| {
                    corrupt(format!("attribute `{PLAN_NAMES}` is not plan names: {e}"))
                })?);
            }
            account.next_seq = get_number(item, NEXT_SEQ)?.unwrap_or(0);
            if let Some(json) = get_string(item, ENDED) {
                account.ended = serde_json::from_str::<Vec<Tombstone>>(&json)
                    .map_err(|e| corrupt(format!("attribute `{ENDED}` is not tombstones: {e}")))?
                    .into();
            }
        } else if let Some(id) = sk.strip_prefix(LEASE_PREFIX) {
            stored.account.live.push(decode_lease(id, item)?);
        }
    }
    stored.account.live.sort_by_key(|l| l.seq);
    // The account item may have gone by TTL while heartbeats kept leases
    // live; grants still order after them.
    if let Some(last) = stored.account.live.last() {
        stored.account.next_seq = stored.account.next_seq.max(last.seq + 1);
    }
    Ok(stored)
}

pub fn decode_lease(id: &str, item: &Item) -> Result<Lease, StoreError> {
    let parse_id = |what: &str, v: &str| corrupt(format!("{what} {v:?} is not a valid id"));
    Ok(Lease {
        id: StreamId::parse(id).map_err(|_| parse_id("stream", id))?,
        device_id: get_string(item, DEVICE_ID)
            .map(|d| crate::domain::DeviceId::parse(&d).map_err(|_| parse_id("device", &d)))
            .transpose()?,
        content_id: get_string(item, CONTENT_ID)
            .map(|c| crate::domain::ContentId::parse(&c).map_err(|_| parse_id("content", &c)))
            .transpose()?,
        secret: match get_string(item, SECRET) {
            Some(hex) => Some(Box::new(
                crate::domain::SecretHash::from_hex(&hex)
                    .ok_or_else(|| corrupt(format!("attribute `{SECRET}` is not a secret hash")))?,
            )),
            None => None,
        },
        tags: match get_string(item, TAGS) {
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| corrupt(format!("attribute `{TAGS}` is not tags: {e}")))?,
            None => Default::default(),
        },
        started_at: Timestamp::from_millis(need_number(item, STARTED_AT)?),
        expires_at: Timestamp::from_millis(need_number(item, EXPIRES_AT)?),
        seq: need_number(item, SEQ)?,
        pace: Default::default(),
    })
}

/// `at` in epoch seconds, rounded up.
fn epoch_seconds(at: Timestamp) -> i64 {
    let ms = at.as_millis();
    ms.div_euclid(1000) + i64::from(ms.rem_euclid(1000) != 0)
}

/// When a lease ending at `expires_at` stops mattering: its tombstone's end.
pub fn lease_ttl_attribute(expires_at: Timestamp, policy: &Policy) -> AttributeValue {
    number(epoch_seconds(expires_at + policy.tombstone_ttl()))
}

/// The account item at `version` (its leases are items of their own).
pub fn encode_account(user: &str, account: &Account, version: u64, policy: &Policy) -> Item {
    let mut item = key(user, ACCOUNT_SK);
    item.insert(VERSION.to_owned(), number(version));
    item.insert(NEXT_SEQ.to_owned(), number(account.next_seq));
    if let Some(l) = account.limit {
        item.insert(LIMIT.to_owned(), number(l.get()));
    }
    if let Some(p) = account.limit_claim {
        item.insert(PLAN.to_owned(), number(p.get()));
    }
    if let Some(names) = &account.plan_names {
        let json = serde_json::to_string(names).expect("plan names serialize");
        item.insert(PLAN_NAMES.to_owned(), AttributeValue::S(json));
    }
    if !account.ended.is_empty() {
        let ended = serde_json::to_string(&account.ended).expect("tombstones serialize");
        item.insert(ENDED.to_owned(), AttributeValue::S(ended));
    }
    // Until its last tombstone (or the tombstone of its last lease as of
    // now) has gone; with an override, never. If heartbeats keep leases
    // live beyond that, losing the item loses nothing they need: its
    // tombstones are gone by then and `decode` restores the grant order.
    if account.limit.is_none()
        && account.assigned_plan().is_none()
        && let Some(until) = account.retain_until(policy)
    {
        item.insert(TTL.to_owned(), number(epoch_seconds(until)));
    }
    item
}

pub fn encode_lease(user: &str, lease: &Lease, policy: &Policy) -> Item {
    let mut item = key(user, &lease_sk(lease.id.as_str()));
    item.insert(STARTED_AT.to_owned(), number(lease.started_at.as_millis()));
    item.insert(EXPIRES_AT.to_owned(), number(lease.expires_at.as_millis()));
    item.insert(SEQ.to_owned(), number(lease.seq));
    if let Some(d) = &lease.device_id {
        item.insert(DEVICE_ID.to_owned(), s(d.as_str()));
    }
    if let Some(c) = &lease.content_id {
        item.insert(CONTENT_ID.to_owned(), s(c.as_str()));
    }
    if !lease.tags.is_empty() {
        let json = serde_json::to_string(&lease.tags).expect("tags serialize");
        item.insert(TAGS.to_owned(), AttributeValue::S(json));
    }
    if let Some(secret) = &lease.secret {
        item.insert(SECRET.to_owned(), s(&secret.to_hex()));
    }
    item.insert(
        TTL.to_owned(),
        lease_ttl_attribute(lease.expires_at, policy),
    );
    item
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::StartRequest;

    #[test]
    fn an_account_round_trips_through_its_items() {
        let policy = Policy::default();
        let mut account = Account::default();
        let now = Timestamp::from_millis(1_001);
        for id in ["a", "b"] {
            account.start(
                StartRequest::new(StreamId::parse(id).unwrap()),
                now,
                &policy,
            );
        }
        account.end(
            &StreamId::parse("a").unwrap(),
            crate::domain::EndReason::Stopped,
            now,
            &policy,
        );
        account.set_limit(Some(Limit::new(5).unwrap()), now, &policy);
        let mut items = vec![encode_account("alice", &account, 7, &policy)];
        items.extend(
            account
                .live
                .iter()
                .map(|l| encode_lease("alice", l, &policy)),
        );
        items.reverse();
        assert_eq!(
            decode(&items).unwrap(),
            Stored {
                account: account.clone(),
                version: Some(7)
            }
        );
        // lease b ends at 1.001 s + 90 s; its tombstone would be kept 900 s more.
        assert_eq!(items[0][TTL], number(992));
        assert!(!items[1].contains_key(TTL), "an override never expires");
    }

    #[test]
    fn unreadable_items_are_corrupt_not_empty() {
        let policy = Policy::default();
        let mut item = encode_account("alice", &Account::default(), 1, &policy);
        item.insert(ENDED.into(), AttributeValue::S("{not json".into()));
        assert!(matches!(
            decode(&[item.clone()]),
            Err(StoreError::Corrupt { .. })
        ));
        item.remove(ENDED);
        item.remove(VERSION);
        assert!(matches!(decode(&[item]), Err(StoreError::Corrupt { .. })));
    }
}
