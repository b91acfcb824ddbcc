//! A mesh instance whose sidecar's stream ends drains before it leaves (issue 22, point 4):
//! callers' Envoys see it DRAINING (no new requests, those in flight finish) for
//! `DRAIN_GRACE`, then it is removed; the same sidecar reconnecting within the grace takes
//! its instance back instead of being refused. Real Envoys; the payments sidecar reaches
//! flotilla through a proxy the test cuts, so its stream ends while its Envoy keeps serving.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use flotilla::xds::sidecar::DRAIN_GRACE;

use crate::support::backend::Backend;
use crate::support::envoy::Envoy;
use crate::support::flotilla::Flotilla;
use crate::support::mesh::{Load, MeshCa, serve_flags, sidecar, sidecar_through, until_ok};
use crate::support::pki::certs_dir::CertsDir;
use crate::support::proxy::CuttingProxy;
use crate::support::{free_addr, wait};

const CLUSTER: &str = "mesh-call:orders:payments";

/// The health flags of `instance` in orders' sidecar (None: not there).
async fn flags(orders: &Envoy, instance: SocketAddr) -> Option<String> {
    orders.health_flags(CLUSTER, &instance.to_string()).await
}

/// Whether flotilla's mesh API lists `instance` of payments as draining (None: not listed).
async fn api_draining(f: &Flotilla, instance: SocketAddr) -> Option<bool> {
    let api = f.json("/api/v1/mesh").await;
    let payments = api["services"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == "payments")?
        .clone();
    payments["instances"]
        .as_array()?
        .iter()
        .find(|i| i["address"] == instance.to_string())
        .and_then(|i| i["draining"].as_bool())
}

#[tokio::test]
async fn an_instance_whose_stream_ends_drains_then_leaves_and_may_come_back_within_the_grace() {
    let pki = CertsDir::new();
    let ca = MeshCa::new();
    let payments = Backend::start("payments").await;
    let orders = Backend::start("orders").await;
    let (o2p, pay1, pay2, ord1) = (free_addr(), free_addr(), free_addr(), free_addr());
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("flotilla.yaml");
    std::fs::write(
        &config,
        format!(
            "version: 1
mesh:
  services:
    payments: {{ port: {}, protocol: http }}
    orders: {{ port: {}, calls: {{ payments: {} }} }}
  allow:
    - {{ from: orders, to: payments }}
",
            payments.addr.port(),
            orders.addr.port(),
            o2p.port()
        ),
    )
    .expect("config");
    let flags_ = serve_flags(
        &pki,
        ca.cert.to_str().expect("utf-8"),
        ca.key.to_str().expect("utf-8"),
    );
    let flags_: Vec<&str> = flags_.iter().map(String::as_str).collect();
    let f = Flotilla::start_with(dir, config, &flags_).await;
    f.wait_ready().await;
    let proxy = CuttingProxy::start(f.xds).await;
    let payments_1 = sidecar(&f, &pki, "payments", "payments-1", Some(pay1)).await;
    let payments_2 = sidecar_through(proxy.addr, &pki, "payments", "payments-2", pay2).await;
    let orders_1 = sidecar(&f, &pki, "orders", "orders-1", Some(ord1)).await;
    payments_1.wait_listener(pay1).await;
    payments_2.wait_listener(pay2).await;
    orders_1.wait_listener(o2p).await;
    let url = format!("http://{o2p}/charge");
    until_ok(&url).await;
    let healthy = |instance: SocketAddr| {
        let orders_1 = &orders_1;
        async move {
            flags(orders_1, instance)
                .await
                .filter(|f| f.contains("healthy") && !f.contains("draining"))
        }
    };
    wait::until(
        "orders' sidecar holds both payments instances, healthy",
        Duration::from_secs(30),
        || async { healthy(pay1).await.and(healthy(pay2).await) },
    )
    .await;
    let load = Load::start(url);

    // 1. The stream ends and the sidecar reconnects within the grace: the instance drains,
    // then is active again (its own registration taken back, not refused as taken).
    proxy.cut();
    wait::until(
        "orders' sidecar sees payments-2 draining",
        Duration::from_secs(5),
        || async {
            flags(&orders_1, pay2)
                .await
                .filter(|f| f.contains("draining"))
        },
    )
    .await;
    assert_eq!(api_draining(&f, pay2).await, Some(true));
    proxy.resume();
    wait::until(
        "payments-2 reconnects and is active again",
        DRAIN_GRACE,
        || async {
            (api_draining(&f, pay2).await == Some(false))
                .then_some(())
                .and(healthy(pay2).await)
        },
    )
    .await;
    let log = f.log();
    assert!(
        !log.contains("registered by another instance"),
        "the reconnect was refused:\n{log}"
    );

    // 2. The stream ends for good: DRAINING for the grace, then removed.
    let cut = Instant::now();
    proxy.cut();
    wait::until(
        "orders' sidecar sees payments-2 draining again",
        Duration::from_secs(5),
        || async {
            flags(&orders_1, pay2)
                .await
                .filter(|f| f.contains("draining"))
        },
    )
    .await;
    wait::until(
        "payments-2 leaves orders' sidecar after the grace",
        DRAIN_GRACE + Duration::from_secs(20),
        || async { flags(&orders_1, pay2).await.is_none().then_some(()) },
    )
    .await;
    assert!(
        cut.elapsed() >= DRAIN_GRACE,
        "removed {:?} after its stream ended, before the grace",
        cut.elapsed()
    );
    assert_eq!(api_draining(&f, pay2).await, None, "gone from the API too");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (sent, failed, last) = load.stop().await;
    assert!(sent > 50, "only {sent} requests sent");
    assert_eq!(failed, 0, "{failed} of {sent} failed; last: {last}");
    drop(payments_2);
}
