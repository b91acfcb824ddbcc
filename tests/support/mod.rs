//! Shared harness for end-to-end tests: real Envoy processes, in-process backends, flotilla.
//!
//! Every server binds port 0 or a port picked free on loopback, every child process is killed
//! on drop, every wait polls with a deadline, and a failing test prints the logs of the Envoys
//! and flotilla it started.
#![allow(unreachable_pub, clippy::print_stderr)]

pub mod backend;
pub mod browser;
pub mod client;
pub mod configs;
pub mod dns;
pub mod envoy;
pub mod etcd;
pub mod flotilla;
pub mod grpc;
pub mod mesh;
pub mod monitoring;
pub mod netns;
pub mod pki;
pub mod proxy;
pub mod servers;
pub mod setup;
pub mod tcp;
pub mod tls;
pub mod upgrade;
pub mod wait;
pub mod xds_client;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// The repository root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `flotilla` binary built for this test run, or `FLOTILLA_BIN` when set (a copy taken
/// right after the build, for worktrees that share one target directory).
pub fn flotilla_bin() -> PathBuf {
    std::env::var_os("FLOTILLA_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_flotilla")))
}

/// A loopback address with a port free right now (for processes that must be told a port).
///
/// Ports come from below the kernel's ephemeral range, each handed out once per test process:
/// a port picked by binding port 0 and released could be handed by the kernel to the next
/// port-0 bind (a backend, flotilla's admin listener) before Envoy binds it, which made tests
/// flaky with "Address already in use".
pub fn free_addr() -> SocketAddr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (low, high) = picked_port_range();
    let span = high - low;
    let start = std::process::id() * 97 % span;
    for _ in 0..span {
        let port = low + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port as u16)) {
            return l.local_addr().expect("local addr");
        }
    }
    panic!("no free loopback port in {low}..{high}");
}

/// Ports below the ephemeral range (`ip_local_port_range`), which the kernel never hands to a
/// port-0 bind or an outgoing connection.
fn picked_port_range() -> (u32, u32) {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let low = 10_000.min(ephemeral_low / 2);
    (low, ephemeral_low.max(low + 1_000))
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
