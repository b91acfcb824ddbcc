//! Rotation under a steady loop of HTTPS clients: cert-manager's two writes (a mismatched
//! pair is refused, never served) and a Kubernetes Secret volume's `..data` swap.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{certs_dir, serve_web};
use crate::support::backend::Backend;
use crate::support::envoy::{Envoy, Xds};
use crate::support::pki::https::{https_client, peer_certificate};
use crate::support::pki::{Issued, Pki};
use crate::support::{free_addr, wait};

/// A certificate (DER) and when a client first saw it.
type FirstSeen = (Vec<u8>, Instant);

/// HTTPS clients in a loop, each request on a new connection: every failure, and when each
/// certificate was first seen.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
    seen: Arc<std::sync::Mutex<Vec<FirstSeen>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(client: reqwest::Client, url: String, workers: usize) -> Load {
        let load = Load {
            stop: Arc::default(),
            ok: Arc::default(),
            failures: Arc::default(),
            seen: Arc::default(),
            tasks: Vec::new(),
        };
        let tasks = (0..workers)
            .map(|_| {
                let (client, url) = (client.clone(), url.clone());
                let (stop, ok) = (load.stop.clone(), load.ok.clone());
                let (failures, seen) = (load.failures.clone(), load.seen.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        match client.get(&url).send().await {
                            Ok(r) if r.status() == 200 => {
                                let cert = peer_certificate(&r).unwrap_or_default();
                                let mut seen = seen.lock().expect("seen");
                                if !seen.iter().any(|(c, _)| *c == cert) {
                                    seen.push((cert, Instant::now()));
                                }
                                drop(seen);
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(r) => failures
                                .lock()
                                .expect("f")
                                .push(format!("status {}", r.status())),
                            Err(e) => failures.lock().expect("f").push(format!("{e:?}")),
                        }
                    }
                })
            })
            .collect();
        Load { tasks, ..load }
    }

    fn first_seen(&self, cert: &[u8]) -> Option<Instant> {
        let seen = self.seen.lock().expect("seen");
        seen.iter().find(|(c, _)| c == cert).map(|(_, at)| *at)
    }

    async fn wait_for(&self, cert: &Issued, what: &str) -> Instant {
        wait::until(what, Duration::from_secs(10), || async {
            self.first_seen(&cert.leaf)
        })
        .await
    }

    async fn finish(mut self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks.drain(..) {
            t.await.expect("load task");
        }
        let failures = self.failures.lock().expect("f").clone();
        (self.ok.load(Ordering::Relaxed), failures)
    }
}

/// A Kubernetes Secret volume: `tls.crt` and `tls.key` are links into `..data`, itself a link
/// to a timestamped directory that the kubelet replaces in one rename.
fn secret_volume(dir: &Path, generation: u32, cert: &Issued) {
    let data = dir.join(format!("..{generation}"));
    std::fs::create_dir(&data).expect("generation dir");
    std::fs::write(data.join("tls.crt"), &cert.chain).expect("crt");
    std::fs::write(data.join("tls.key"), &cert.key).expect("key");
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(format!("..{generation}"), &tmp).expect("link");
    std::fs::rename(&tmp, dir.join("..data")).expect("swap ..data");
    for f in ["tls.crt", "tls.key"] {
        if std::fs::symlink_metadata(dir.join(f)).is_err() {
            std::os::unix::fs::symlink(format!("..data/{f}"), dir.join(f)).expect("link file");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_fails_no_request_and_never_serves_a_mismatched_pair() {
    let pki = Pki::new();
    let web = Backend::start("web").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = certs_dir(&dir);
    let mounted = dir.path().join("mounted");
    std::fs::create_dir(&mounted).expect("mount dir");
    let first = pki.issue(&["a.example.com"]);
    first.write(&certs, "a");
    let k8s_first = pki.issue(&["k.example.com"]);
    secret_volume(&mounted, 1, &k8s_first);
    let (https, k8s) = (free_addr(), free_addr());
    let flotilla = serve_web(
        dir,
        &web,
        &format!(
            "  public:
    address: {https}
    tls: {{ certificates: [{{ cert: certs/a.pem, key: certs/a.key }}] }}
    hosts: {{ a: {{ domains: [a.example.com], routes: [{{ to: web }}] }} }}
  mounted:
    address: {k8s}
    tls: {{ certificates: [{{ cert: mounted/tls.crt, key: mounted/tls.key }}] }}
    hosts: {{ k: {{ domains: [k.example.com], routes: [{{ to: web }}] }} }}
"
        ),
    )
    .await;
    let envoy = Envoy::start(&flotilla, "edge-1", "edge", Xds::Delta).await;
    envoy.wait_listener(https).await;
    envoy.wait_listener(k8s).await;
    let client = https_client(
        &pki.ca_pem,
        &[("a.example.com", https), ("k.example.com", k8s)],
        None,
    );
    let load = Load::start(
        client.clone(),
        format!("https://a.example.com:{}/", https.port()),
        4,
    );
    load.wait_for(&first, "the first certificate under load")
        .await;
    let listeners_before = envoy.stat("listener_manager.listener_modified").await;

    // cert-manager style: the certificate lands first, its key a moment later.
    let second = pki.issue(&["a.example.com"]);
    std::fs::write(certs.join("a.pem"), &second.chain).expect("new cert");
    wait::until(
        "the half-written pair refused",
        Duration::from_secs(10),
        || async {
            let state = flotilla.json("/api/v1/state").await;
            let last = &state["config"]["last_reload"];
            (last["result"] == "invalid" && last["errors"].to_string().contains("does not match"))
                .then_some(())
        },
    )
    .await;
    wait::holds_for(
        "no mismatched pair served",
        Duration::from_secs(1),
        || async { load.first_seen(&second.leaf).is_none() },
    )
    .await;
    std::fs::write(certs.join("a.key"), &second.key).expect("new key");
    let complete = Instant::now();
    let presented = load.wait_for(&second, "the rotated certificate").await;
    let delay = presented.saturating_duration_since(complete);
    eprintln!("rotation: new certificate presented {delay:?} after the pair was complete");
    assert!(delay < Duration::from_secs(1), "took {delay:?}");

    // Kubernetes style: a new generation swapped in by one rename of `..data`.
    let k8s_load = Load::start(
        client.clone(),
        format!("https://k.example.com:{}/", k8s.port()),
        2,
    );
    k8s_load
        .wait_for(&k8s_first, "the mounted certificate")
        .await;
    let k8s_second = pki.issue(&["k.example.com"]);
    secret_volume(&mounted, 2, &k8s_second);
    let swapped = Instant::now();
    let presented = k8s_load
        .wait_for(&k8s_second, "the swapped-in certificate")
        .await;
    let delay = presented.saturating_duration_since(swapped);
    eprintln!("rotation by ..data swap: presented after {delay:?}");
    assert!(delay < Duration::from_secs(1), "took {delay:?}");

    let (ok, failures) = load.finish().await;
    let (k8s_ok, k8s_failures) = k8s_load.finish().await;
    eprintln!("rotation: {ok} + {k8s_ok} requests, no failure");
    assert_eq!(failures, Vec::<String>::new(), "after {ok} good requests");
    assert_eq!(
        k8s_failures,
        Vec::<String>::new(),
        "after {k8s_ok} good requests"
    );
    assert!(ok > 20 && k8s_ok > 10, "{ok} / {k8s_ok} requests");
    assert_eq!(
        envoy.stat("listener_manager.listener_modified").await,
        listeners_before,
        "a rotation changes Secrets, never a Listener"
    );
}
