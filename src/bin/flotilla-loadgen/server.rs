//! flotilla under test: the real binary as a child process on free loopback ports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};

use crate::http;

pub(crate) struct Flotilla {
    pub(crate) xds: SocketAddr,
    pub(crate) admin: SocketAddr,
    pub(crate) pid: u32,
    /// Killed when dropped.
    _child: Child,
}

/// The flotilla binary next to this executable (where cargo puts both).
pub(crate) fn default_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("flotilla")))
        .unwrap_or_else(|| PathBuf::from("flotilla"))
}

impl Flotilla {
    /// Starts `flotilla serve` on `config` and waits until it is ready. Its log goes to `log`.
    pub(crate) async fn start(
        binary: &Path,
        config: &Path,
        debounce: &str,
        log: &Path,
        extra: &[String],
    ) -> Result<Flotilla> {
        let xds = http::free_addr()?;
        let admin = http::free_addr()?;
        let log_file = std::fs::File::create(log)?;
        let child = Command::new(binary)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .args(["--xds-listen", &xds.to_string()])
            .args(["--admin-listen", &admin.to_string()])
            .args(["--debounce", debounce])
            // Thousands of streams on one load-generator thread can keep a connection's task
            // from running for more than flotilla's default 10 s; flotilla would then close the
            // connection as dead (a real Envoy answers PINGs on its own event loop).
            .args(["--xds-keepalive-timeout", "300s"])
            // For the same reason a connection's first request may be read late.
            .args(["--xds-handshake-timeout", "300s"])
            // Beside the log, one per flotilla: the default (`flotilla-state.json` and its
            // history file) is the working directory, which two replicas would share.
            .arg("--state-file")
            .arg(log.with_extension("state.json"))
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("FLOTILLA_LOG").unwrap_or("warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {}", binary.display()))?;
        let pid = child.id().context("flotilla exited at once")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while http::get(admin, "/readyz").await.is_err() {
            if Instant::now() > deadline {
                bail!("flotilla not ready after 60 s; see {}", log.display());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Flotilla {
            xds,
            admin,
            pid,
            _child: child,
        })
    }
}

impl Flotilla {
    /// How flotilla exited, if it has.
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self._child.try_wait().ok().flatten()
    }
}

/// Replaces `path` atomically (temp file, rename), as editors and `git checkout` do.
pub(crate) fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
