//! A mesh on loopback: flotilla over mTLS with a mesh CA, apps behind Envoy sidecars made by
//! `flotilla bootstrap --sidecar`, and clients that count every failed call.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::envoy::{Envoy, Xds};
use super::flotilla::Flotilla;
use super::pki::certs_dir::CertsDir;
use super::wait;

/// A mesh CA made by `flotilla certs ca` in its own directory (so that a rotation can make
/// another one beside it).
pub struct MeshCa {
    pub cert: PathBuf,
    pub key: PathBuf,
    _dir: tempfile::TempDir,
}

impl MeshCa {
    pub fn new() -> MeshCa {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = Command::new(super::flotilla_bin())
            .args(["certs", "ca", "--out"])
            .arg(dir.path())
            .output()
            .expect("flotilla certs ca");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        MeshCa {
            cert: dir.path().join("ca.pem"),
            key: dir.path().join("ca.key"),
            _dir: dir,
        }
    }

    pub fn cert_pem(&self) -> String {
        std::fs::read_to_string(&self.cert).expect("read mesh CA")
    }

    pub fn key_pem(&self) -> String {
        std::fs::read_to_string(&self.key).expect("read mesh CA key")
    }
}

/// `serve` flags: mTLS on the xDS port (`pki`), the mesh CA files at `cert`/`key`.
pub fn serve_flags(pki: &CertsDir, cert: &str, key: &str) -> Vec<String> {
    let mut flags = pki.serve_flags();
    flags.extend([
        "--mesh-ca-cert".to_string(),
        cert.to_string(),
        "--mesh-ca-key".to_string(),
        key.to_string(),
    ]);
    flags
}

/// Starts the sidecar `node` of `service`, with its inbound listener at `inbound` (None: a
/// service that only calls), connected to `f` with a fleet certificate for the service.
pub async fn sidecar(
    f: &Flotilla,
    pki: &CertsDir,
    service: &str,
    node: &str,
    inbound: Option<SocketAddr>,
) -> Envoy {
    let mut flags = pki.bootstrap_flags_with(&pki.issue(service, None));
    flags.extend(["--sidecar".to_string(), "--service".into(), service.into()]);
    match inbound {
        Some(a) => flags.extend(["--inbound".to_string(), a.to_string()]),
        None => flags.push("--no-inbound".into()),
    }
    Envoy::start_with(f, node, service, Xds::Sotw, &flags).await
}

/// Like [`sidecar`], reaching flotilla at `xds` (a proxy in front of it).
pub async fn sidecar_through(
    xds: SocketAddr,
    pki: &CertsDir,
    service: &str,
    node: &str,
    inbound: SocketAddr,
) -> Envoy {
    let mut flags = pki.bootstrap_flags_with(&pki.issue(service, None));
    flags.extend(["--sidecar".to_string(), "--service".into(), service.into()]);
    flags.extend(["--inbound".to_string(), inbound.to_string()]);
    Envoy::start_at_with(&[xds], node, service, Xds::Sotw, &flags).await
}

/// Requests sent in a loop until stopped: how many, and how many failed (anything but 200).
pub struct Load {
    pub sent: Arc<AtomicU64>,
    pub failed: Arc<AtomicU64>,
    pub last_error: Arc<std::sync::Mutex<String>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    /// GETs `url` back to back (one connection reused, as an app would).
    pub fn start(url: String) -> Load {
        let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let last_error = Arc::new(std::sync::Mutex::new(String::new()));
        let (s, fl, st, le) = (
            sent.clone(),
            failed.clone(),
            stop.clone(),
            last_error.clone(),
        );
        let task = tokio::spawn(async move {
            let client = super::client::http();
            while !st.load(Ordering::Relaxed) {
                let ok = match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 => r.bytes().await.is_ok(),
                    Ok(r) => {
                        *le.lock().unwrap() = format!("status {}", r.status());
                        false
                    }
                    Err(e) => {
                        *le.lock().unwrap() = format!("{e:?}");
                        false
                    }
                };
                s.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    fl.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        Load {
            sent,
            failed,
            last_error,
            stop,
            task,
        }
    }

    /// Stops and returns (sent, failed).
    pub async fn stop(self) -> (u64, u64, String) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        let e = self.last_error.lock().unwrap().clone();
        (
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            e,
        )
    }
}

/// The serial numbers Envoy's `/certs` shows for its certificates (workload and CA).
pub async fn envoy_certs(envoy: &Envoy) -> serde_json::Value {
    serde_json::from_str(&envoy.admin_get("/certs").await).expect("certs JSON")
}

/// Waits until `envoy` answers 200 for `url`.
pub async fn until_ok(url: &str) {
    let client = super::client::http();
    wait::until(
        &format!("200 from {url}"),
        Duration::from_secs(30),
        || async {
            client
                .get(url)
                .send()
                .await
                .ok()
                .filter(|r| r.status() == 200)
        },
    )
    .await;
}
