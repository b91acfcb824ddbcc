//! Real Envoy 1.40: finding the binary, validating configs, running proxies.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command as StdCommand, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::process::{Child, Command};

use super::flotilla::Flotilla;
use super::{print_log_tail, wait};

/// Envoy from `$ENVOY_BIN`, else from the project's tools folder (`scripts/install-envoy`).
/// Missing Envoy is a test failure, never a skip.
pub fn envoy_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("ENVOY_BIN") {
        return PathBuf::from(bin);
    }
    let bin = super::repo_root().join("tools/envoy-1.40.0/envoy");
    assert!(
        bin.exists(),
        "Envoy not found at {} and ENVOY_BIN is not set: run scripts/install-envoy (scripts/test does)",
        bin.display()
    );
    bin
}

/// Runs `envoy --mode validate` on a bootstrap; `Err` carries Envoy's output.
pub fn validate(bootstrap_yaml: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bootstrap.yaml");
    std::fs::write(&path, bootstrap_yaml).expect("write bootstrap");
    let out = StdCommand::new(envoy_bin())
        .args([
            "--mode",
            "validate",
            "--disable-hot-restart",
            "-l",
            "warn",
            "-c",
        ])
        .arg(&path)
        .output()
        .expect("run envoy");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "envoy --mode validate failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// How an Envoy talks to flotilla.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Xds {
    Sotw,
    Delta,
    SotwNoAds,
    DeltaNoAds,
}

impl Xds {
    fn flags(self) -> &'static [&'static str] {
        match self {
            Xds::Sotw => &[],
            Xds::Delta => &["--delta"],
            Xds::SotwNoAds => &["--no-ads"],
            Xds::DeltaNoAds => &["--delta", "--no-ads"],
        }
    }

    /// The `render --transport` these Envoys' resources are rendered for.
    pub fn transport(self) -> &'static str {
        match self {
            Xds::Sotw | Xds::Delta => "ads",
            Xds::SotwNoAds => "sotw",
            Xds::DeltaNoAds => "delta",
        }
    }
}

pub struct Envoy {
    pub node_id: String,
    pub admin: SocketAddr,
    /// Killed on drop.
    _child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Envoy {
    /// Starts an Envoy with the bootstrap `flotilla bootstrap` writes for it.
    pub async fn start(flotilla: &Flotilla, node_id: &str, fleet: &str, xds: Xds) -> Envoy {
        Envoy::start_on_with(&[flotilla], node_id, fleet, xds, &[]).await
    }

    /// Like [`Envoy::start`], with extra `flotilla bootstrap` flags (`--xds-ca …` for mTLS).
    pub async fn start_with(
        flotilla: &Flotilla,
        node_id: &str,
        fleet: &str,
        xds: Xds,
        bootstrap_flags: &[String],
    ) -> Envoy {
        Envoy::start_on_with(&[flotilla], node_id, fleet, xds, bootstrap_flags).await
    }

    /// Starts an Envoy whose bootstrap lists the xDS address of every replica in `replicas`.
    pub async fn start_on(replicas: &[&Flotilla], node_id: &str, fleet: &str, xds: Xds) -> Envoy {
        Envoy::start_on_with(replicas, node_id, fleet, xds, &[]).await
    }

    /// Like [`Envoy::start_on`], with extra `flotilla bootstrap` flags.
    pub async fn start_on_with(
        replicas: &[&Flotilla],
        node_id: &str,
        fleet: &str,
        xds: Xds,
        bootstrap_flags: &[String],
    ) -> Envoy {
        let addresses: Vec<SocketAddr> = replicas.iter().map(|f| f.xds).collect();
        Envoy::start_at_with(&addresses, node_id, fleet, xds, bootstrap_flags).await
    }

    /// Like [`Envoy::start_on_with`], reaching flotilla at `addresses` (a proxy in front of
    /// it, say).
    pub async fn start_at_with(
        addresses: &[SocketAddr],
        node_id: &str,
        fleet: &str,
        xds: Xds,
        bootstrap_flags: &[String],
    ) -> Envoy {
        let addresses: Vec<String> = addresses.iter().map(SocketAddr::to_string).collect();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut args = vec![
            "bootstrap".to_string(),
            "--node-id".into(),
            node_id.into(),
            "--fleet".into(),
            fleet.into(),
            "--xds".into(),
            addresses.join(","),
            // A real port (not 0): the bootstrap announces it in the node metadata, and
            // flotilla refuses it as a registration.
            "--admin-port".into(),
            super::free_addr().port().to_string(),
        ];
        args.extend(xds.flags().iter().map(|s| s.to_string()));
        args.extend(bootstrap_flags.iter().cloned());
        let out = StdCommand::new(super::flotilla_bin())
            .args(&args)
            .output()
            .expect("flotilla bootstrap");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bootstrap = dir.path().join("bootstrap.yaml");
        std::fs::write(&bootstrap, &out.stdout).expect("write bootstrap");
        let admin_path = dir.path().join("admin-address");
        let log = dir.path().join("envoy.log");
        let child = Command::new(envoy_bin())
            .arg("-c")
            .arg(&bootstrap)
            .args(["--disable-hot-restart", "--concurrency", "1", "-l", "info"])
            .args(["--drain-time-s", "1", "--drain-strategy", "immediate"])
            // Envoy buffers files (access logs, its own log) and flushes every 10 s by default;
            // tests read them within a deadline.
            .args(["--file-flush-interval-msec", "100"])
            .arg("--admin-address-path")
            .arg(&admin_path)
            .arg("--log-path")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn envoy");
        let admin = wait::until("Envoy admin address", Duration::from_secs(20), || async {
            std::fs::read_to_string(&admin_path)
                .ok()
                .and_then(|s| s.trim().parse::<SocketAddr>().ok())
        })
        .await;
        Envoy {
            node_id: node_id.to_string(),
            admin,
            _child: child,
            log,
            _dir: dir,
        }
    }

    pub async fn admin_get(&self, path: &str) -> String {
        reqwest::get(format!("http://{}{path}", self.admin))
            .await
            .expect("Envoy admin")
            .text()
            .await
            .expect("admin body")
    }

    /// Kills the Envoy (SIGKILL), as when its host dies.
    pub async fn kill(&mut self) {
        let _ = self._child.kill().await;
    }

    /// Envoy's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn config_dump(&self) -> Value {
        serde_json::from_str(&self.admin_get("/config_dump?include_eds").await)
            .expect("config_dump JSON")
    }

    /// Counter or gauge value by exact name (absent → None).
    pub async fn stat(&self, name: &str) -> Option<u64> {
        let text = self
            .admin_get(&format!("/stats?filter=^{}$", regex_escape(name)))
            .await;
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .and_then(|v| v.trim().parse().ok())
    }

    /// The `/clusters` admin page: `cluster::host::field::value` lines.
    pub async fn clusters(&self) -> String {
        self.admin_get("/clusters").await
    }

    /// Health flags of a host as Envoy's /clusters shows them (e.g. `healthy`,
    /// `/failed_eds_health`, `/pending_dynamic_removal`).
    pub async fn health_flags(&self, cluster: &str, host: &str) -> Option<String> {
        let prefix = format!("{cluster}::{host}::health_flags::");
        self.clusters()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
    }

    /// Waits until Envoy has a listener named `name` active (it accepts connections).
    pub async fn wait_listener(&self, addr: SocketAddr) {
        wait::until(
            &format!("Envoy listening on {addr}"),
            Duration::from_secs(20),
            || async { tokio::net::TcpStream::connect(addr).await.ok() },
        )
        .await;
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        if std::thread::panicking() {
            print_log_tail(&format!("envoy {}", self.node_id), &self.log, 60);
        }
    }
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if "\\.+*?()|[]{}^$".contains(c) {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect()
}
