//! The machine's limits a large run meets, named when it meets them (issue 26: a 50,000-stream
//! run that exhausts file descriptors or memory fails loudly, never hangs).
//!
//! - Open files: every connection is a descriptor in this process and one in flotilla, which
//!   inherits this process's limit. Checked (and the soft limit raised to what the run needs,
//!   within the hard limit) before anything starts.
//! - Memory: watched while a phase waits. A run stops, naming the memory, before the kernel's
//!   out-of-memory killer picks a victim; if flotilla dies anyway its exit status is named.

use anyhow::{Result, bail};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use tracing::info;

/// Descriptors each process needs besides its connections (flotilla's admin port, config and
/// state files, watches; the load generator's runtime, its config writes, /proc reads).
const RESERVED_FILES: u64 = 256;

/// Makes sure `connections` connections fit the open-files limit: raises the soft limit to
/// what they need if the hard limit allows, fails naming the limit if not.
pub(crate) fn open_files(streams: usize, connections: usize) -> Result<()> {
    let need = connections as u64 + RESERVED_FILES;
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    let soft = current.unwrap_or(u64::MAX);
    if soft >= need {
        return Ok(());
    }
    let hard = maximum.unwrap_or(u64::MAX);
    if hard < need {
        bail!(
            "{streams} streams over {connections} connections need about {need} open files in \
             flotilla and as many in the load generator, but the open-files hard limit is {hard} \
             (ulimit -Hn): raise it (ulimit -n {need} as root, or LimitNOFILE=), or put more \
             streams on each connection (--streams-per-connection)"
        );
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(need),
            maximum,
        },
    )
    .map_err(|e| anyhow::anyhow!("raise the open-files soft limit from {soft} to {need}: {e}"))?;
    info!(from = soft, to = need, "raised the open-files soft limit");
    Ok(())
}

/// The machine's memory, from /proc/meminfo, MiB.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Memory {
    pub(crate) total_mib: f64,
    pub(crate) available_mib: f64,
}

impl Memory {
    pub(crate) fn read() -> Result<Memory> {
        Ok(Memory::parse(&std::fs::read_to_string("/proc/meminfo")?))
    }

    fn parse(meminfo: &str) -> Memory {
        let kib = |key: &str| -> f64 {
            meminfo
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        Memory {
            total_mib: kib("MemTotal:") / 1024.0,
            available_mib: kib("MemAvailable:") / 1024.0,
        }
    }

    /// Whether the machine is about to run out: less than 2 % of its memory (at least
    /// 256 MiB) left. Past this the out-of-memory killer would end a process of its choice.
    pub(crate) fn exhausted(&self) -> bool {
        self.total_mib > 0.0 && self.available_mib < (self.total_mib * 0.02).max(256.0)
    }
}

/// What to say when flotilla exited during a run with `status`.
pub(crate) fn exit_hint(status: &std::process::ExitStatus) -> &'static str {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        Some(9) => {
            " (SIGKILL: the kernel's out-of-memory killer ends a process this way when memory \
             runs out; see `journalctl -k` or dmesg)"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_is_read_and_judged() {
        let m = Memory::parse(
            "MemTotal:       24000000 kB\nMemFree:  1 kB\nMemAvailable:    300000 kB\n",
        );
        assert!((m.total_mib - 23437.5).abs() < 0.1);
        assert!(m.exhausted(), "{m:?}");
        let m = Memory::parse("MemTotal:       24000000 kB\nMemAvailable:   12000000 kB\n");
        assert!(!m.exhausted());
    }
}
