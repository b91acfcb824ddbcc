//! Hostname endpoints against a real DNS server (dnsmasq) and a real Envoy: flotilla resolves
//! `backend.test`, follows its TTL, keeps the last good addresses when lookups fail, and
//! refuses a name that does not exist with its place in the file.

use std::time::{Duration, Instant};

use crate::support::backend::Backend;
use crate::support::client::{get_with, http};
use crate::support::dns::Dnsmasq;
use crate::support::envoy::{Envoy, Xds};
use crate::support::flotilla::Flotilla;
use crate::support::{free_addr, wait};

/// Room, beyond the TTL plus a second, for a machine busy with other tests (Envoy applying the
/// update, this test's own requests). Passing runs follow the change in well under a second.
const LOAD_MARGIN: Duration = Duration::from_secs(1);

fn config(listen: std::net::SocketAddr, endpoint: &str) -> String {
    format!(
        "version: 1
clusters:
  web:
    endpoints: [{endpoint}]
listeners:
  public:
    address: {listen}
    routes: [ {{ to: web }} ]
"
    )
}

async fn start(yaml: &str, dns: &Dnsmasq) -> Flotilla {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("config")).expect("config dir");
    let path = dir.path().join("config/flotilla.yaml");
    std::fs::write(&path, yaml).expect("write config");
    let server = dns.addr.to_string();
    Flotilla::start_with(dir, path, &["--dns-server", &server]).await
}

async fn backend_of(url: &str) -> Option<String> {
    get_with(&http(), url, &[])
        .await
        .ok()
        .filter(|r| r.status == 200)
        .map(|r| r.backend)
}

// This test once failed in about 2 of 5 runs: flotilla asked dnsmasq once at start and never
// again. The resolver task, woken by the first config's inputs, read the controller's config
// before the controller had recorded it, forgot the name and waited for inputs that never came
// (fixed; unit test `the_first_configs_names_are_followed_whenever_the_loop_wakes`).
#[tokio::test]
async fn an_address_change_moves_traffic_within_the_ttl_and_a_dead_dns_server_changes_nothing() {
    let a = Backend::start("a").await;
    let port = a.addr.port();
    let b = Backend::start_at("b", format!("127.0.0.2:{port}").parse().unwrap()).await;
    let mut dns = Dnsmasq::start("127.0.0.1 backend.test\n").await;
    let listen = free_addr();
    let f = start(&config(listen, &format!("backend.test:{port}")), &dns).await;
    f.wait_ready().await;
    let _envoy = Envoy::start(&f, "edge-1", "edge", Xds::Sotw).await;
    let url = format!("http://{listen}/");
    wait::until(
        "traffic to a (127.0.0.1)",
        Duration::from_secs(20),
        || async { (backend_of(&url).await.as_deref() == Some("a")).then_some(()) },
    )
    .await;
    // The endpoint is one like any other: flotilla's state lists it under its address.
    let state = f.text("/api/v1/state").await;
    assert!(state.contains(&format!("127.0.0.1:{port}")), "{state}");

    dns.set_hosts("127.0.0.2 backend.test\n");
    // The clock starts when dnsmasq gives the new answer (it reloads on SIGHUP in its own
    // time). From then on flotilla may still hold the old answer for one TTL and asks again
    // within a second of it running out; the margin is for a loaded machine (Envoy applying
    // the update, this test's own requests) and stays far below anything but the TTL driving
    // the change (the failure retries start at 1 s and the TTL cap is 5 min).
    dns.wait_answer("backend.test", "127.0.0.2".parse().unwrap())
        .await;
    let moved = Instant::now();
    let within = dns.ttl + Duration::from_secs(1) + LOAD_MARGIN;
    let left = || within.saturating_sub(moved.elapsed());
    // flotilla's own view first (what it sends Envoy), then the traffic, on one clock.
    let endpoint = format!("127.0.0.2:{port}");
    wait::until("flotilla to follow the new address", left(), || async {
        f.text("/api/v1/state")
            .await
            .contains(&endpoint)
            .then_some(())
    })
    .await;
    eprintln!(
        "flotilla followed {:?} after the DNS change",
        moved.elapsed()
    );
    wait::until("traffic to b (127.0.0.2)", left(), || async {
        (backend_of(&url).await.as_deref() == Some("b")).then_some(())
    })
    .await;
    eprintln!("traffic moved {:?} after the DNS change", moved.elapsed());
    assert!(b.hits() > 0);

    // The DNS server goes away: lookups fail, the last good address keeps serving.
    dns.stop().await;
    // A lookup counts as failed after its 5 s timeout; the rest is margin.
    wait::until("a counted DNS failure", Duration::from_secs(20), || async {
        f.text("/metrics")
            .await
            .lines()
            .any(|l| l.starts_with("flotilla_dns_failures_total{name=\"backend.test\"}"))
            .then_some(())
    })
    .await;
    wait::holds_for("traffic to b", Duration::from_secs(4), || async {
        backend_of(&url).await.as_deref() == Some("b")
    })
    .await;
    let events = f.text("/api/v1/events").await;
    assert!(
        events.contains("DNS lookup of backend.test failed"),
        "{events}"
    );
}

#[tokio::test]
async fn a_name_that_does_not_exist_is_refused_with_its_place_and_a_reload_keeps_the_last_good() {
    let dns = Dnsmasq::start("127.0.0.1 backend.test\n").await;
    let listen = free_addr();
    let f = start(&config(listen, "missing.nx.test:80"), &dns).await;
    let state = f.json("/api/v1/state").await;
    assert_eq!(
        state["config"]["last_reload"]["result"], "invalid",
        "{state}"
    );
    let error = state["config"]["last_reload"]["errors"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains(
            "flotilla.yaml:4:17: clusters.web.endpoints[0]: `missing.nx.test` does not resolve"
        ),
        "{error}"
    );

    f.write_config(&config(listen, "backend.test:80"));
    let applied = wait::until("the good config", Duration::from_secs(10), || async {
        let s = f.json("/api/v1/state").await;
        (s["config"]["last_reload"]["result"] == "applied").then_some(s)
    })
    .await;
    let version = applied["config"]["version"].clone();

    f.write_config(&config(listen, "missing.nx.test:80"));
    let s = wait::until(
        "the bad config refused",
        Duration::from_secs(10),
        || async {
            let s = f.json("/api/v1/state").await;
            (s["config"]["last_reload"]["result"] == "invalid").then_some(s)
        },
    )
    .await;
    assert_eq!(
        s["config"]["version"], version,
        "the last good config stays"
    );
}
