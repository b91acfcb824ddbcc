//! A real etcd (Debian's `etcd-server`, installed by scripts/install-etcd) on free loopback
//! ports with a temporary data directory, for the replica tests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::pki::https::https_client;
use super::pki::{Issued, Pki};
use super::{free_addr, print_log_tail, wait};

/// The etcd binary: `ETCD_BIN`, else what scripts/install-etcd prints (it installs etcd if
/// missing, so a fresh machine runs these tests too).
pub fn etcd_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("ETCD_BIN") {
        return PathBuf::from(bin);
    }
    let out = std::process::Command::new(super::repo_root().join("scripts/install-etcd"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/install-etcd");
    assert!(out.status.success(), "scripts/install-etcd failed");
    PathBuf::from(String::from_utf8(out.stdout).expect("path").trim())
}

pub struct Etcd {
    pub client: SocketAddr,
    peer: SocketAddr,
    child: Option<Child>,
    log: PathBuf,
    dir: tempfile::TempDir,
    tls: Option<Tls>,
}

/// etcd serving TLS with `--client-cert-auth`: its CA, server certificate and a client
/// certificate for flotilla, written into etcd's temporary directory.
pub struct Tls {
    pub pki: Pki,
    pub client: Issued,
}

impl Etcd {
    /// Starts a single-member etcd and waits until it answers.
    pub async fn start() -> Etcd {
        Etcd::start_with(None).await
    }

    /// Starts etcd serving clients over TLS only, requiring a client certificate signed by
    /// its CA.
    pub async fn start_tls() -> Etcd {
        let pki = Pki::new();
        let client = pki.issue(&["flotilla"]);
        Etcd::start_with(Some(Tls { pki, client })).await
    }

    async fn start_with(tls: Option<Tls>) -> Etcd {
        let dir = tempfile::tempdir().expect("temp dir");
        if let Some(tls) = &tls {
            tls.pki.write_ca(dir.path(), "ca");
            tls.pki.issue(&["127.0.0.1"]).write(dir.path(), "server");
            tls.client.write(dir.path(), "client");
        }
        let mut etcd = Etcd {
            client: free_addr(),
            peer: free_addr(),
            child: None,
            log: dir.path().join("etcd.log"),
            dir,
            tls,
        };
        etcd.spawn().await;
        etcd
    }

    /// `etcd://host:port`, as `flotilla serve --store` takes it.
    pub fn url(&self) -> String {
        format!("etcd://{}", self.client)
    }

    /// The `serve` arguments that reach this etcd: `--store`, and with TLS the CA and
    /// client certificate flags.
    pub fn store_args(&self) -> Vec<String> {
        let mut args = vec!["--store".to_string(), self.url()];
        if self.tls.is_some() {
            let file = |name: &str| self.dir.path().join(name).display().to_string();
            args.extend([
                "--store-cacert".to_string(),
                file("ca.pem"),
                "--store-cert".to_string(),
                file("client.pem"),
                "--store-key".to_string(),
                file("client.key"),
            ]);
        }
        args
    }

    /// A file of the TLS material (`ca.pem`, `client.pem`, `client.key`).
    pub fn tls_file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("etcd log");
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let client = format!("{scheme}://{}", self.client);
        let peer = format!("http://{}", self.peer);
        let mut command = Command::new(etcd_bin());
        if self.tls.is_some() {
            let file = |name: &str| self.dir.path().join(name).display().to_string();
            command
                .arg(format!("--cert-file={}", file("server.pem")))
                .arg(format!("--key-file={}", file("server.key")))
                .arg(format!("--trusted-ca-file={}", file("ca.pem")))
                .arg("--client-cert-auth");
        }
        let child = command
            .arg("--name=test")
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            // No metrics or profiling listeners beyond the client port.
            .arg("--listen-metrics-urls=")
            // Room for the 10 MB value of the store-hardening test (default 1.5 MiB).
            .arg("--max-request-bytes=16777216")
            // Large transactions, so that the store-hardening test writes its 80,000 keys
            // in a few (default 128 operations).
            .arg("--max-txn-ops=10000")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn etcd");
        self.child = Some(child);
        let url = format!("{client}/health");
        let http = match &self.tls {
            Some(tls) => https_client(&tls.pki.ca_pem, &[], Some(&tls.client)),
            None => reqwest::Client::new(),
        };
        wait::until("etcd answers", Duration::from_secs(20), || async {
            let r = http.get(&url).send().await.ok()?;
            let body: serde_json::Value = r.json().await.ok()?;
            (body["health"] == "true").then_some(())
        })
        .await;
    }

    /// Stops etcd abruptly (SIGKILL); its data directory is kept for [`Etcd::restart`].
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts etcd again on the same ports and data.
    pub async fn restart(&mut self) {
        self.kill().await;
        self.spawn().await;
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            print_log_tail("etcd", &self.log, 40);
        }
    }
}
