//! HTTPS through real Envoy with certificates served over SDS: clients that verify the chain
//! against the test CA, SNI choosing between two certificates, live rotation under load,
//! client certificates, redirects from plain HTTP, and TLS to the backends (health probes
//! included).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::support::backend::Backend;
use crate::support::envoy::{Envoy, Xds};
use crate::support::flotilla::Flotilla;
use crate::support::pki::{Issued, Pki, TlsBackend, https_client, peer_certificate};
use crate::support::{free_addr, wait};

/// Serves `yaml` from `dir/flotilla.yaml` (certificate paths are relative to it).
async fn serve(dir: tempfile::TempDir, yaml: &str) -> Flotilla {
    let config = dir.path().join("flotilla.yaml");
    std::fs::write(&config, yaml).expect("write config");
    let flotilla = Flotilla::start_with(dir, config, &[]).await;
    flotilla.wait_ready().await;
    flotilla
}

/// Serves `listeners` (YAML, indented as under `listeners:`) in front of cluster `web`.
async fn serve_web(dir: tempfile::TempDir, web: &Backend, listeners: &str) -> Flotilla {
    let yaml = format!(
        "version: 1\nclusters:\n  web: {{ endpoints: [{}] }}\nlisteners:\n{listeners}",
        web.address()
    );
    serve(dir, &yaml).await
}

fn certs_dir(dir: &tempfile::TempDir) -> PathBuf {
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).expect("certs dir");
    certs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_picks_the_certificate_by_sni_and_plain_http_redirects() {
    let pki = Pki::new();
    let web = Backend::start("web").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = certs_dir(&dir);
    let (a, b) = (
        pki.issue(&["a.example.com"]),
        pki.issue(&["*.b.example.com"]),
    );
    a.write(&certs, "a");
    b.write(&certs, "b");
    let (https, plain) = (free_addr(), free_addr());
    let flotilla = serve_web(
        dir,
        &web,
        &format!(
            "  public:
    address: {https}
    tls:
      certificates:
        - {{ cert: certs/a.pem, key: certs/a.key }}
        - {{ cert: certs/b.pem, key: certs/b.key }}
    hosts:
      a: {{ domains: [a.example.com], routes: [{{ match: {{ prefix: / }}, to: web }}] }}
      b: {{ domains: [\"*.b.example.com\"], routes: [{{ match: {{ prefix: / }}, to: web }}] }}
  plain:
    address: {plain}
    https_redirect: true
"
        ),
    )
    .await;
    let envoy = Envoy::start(&flotilla, "edge-1", "edge", Xds::Sotw).await;
    envoy.wait_listener(https).await;
    let client = https_client(
        &pki.ca_pem,
        &[("a.example.com", https), ("x.b.example.com", https)],
        None,
    );
    for (host, cert) in [("a.example.com", &a), ("x.b.example.com", &b)] {
        let resp = wait::until(
            &format!("HTTPS to {host}"),
            Duration::from_secs(10),
            || async {
                client
                    .get(format!("https://{host}:{}/hello", https.port()))
                    .send()
                    .await
                    .ok()
            },
        )
        .await;
        assert_eq!(
            peer_certificate(&resp).as_deref(),
            Some(cert.leaf.as_ref()),
            "{host}"
        );
        assert_eq!(resp.status(), 200, "{host}");
        assert_eq!(resp.text().await.expect("body"), "web", "{host}");
    }

    envoy.wait_listener(plain).await;
    let resp = wait::until("the redirect", Duration::from_secs(10), || async {
        client
            .get(format!("http://a.example.com:{}/x/y?q=1", plain.port()))
            .send()
            .await
            .ok()
    })
    .await;
    assert_eq!(resp.status(), 301);
    assert_eq!(
        resp.headers()["location"].to_str().expect("location"),
        "https://a.example.com/x/y?q=1"
    );

    // What flotilla shows of the certificates, and that no key is anywhere.
    let listed = flotilla.json("/api/v1/certificates").await;
    let listed = listed.as_array().expect("list");
    assert_eq!(listed.len(), 2, "{listed:?}");
    for c in listed {
        assert_eq!(c["listeners"], serde_json::json!(["public"]), "{c}");
        assert_eq!(c["sha256"].as_str().map(str::len), Some(64), "{c}");
        assert!(c["not_after"].as_i64().is_some(), "{c}");
    }
    assert_eq!(listed[0]["sans"], serde_json::json!(["a.example.com"]));
    let metrics = flotilla.text("/metrics").await;
    assert_eq!(
        metrics
            .lines()
            .filter(|l| l.starts_with("flotilla_certificate_expiry_timestamp_seconds{"))
            .count(),
        2,
        "{metrics}"
    );
    for text in [
        flotilla.text("/api/v1/certificates").await,
        flotilla.text("/api/v1/state").await,
        flotilla.text("/api/v1/events").await,
        flotilla.text("/").await,
        flotilla.log(),
    ] {
        assert!(!text.contains("PRIVATE KEY"), "a key leaked: {text}");
        assert!(!text.contains(key_body(&a)), "a key leaked: {text}");
    }
}

/// The base64 body of a key's first line, as it would show if a key leaked.
fn key_body(issued: &Issued) -> &str {
    issued.key.lines().nth(1).expect("key line")
}

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
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        load.first_seen(&second.leaf),
        None,
        "a mismatched pair was served"
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_required_and_checked_and_min_version_holds() {
    let pki = Pki::new();
    let stranger = Pki::new();
    let web = Backend::start("web").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = certs_dir(&dir);
    pki.issue(&["m.example.com"]).write(&certs, "m");
    pki.write_ca(&certs, "clients");
    let https = free_addr();
    let flotilla = serve_web(
        dir,
        &web,
        &format!(
            "  partners:
    address: {https}
    tls:
      certificates: [{{ cert: certs/m.pem, key: certs/m.key }}]
      client_ca: certs/clients.pem
      require_client_cert: true
      min_version: \"1.3\"
    hosts: {{ m: {{ domains: [m.example.com], routes: [{{ to: web }}] }} }}
"
        ),
    )
    .await;
    let envoy = Envoy::start(&flotilla, "edge-1", "edge", Xds::Sotw).await;
    envoy.wait_listener(https).await;
    let url = format!("https://m.example.com:{}/", https.port());
    let with = |id: Option<&Issued>| https_client(&pki.ca_pem, &[("m.example.com", https)], id);
    let good = pki.issue(&["client.example.com"]);
    let resp = wait::until(
        "mTLS with a good certificate",
        Duration::from_secs(10),
        || async { with(Some(&good)).get(&url).send().await.ok() },
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(
        with(None).get(&url).send().await.is_err(),
        "no client certificate must be refused"
    );
    let tls12_only = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).expect("ca"))
        .identity(
            reqwest::Identity::from_pem(format!("{}{}", good.chain, good.key).as_bytes())
                .expect("identity"),
        )
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .resolve("m.example.com", https)
        .build()
        .expect("client");
    let refused = tls12_only.get(&url).send().await;
    assert!(
        refused.is_err(),
        "min_version 1.3 must refuse TLS 1.2: {refused:?}"
    );
    let foreign = stranger.issue(&["client.example.com"]);
    assert!(
        with(Some(&foreign)).get(&url).send().await.is_err(),
        "a certificate from another CA must be refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_backends_are_reached_and_probed_over_tls_on_ads() {
    tls_backend_through(Xds::Sotw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_backends_are_reached_and_probed_over_tls_on_separate_streams() {
    tls_backend_through(Xds::DeltaNoAds).await;
}

/// A cluster whose Secrets (CA, client certificate) Envoy must fetch before it is warm, and
/// a listener waiting for that cluster: nothing may wait on anything that waits on it.
async fn tls_backend_through(xds: Xds) {
    let pki = Pki::new();
    let backend = TlsBackend::start(&pki, "secure", &["api.internal"], true).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = certs_dir(&dir);
    pki.write_ca(&certs, "ca");
    pki.issue(&["flotilla-client"]).write(&certs, "client");
    let listen = free_addr();
    let flotilla = serve(
        dir,
        &format!(
            "version: 1
clusters:
  api:
    endpoints: [{backend}]
    tls: {{ sni: api.internal, ca: certs/ca.pem, cert: certs/client.pem, key: certs/client.key }}
    health_check: {{ http: {{ path: /healthz }}, interval: 200ms, timeout: 150ms, healthy_threshold: 1 }}
listeners:
  public: {{ address: {listen}, routes: [{{ to: api }}] }}
",
            backend = backend.addr
        ),
    )
    .await;
    let envoy = Envoy::start(&flotilla, "edge-1", "edge", xds).await;
    envoy.wait_listener(listen).await;
    wait::until(
        "the TLS backend healthy by flotilla's probes",
        Duration::from_secs(10),
        || async {
            let state = flotilla.json("/api/v1/state").await;
            (state["clusters"][0]["endpoints"][0]["health"] == "healthy").then_some(())
        },
    )
    .await;
    assert!(
        backend.probes() > 0,
        "probes completed TLS handshakes with a client certificate"
    );
    let body = wait::until(
        "a request through Envoy over TLS",
        Duration::from_secs(10),
        || async {
            let r = reqwest::get(format!("http://{listen}/")).await.ok()?;
            (r.status() == 200).then_some(r.text().await.ok()?)
        },
    )
    .await;
    assert_eq!(body, "secure");
}

#[test]
fn envoy_accepts_the_rendered_tls_example() {
    let dir = tempfile::tempdir().expect("temp dir");
    let example = dir.path().join("tls.yaml");
    std::fs::copy(
        crate::support::repo_root().join("examples/tls.yaml"),
        &example,
    )
    .expect("copy examples/tls.yaml");
    let certs = certs_dir(&dir);
    let pki = Pki::new();
    pki.write_ca(&certs, "ca");
    for (stem, names) in [
        ("example.com", &["example.com", "www.example.com"][..]),
        ("api.example.com", &["api.example.com"]),
        ("partners.example.com", &["partners.example.com"]),
        ("client", &["client.example.com"]),
    ] {
        pki.issue(names).write(&certs, stem);
    }
    for transport in ["ads", "sotw"] {
        let rendered = crate::validate::render_with(&example, &["--transport", transport]);
        let text = rendered.to_string();
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        let bootstrap = crate::validate::static_bootstrap_with_secrets(&rendered, &certs);
        if let Err(e) = crate::support::envoy::validate(&bootstrap) {
            panic!("{transport}: {e}\n{bootstrap}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_probes_of_a_tls_cluster_speak_tls() {
    use tonic::transport::{Identity, Server, ServerTlsConfig};
    use tonic_health::ServingStatus;

    let pki = Pki::new();
    let issued = pki.issue(&["grpc.internal"]);
    let (reporter, service) = tonic_health::server::health_reporter();
    let backend = free_addr();
    let tls = ServerTlsConfig::new().identity(Identity::from_pem(&issued.chain, &issued.key));
    let server = tokio::spawn(
        Server::builder()
            .tls_config(tls)
            .expect("server tls")
            .add_service(service)
            .serve(backend),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    pki.write_ca(&certs_dir(&dir), "ca");
    let flotilla = serve(
        dir,
        &format!(
            "version: 1
clusters:
  greeter:
    endpoints: [{backend}]
    upstream_protocol: http2
    tls: {{ sni: grpc.internal, ca: certs/ca.pem }}
    health_check: {{ grpc: {{}}, interval: 200ms, timeout: 150ms, healthy_threshold: 1, unhealthy_threshold: 1 }}
listeners:
  public: {{ address: {}, routes: [{{ to: greeter }}] }}
",
            free_addr()
        ),
    )
    .await;
    let health = || async {
        let state = flotilla.json("/api/v1/state").await;
        state["clusters"][0]["endpoints"][0]["health"]
            .as_str()
            .map(str::to_string)
    };
    wait::until(
        "healthy by gRPC over TLS",
        Duration::from_secs(10),
        || async { (health().await.as_deref() == Some("healthy")).then_some(()) },
    )
    .await;
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    wait::until(
        "unhealthy once it says so",
        Duration::from_secs(10),
        || async { (health().await.as_deref() == Some("unhealthy")).then_some(()) },
    )
    .await;
    server.abort();
}

#[test]
fn validate_names_bad_certificates_and_warns_before_expiry() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = certs_dir(&dir);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    pki.issue_until(&["a.example.com"], Some(now + 5 * 86_400 + 3_600))
        .write(&certs, "soon");
    pki.issue(&["a.example.com"]).write(&certs, "other");
    let config = dir.path().join("flotilla.yaml");
    let yaml = |key: &str| {
        format!(
            "version: 1
clusters: {{ web: {{ endpoints: [127.0.0.1:1] }} }}
listeners:
  public:
    address: 127.0.0.1:2
    tls: {{ certificates: [{{ cert: certs/soon.pem, key: certs/{key}.key }}] }}
    hosts: {{ a: {{ domains: [a.example.com], routes: [{{ to: web }}] }} }}
"
        )
    };
    let run = |yaml: String| {
        std::fs::write(&config, yaml).expect("write");
        std::process::Command::new(crate::support::flotilla_bin())
            .arg("validate")
            .arg(&config)
            .output()
            .expect("flotilla validate")
    };
    let out = run(yaml("soon"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("soon.pem (CN=a.example.com) expires in 5 days"),
        "{stderr}"
    );
    let out = run(yaml("other"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(":6:35: listeners.public.tls.certificates[0].cert: ")
            && stderr.contains("other.key): the private key does not match the certificate"),
        "{stderr}"
    );
    assert!(!stderr.contains("PRIVATE KEY"), "{stderr}");
}

#[tokio::test]
async fn the_dashboard_lists_certificates_and_never_a_key() {
    use crate::support::browser::Browser;

    let pki = Pki::new();
    let web = Backend::start("web").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = certs_dir(&dir);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let soon = pki.issue_until(&["a.example.com"], Some(now + 10 * 86_400 + 3_600));
    soon.write(&certs, "a");
    let flotilla = serve_web(
        dir,
        &web,
        &format!(
            "  public:
    address: {}
    tls: {{ certificates: [{{ cert: certs/a.pem, key: certs/a.key }}] }}
    hosts: {{ a: {{ domains: [a.example.com], routes: [{{ to: web }}] }} }}
",
            free_addr()
        ),
    )
    .await;
    let b = Browser::start("tls-certificates").await;
    b.goto(&format!("http://{}/", flotilla.admin)).await;
    let item = "#certificates li.certificate";
    let wait = Duration::from_secs(20);
    b.wait_contains(item, "CN=a.example.com", wait).await;
    b.wait_contains(item, "10 days left", wait).await;
    b.wait_contains(item, "SANs a.example.com", wait).await;
    b.wait_contains(item, "listener public", wait).await;
    let level = b
        .js("return document.querySelector('#certificates li.certificate').dataset.level")
        .await;
    assert_eq!(level, "warn", "10 days left is a warning");
    let page = b.js("return document.documentElement.outerHTML").await;
    let page = page.as_str().expect("html");
    assert!(!page.contains("PRIVATE KEY") && !page.contains(key_body(&soon)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_is_served_only_to_the_fleets_that_use_it() {
    use crate::support::xds_client::{SotwClient, node};

    const SDS: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
    let pki = Pki::new();
    let web = Backend::start("web").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = certs_dir(&dir);
    pki.issue(&["a.example.com"]).write(&certs, "a");
    let secret = format!("cert:{}", certs.join("a.pem").display());
    let flotilla = serve(
        dir,
        &format!(
            "version: 1
clusters:
  web: {{ endpoints: [{}] }}
listeners:
  public:
    address: {}
    tls: {{ certificates: [{{ cert: certs/a.pem, key: certs/a.key }}] }}
    hosts: {{ a: {{ domains: [a.example.com], routes: [{{ to: web }}] }} }}
  internal: {{ address: {}, routes: [{{ to: web }}] }}
fleets:
  edge: {{ listeners: [public] }}
  inside: {{ listeners: [internal] }}
",
            web.address(),
            free_addr(),
            free_addr()
        ),
    )
    .await;
    let mut edge = SotwClient::open(flotilla.xds, Some(node("edge-1", "edge"))).await;
    edge.request(SDS, &[&secret], None).await;
    let got = edge.recv().await.expect("the edge fleet's secret");
    assert_eq!(got.resources.len(), 1, "{got:?}");
    assert_eq!(got.resources[0].type_url, SDS);

    let mut inside = SotwClient::open(flotilla.xds, Some(node("inside-1", "inside"))).await;
    inside.request(SDS, &[&secret], None).await;
    match inside.recv_within(Duration::from_secs(2)).await {
        None => {}
        Some(Ok(r)) => assert!(r.resources.is_empty(), "another fleet's secret: {r:?}"),
        Some(Err(status)) => panic!("stream failed: {status:?}"),
    }
}
