//! A Redis that may forget keys breaks the limit silently: an evicted
//! account (`maxmemory-policy` other than `noeviction`) or one lost in a
//! restart without an append-only file comes back empty, and its streams
//! can be granted again. At connect the store asks the server how it is
//! configured; by default it logs a warning naming the fix, and with
//! `--redis-strict` it refuses to start instead. Where `CONFIG` is
//! disabled (managed Redis), it says that it could not check; strict mode
//! then refuses too, since it cannot prove anything.
//!
//! On a cluster the node that answers `CONFIG GET` is checked: configure
//! every node alike.

use super::super::StoreError;
use super::connection::Connection;

/// What the server says about keeping what it is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Durability {
    /// `noeviction` and `appendonly yes`.
    Safe,
    /// What is wrong, each with its fix.
    Unsafe(Vec<String>),
    /// `CONFIG GET` failed (disabled or not permitted): why.
    Unchecked(String),
}

/// Asks the server and logs, or refuses when `strict`.
pub(super) async fn check(connection: &Connection, strict: bool) -> Result<Durability, StoreError> {
    let found = inspect(connection).await;
    match (&found, strict) {
        (Durability::Safe, _) => {}
        (Durability::Unsafe(problems), false) => {
            for problem in problems {
                tracing::warn!("Redis may forget streams, and the limit with them: {problem}");
            }
        }
        (Durability::Unsafe(problems), true) => {
            return Err(StoreError::Config(format!(
                "--redis-strict: Redis may forget streams: {}",
                problems.join("; ")
            )));
        }
        (Durability::Unchecked(why), false) => {
            tracing::warn!(
                "could not check that Redis keeps every key (maxmemory-policy noeviction, \
                 appendonly yes): {why}"
            );
        }
        (Durability::Unchecked(why), true) => {
            return Err(StoreError::Config(format!(
                "--redis-strict: could not check that Redis keeps every key \
                 (maxmemory-policy noeviction, appendonly yes), CONFIG GET failed: {why}; \
                 check the server's settings yourself and start without --redis-strict"
            )));
        }
    }
    Ok(found)
}

async fn inspect(connection: &Connection) -> Durability {
    let mut problems = Vec::new();
    match config_get(connection, "maxmemory-policy").await {
        Ok(policy) if policy == "noeviction" => {}
        Ok(policy) => problems.push(format!(
            "maxmemory-policy is {policy}, so Redis evicts keys when memory is full; \
             set `maxmemory-policy noeviction` (writes then fail as 503s instead)"
        )),
        Err(why) => return Durability::Unchecked(why),
    }
    match config_get(connection, "appendonly").await {
        Ok(aof) if aof == "yes" => {}
        Ok(aof) => problems.push(format!(
            "appendonly is {aof}, so a restart loses the writes since the last snapshot; \
             set `appendonly yes`"
        )),
        Err(why) => return Durability::Unchecked(why),
    }
    if problems.is_empty() {
        Durability::Safe
    } else {
        Durability::Unsafe(problems)
    }
}

async fn config_get(connection: &Connection, name: &str) -> Result<String, String> {
    let mut get = redis::cmd("CONFIG");
    get.arg("GET").arg(name);
    let pairs: Vec<String> = connection.query(&get).await.map_err(|e| e.to_string())?;
    match pairs.as_slice() {
        [_, value] => Ok(value.clone()),
        _ => Err(format!("CONFIG GET {name} answered {pairs:?}")),
    }
}
