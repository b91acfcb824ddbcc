//! Shared harness for end-to-end tests: real Envoy processes, in-process backends, flotilla.
//!
//! Every server binds port 0 or a port picked free on loopback, every child process is killed
//! on drop, every wait polls with a deadline, and a failing test prints the logs of the Envoys
//! and flotilla it started.
#![allow(dead_code, unreachable_pub, clippy::print_stderr)]

pub mod backend;
pub mod browser;
pub mod client;
pub mod configs;
pub mod envoy;
pub mod flotilla;
pub mod monitoring;
pub mod servers;
pub mod wait;
pub mod xds_client;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

/// The repository root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `flotilla` binary built for this test run.
pub fn flotilla_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_flotilla"))
}

/// A loopback address with a port free right now (for processes that must be told a port).
pub fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind free port");
    l.local_addr().expect("local addr")
}

pub(crate) fn print_log_tail(what: &str, path: &Path, lines: usize) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    eprintln!(
        "----- last {} lines of {what} log ({}) -----",
        all.len() - start,
        path.display()
    );
    for l in &all[start..] {
        eprintln!("{l}");
    }
    eprintln!("----- end of {what} log -----");
}
