//! End-to-end tests: the flotilla binary, real Envoy 1.40 processes, real backends.
#![allow(unreachable_pub)]

#[path = "../support/mod.rs"]
mod support;

mod golden;
mod validate;
