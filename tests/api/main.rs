//! Black-box tests of the HTTP API on the real router.

mod admin;
mod bad_input;
mod binary;
mod console;
mod cors;
mod edge;
mod grants;
mod hardening;
mod identity;
mod ops;
mod plans;
mod secrets;
mod server;
mod state_machine;
mod store_failure;
mod streams;
mod support;
mod tokens;
