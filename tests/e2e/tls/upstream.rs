//! TLS to the backends: Envoy's upstream TLS (SNI, CA, client certificate over SDS) and
//! flotilla's HTTP and gRPC health probes over the same TLS; the rendered example accepted
//! by `envoy --mode validate`.

use std::time::Duration;

use super::{certs_dir, serve};
use crate::support::envoy::{Envoy, Xds};
use crate::support::pki::Pki;
use crate::support::pki::tls_backend::TlsBackend;
use crate::support::{free_addr, wait};

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
