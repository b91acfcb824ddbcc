//! Real Envoy processes for the propagation benchmark: started on free loopback admin ports,
//! killed when dropped, with their counters read from the admin `/stats` page.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};

use crate::http;

pub(crate) struct Envoy {
    pub(crate) admin: SocketAddr,
    _child: Child,
}

impl Envoy {
    /// Starts `binary -c bootstrap` (one worker thread) and waits for its admin port.
    pub(crate) async fn start(
        binary: &Path,
        bootstrap: &Path,
        admin: SocketAddr,
        log: &Path,
    ) -> Result<Envoy> {
        let child = Command::new(binary)
            .arg("-c")
            .arg(bootstrap)
            .args(["--concurrency", "1", "--disable-hot-restart", "-l", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {}", binary.display()))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while http::get(admin, "/ready").await.is_err() && http::get(admin, "/stats").await.is_err()
        {
            if Instant::now() > deadline {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(60).collect();
                bail!(
                    "Envoy admin on {admin} not up after 30 s; its log ends:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Envoy {
            admin,
            _child: child,
        })
    }

    pub(crate) async fn stat(&self, name: &str) -> Result<u64> {
        stat(self.admin, name).await
    }
}

/// The value of one counter or gauge (0 when Envoy does not have it yet). The filter is an
/// anchored regex, which Envoy answers in a few milliseconds even with thousands of stats.
pub(crate) async fn stat(admin: SocketAddr, name: &str) -> Result<u64> {
    let regex = format!("%5E{}%24", name.replace('.', "%5C."));
    let body = http::get(admin, &format!("/stats?filter={regex}")).await?;
    Ok(body
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}

/// `name` on every Envoy at once (in the order given), so one poll costs one round trip.
pub(crate) async fn stats(admins: &[SocketAddr], name: &str) -> Result<Vec<u64>> {
    let mut set = tokio::task::JoinSet::new();
    for (i, admin) in admins.iter().enumerate() {
        let (admin, name) = (*admin, name.to_string());
        set.spawn(async move { (i, stat(admin, &name).await) });
    }
    let mut out = vec![0; admins.len()];
    while let Some(joined) = set.join_next().await {
        let (i, value) = joined?;
        out[i] = value?;
    }
    Ok(out)
}

/// Milliseconds since the Unix epoch, the unit of Envoy's `update_time` gauges.
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
