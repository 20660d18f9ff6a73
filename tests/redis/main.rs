//! What only the Redis store promises: the Lua scripts mirror the Rust
//! rules, one round trip per decision, server time, several instances on
//! one Redis, recovery when Redis comes back, and a warning (or, strict, a
//! refusal) for a Redis that may forget keys.
#![cfg(feature = "redis")]

mod durability;
mod failover;
mod instances;
mod mirror;
mod scripts;
#[path = "../common/server.rs"]
mod server;
mod support;
#[allow(dead_code)]
#[path = "../common/walk.rs"]
mod walk;
