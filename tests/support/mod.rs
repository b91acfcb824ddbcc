//! Shared harness for end-to-end tests: real Envoy processes, in-process backends, flotilla.
//!
//! Every server binds port 0 or a port picked free on loopback, every child process is killed
//! on drop, and every wait polls with a deadline.
#![allow(dead_code, unreachable_pub)]

pub mod envoy;
pub mod wait;

use std::path::PathBuf;

/// The repository root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `flotilla` binary built for this test run.
pub fn flotilla_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_flotilla"))
}
