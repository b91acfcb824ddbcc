//! CPU time and memory of a process, from /proc (Linux only, as the benchmarks are).

use anyhow::{Context, Result};

/// One reading of a process's resource use.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub(crate) struct Usage {
    /// User + system CPU seconds since the process started.
    pub(crate) cpu_s: f64,
    /// Resident set size now, MiB.
    pub(crate) rss_mib: f64,
    /// Peak resident set size (VmHWM), MiB.
    pub(crate) peak_rss_mib: f64,
}

/// Clock ticks per second, as `getconf CLK_TCK` reports (100 on every Linux we know of; the
/// crate forbids the `unsafe` a direct sysconf call would need).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

pub(crate) struct Probe {
    pid: u32,
    ticks: f64,
}

impl Probe {
    pub(crate) fn new(pid: u32) -> Probe {
        Probe {
            pid,
            ticks: clock_ticks(),
        }
    }

    pub(crate) fn sample(&self) -> Result<Usage> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .with_context(|| format!("read /proc/{}/stat", self.pid))?;
        // The command name (field 2) may contain spaces; fields after it are plain.
        let rest = stat.rsplit_once(')').context("malformed stat")?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // After ")": state is field 3, so utime (14) and stime (15) are at 11 and 12.
        let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        let kib = |key: &str| -> f64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        Ok(Usage {
            cpu_s: ticks / self.ticks,
            rss_mib: kib("VmRSS:") / 1024.0,
            peak_rss_mib: kib("VmHWM:") / 1024.0,
        })
    }
}
