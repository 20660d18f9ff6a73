//! Black-box tests of the HTTP API on the real router.

mod admin;
mod bad_input;
mod console;
mod grants;
mod identity;
mod ops;
mod server;
mod store_failure;
mod streams;
mod support;
mod tokens;
