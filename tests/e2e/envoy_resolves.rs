//! `resolve: envoy` against a real DNS server (dnsmasq) and a real Envoy: Envoy resolves the
//! name itself (STRICT_DNS) with the DNS server serve was given (`--dns-server`), follows an
//! address change, and keeps checking the backend's certificate against the hostname (SNI and
//! SAN), whichever address the name resolves to.

use std::time::{Duration, Instant};

use crate::support::backend::Backend;
use crate::support::dns::Dnsmasq;
use crate::support::envoy::{Envoy, Xds};
use crate::support::flotilla::Flotilla;
use crate::support::pki::Pki;
use crate::support::pki::tls_backend::TlsBackend;
use crate::support::{client, free_addr, wait};

/// How often Envoy resolves a STRICT_DNS cluster's names again (its `dns_refresh_rate`
/// default, which flotilla leaves as is).
const ENVOY_REFRESH: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_resolves_the_name_with_the_dns_server_serve_was_given_and_checks_it_over_tls() {
    let pki = Pki::new();
    let a = TlsBackend::start(&pki, "a", &["backend.test"], false).await;
    let port = a.addr.port();
    let at = |ip: &str| format!("{ip}:{port}").parse().expect("addr");
    let b = TlsBackend::start_at(&pki, "b", &["backend.test"], false, at("127.0.0.2")).await;
    // Answers on the name's next address, with a certificate for another name.
    let wrong = TlsBackend::start_at(&pki, "wrong", &["other.test"], false, at("127.0.0.3")).await;
    let dns = Dnsmasq::start("127.0.0.1 backend.test\n").await;

    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("config")).expect("config dir");
    pki.write_ca(&dir.path().join("config"), "ca");
    let listen = free_addr();
    let path = dir.path().join("config/flotilla.yaml");
    std::fs::write(
        &path,
        format!(
            "version: 1
clusters:
  web:
    endpoints: [backend.test:{port}]
    resolve: envoy
    tls: {{ ca: ca.pem }}
listeners:
  public:
    address: {listen}
    routes: [ {{ to: web }} ]
"
        ),
    )
    .expect("write config");
    let server = dns.addr.to_string();
    let f = Flotilla::start_with(dir, path, &["--dns-server", &server]).await;
    f.wait_ready().await;
    let envoy = Envoy::start(&f, "edge-1", "edge", Xds::Sotw).await;
    envoy.wait_listener(listen).await;

    let http = client::http();
    let url = format!("http://{listen}/");
    let answer = || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let r = http.get(&url).send().await.ok()?;
            let status = r.status().as_u16();
            Some((status, r.text().await.ok()?))
        }
    };
    wait::until(
        "traffic to a (backend.test is 127.0.0.1)",
        Duration::from_secs(20),
        || async { (answer().await? == (200, "a".to_string())).then_some(()) },
    )
    .await;
    // Envoy, not flotilla, knows the addresses: the cluster is STRICT_DNS with the name.
    let dump = envoy.config_dump().await.to_string();
    assert!(dump.contains("STRICT_DNS"), "{dump}");
    assert!(
        dump.contains(&format!("\"port_value\":{}", dns.addr.port())),
        "Envoy asks the DNS server given to serve: {dump}"
    );

    dns.set_hosts("127.0.0.2 backend.test\n");
    let changed = Instant::now();
    // Envoy asks again every ENVOY_REFRESH; the answer's TTL bounds what a cache keeps; the
    // rest is margin for a loaded machine (the poll stops as soon as traffic moved).
    let within = ENVOY_REFRESH + dns.ttl + Duration::from_secs(10);
    wait::until("traffic to b (127.0.0.2)", within, || async {
        (answer().await? == (200, "b".to_string())).then_some(())
    })
    .await;
    eprintln!("traffic moved {:?} after the DNS change", changed.elapsed());
    assert!(b.requests() > 0);

    // The name now leads to a server whose certificate does not carry it: Envoy refuses the
    // handshake (SAN checked against backend.test), no request reaches it.
    dns.set_hosts("127.0.0.3 backend.test\n");
    wait::until("requests refused (503)", within, || async {
        (answer().await?.0 == 503).then_some(())
    })
    .await;
    assert_eq!(
        wrong.requests(),
        0,
        "no request to a server without the name"
    );
    drop(a);
}

/// A listener whose routes use an EDS cluster and a cluster Envoy resolves, side by side (as
/// examples/edge.yaml's partner host does). Envoy never asks for the second's endpoints over
/// EDS: flotilla made an assignment for it anyway and waited for Envoy to acknowledge it
/// before sending the listener (make-before-break), so Envoy got an empty LDS and never
/// listened (issue 25).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_using_an_eds_cluster_and_one_envoy_resolves_reaches_envoy() {
    let local = Backend::start("local").await;
    let named = Backend::start("named").await;
    let dns = Dnsmasq::start("127.0.0.1 backend.test\n").await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("config")).expect("config dir");
    let listen = free_addr();
    let path = dir.path().join("config/flotilla.yaml");
    std::fs::write(
        &path,
        format!(
            "version: 1
clusters:
  local: {{ endpoints: [{local}] }}
  named: {{ endpoints: [backend.test:{port}], resolve: envoy }}
listeners:
  public:
    address: {listen}
    routes:
      - {{ match: {{ prefix: /named }}, to: named }}
      - {{ to: local }}
",
            local = local.address(),
            port = named.addr.port(),
        ),
    )
    .expect("write config");
    let server = dns.addr.to_string();
    let f = Flotilla::start_with(dir, path, &["--dns-server", &server]).await;
    f.wait_ready().await;
    let envoy = Envoy::start(&f, "edge-1", "edge", Xds::Sotw).await;
    envoy.wait_listener(listen).await;
    let http = client::http();
    for (path, backend) in [("/named", "named"), ("/", "local")] {
        let url = format!("http://{listen}{path}");
        wait::until(
            &format!("{path} served by {backend}"),
            Duration::from_secs(10),
            || async {
                let r = client::get_with(&http, &url, &[]).await.ok()?;
                (r.status == 200 && r.backend == backend).then_some(())
            },
        )
        .await;
    }
}

/// `logical: true`: a LOGICAL_DNS cluster. Envoy resolves the name itself and uses the latest
/// address for each new upstream connection (existing ones stay where they are): after the
/// answer changes and the old backend's connections are gone, traffic reaches the new address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logical_dns_cluster_sends_new_connections_to_the_names_new_address() {
    let mut a = Backend::start("a").await;
    let port = a.addr.port();
    let b = Backend::start_at("b", format!("127.0.0.2:{port}").parse().expect("addr")).await;
    let dns = Dnsmasq::start("127.0.0.1 backend.test\n").await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("config")).expect("config dir");
    let listen = free_addr();
    let path = dir.path().join("config/flotilla.yaml");
    std::fs::write(
        &path,
        format!(
            "version: 1
clusters:
  web: {{ endpoints: [backend.test:{port}], resolve: envoy, logical: true }}
listeners:
  public:
    address: {listen}
    routes: [ {{ to: web }} ]
"
        ),
    )
    .expect("write config");
    let server = dns.addr.to_string();
    let f = Flotilla::start_with(dir, path, &["--dns-server", &server]).await;
    f.wait_ready().await;
    let envoy = Envoy::start(&f, "edge-1", "edge", Xds::Sotw).await;
    envoy.wait_listener(listen).await;
    let dump = envoy.config_dump().await.to_string();
    assert!(dump.contains("LOGICAL_DNS"), "{dump}");

    let http = client::http();
    let url = format!("http://{listen}/");
    let backend = || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let r = client::get_with(&http, &url, &[]).await.ok()?;
            (r.status == 200).then_some(r.backend)
        }
    };
    wait::until(
        "traffic to a (backend.test is 127.0.0.1)",
        Duration::from_secs(20),
        || async { (backend().await? == "a").then_some(()) },
    )
    .await;

    dns.set_hosts("127.0.0.2 backend.test\n");
    dns.wait_answer("backend.test", "127.0.0.2".parse().expect("ip"))
        .await;
    let changed = Instant::now();
    // Envoy's pooled connections to a go with it: every request from now on needs a new
    // upstream connection, which goes to the address Envoy resolved last.
    a.kill();
    let within = ENVOY_REFRESH + dns.ttl + Duration::from_secs(10);
    wait::until("traffic to b (127.0.0.2)", within, || async {
        (backend().await? == "b").then_some(())
    })
    .await;
    eprintln!("traffic moved {:?} after the DNS change", changed.elapsed());
    assert!(b.hits() > 0);
    wait::holds_for("traffic stays on b", Duration::from_secs(2), || async {
        backend().await.as_deref() == Some("b")
    })
    .await;
}
