//! What only the Redis store promises: the Lua scripts mirror the Rust
//! rules, one round trip per decision, server time, several instances on
//! one Redis, and recovery when Redis comes back.
#![cfg(feature = "redis")]

mod failover;
mod instances;
mod mirror;
mod scripts;
#[path = "../common/server.rs"]
mod server;
mod support;
