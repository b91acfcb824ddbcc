//! flotilla itself, run as the real binary on free loopback ports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::{free_addr, print_log_tail, wait};

pub struct Flotilla {
    pub xds: SocketAddr,
    pub admin: SocketAddr,
    /// The config file (or directory) flotilla serves.
    pub config: PathBuf,
    extra_args: Vec<String>,
    /// A command flotilla is run under (`prlimit --nofile=64`), if any.
    wrapper: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Flotilla {
    /// Writes `yaml` to a fresh directory as `config/flotilla.yaml` and serves it.
    pub async fn start(yaml: &str) -> Flotilla {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("config")).expect("config dir");
        let config = dir.path().join("config/flotilla.yaml");
        std::fs::write(&config, yaml).expect("write config");
        Flotilla::start_with(dir, config, &[]).await
    }

    /// Like [`Flotilla::start`], with extra `serve` arguments.
    pub async fn start_args(yaml: &str, extra: &[&str]) -> Flotilla {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("config")).expect("config dir");
        let config = dir.path().join("config/flotilla.yaml");
        std::fs::write(&config, yaml).expect("write config");
        Flotilla::start_with(dir, config, extra).await
    }

    /// Serves `config` (inside `dir`, which the harness keeps alive) with extra arguments.
    pub async fn start_with(dir: tempfile::TempDir, config: PathBuf, extra: &[&str]) -> Flotilla {
        Flotilla::start_under(dir, config, extra, &[]).await
    }

    /// Like [`Flotilla::start_with`], run under `wrapper` (a command that execs its arguments,
    /// such as `prlimit --nofile=64`).
    pub async fn start_under(
        dir: tempfile::TempDir,
        config: PathBuf,
        extra: &[&str],
        wrapper: &[&str],
    ) -> Flotilla {
        Flotilla::launch(dir, config, free_addr(), extra, wrapper).await
    }

    /// Like [`Flotilla::start_with`], with the xDS port on `xds` (an address beyond loopback,
    /// inside a network namespace the test created).
    pub async fn start_xds_on(
        dir: tempfile::TempDir,
        config: PathBuf,
        xds: SocketAddr,
        extra: &[&str],
    ) -> Flotilla {
        Flotilla::launch(dir, config, xds, extra, &[]).await
    }

    async fn launch(
        dir: tempfile::TempDir,
        config: PathBuf,
        xds: SocketAddr,
        extra: &[&str],
        wrapper: &[&str],
    ) -> Flotilla {
        let mut f = Flotilla {
            xds,
            admin: free_addr(),
            config,
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            wrapper: wrapper.iter().map(|s| s.to_string()).collect(),
            child: None,
            log: dir.path().join("flotilla.log"),
            _dir: dir,
        };
        f.spawn().await;
        f
    }

    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut command = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(super::flotilla_bin());
                c
            }
            None => Command::new(super::flotilla_bin()),
        };
        let child = command
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .arg("--xds-listen")
            .arg(self.xds.to_string())
            .arg("--admin-listen")
            .arg(self.admin.to_string())
            .arg("--state-file")
            .arg(self.dir().join("state.json"))
            .args(&self.extra_args)
            .env("RUST_LOG", "info,flotilla=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn flotilla");
        self.child = Some(child);
        let url = format!("http://{}/healthz", self.admin);
        wait::until("flotilla admin port", Duration::from_secs(10), || async {
            reqwest::get(&url)
                .await
                .ok()
                .filter(|r| r.status().is_success())
        })
        .await;
    }

    /// Waits until flotilla reports ready (valid config loaded, xDS port open).
    pub async fn wait_ready(&self) {
        let url = format!("http://{}/readyz", self.admin);
        wait::until("flotilla ready", Duration::from_secs(10), || async {
            reqwest::get(&url)
                .await
                .ok()
                .filter(|r| r.status().is_success())
        })
        .await;
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Stops flotilla abruptly (SIGKILL).
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Sends SIGTERM and waits for the process to exit; returns its exit status.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("flotilla is running");
        let pid = child.id().expect("pid");
        let status = std::process::Command::new("kill")
            .arg(pid.to_string())
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .expect("flotilla exits after SIGTERM")
            .expect("wait")
    }

    /// Sends a signal (`HUP`, `TERM`, …) to the running flotilla.
    pub fn signal(&self, name: &str) {
        let pid = self
            .child
            .as_ref()
            .and_then(Child::id)
            .expect("flotilla is running");
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name}");
    }

    /// Starts flotilla again on the same ports and config.
    pub async fn restart(&mut self) {
        self.kill().await;
        self.spawn().await;
    }

    /// Replaces the config file atomically (write a temp file, rename over), as editors and
    /// `git checkout` do.
    pub fn write_config(&self, yaml: &str) {
        let tmp = self.config.with_extension("yaml.tmp");
        std::fs::write(&tmp, yaml).expect("write config");
        std::fs::rename(&tmp, &self.config).expect("rename config");
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        reqwest::get(format!("http://{}{path}", self.admin))
            .await
            .expect("admin request")
    }

    pub async fn json(&self, path: &str) -> serde_json::Value {
        self.get(path).await.json().await.expect("admin JSON")
    }

    /// The body of an admin endpoint as text (`/metrics`).
    pub async fn text(&self, path: &str) -> String {
        self.get(path).await.text().await.expect("admin text")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Flotilla {
    fn drop(&mut self) {
        if std::thread::panicking() {
            print_log_tail("flotilla", &self.log, 80);
        }
    }
}
