//! End-to-end tests: the flotilla binary, real Envoy 1.40 processes, real backends.
#![allow(unreachable_pub)]

#[path = "../support/mod.rs"]
mod support;

mod affinity;
mod balancing;
mod golden;
mod live;
mod loadgen;
mod nack;
mod protocol;
mod quickstart;
mod restart;
mod traffic;
mod validate;
