//! A client whose network vanishes without a FIN or RST (a frozen proxy in between) is found by
//! flotilla's HTTP/2 keepalive within `--xds-keepalive-interval` + `--xds-keepalive-timeout`:
//! its registered endpoints leave a real Envoy and its ADS node leaves `/api/v1/nodes`.

use std::time::{Duration, Instant};

use flotilla::registry::client::Client;
use serde_json::Value;

use crate::registry::endpoint;
use crate::support::backend::Backend;
use crate::support::envoy::{Envoy, Xds};
use crate::support::flotilla::Flotilla;
use crate::support::proxy::FreezingProxy;
use crate::support::xds_client::{SotwClient, node};
use crate::support::{free_addr, wait};

const INTERVAL: Duration = Duration::from_secs(1);
const TIMEOUT: Duration = Duration::from_secs(2);
/// Scheduling on a loaded 2-core machine, and the 50 ms polls of the admin API and Envoy.
const MARGIN: Duration = Duration::from_secs(2);

async fn nodes(flotilla: &Flotilla) -> Vec<String> {
    flotilla
        .json("/api/v1/nodes")
        .await
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["node_id"].as_str().map(str::to_string))
        .collect()
}

async fn registered(flotilla: &Flotilla) -> Vec<Value> {
    flotilla.json("/api/v1/state").await["registrations"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn a_client_whose_network_vanishes_leaves_within_keepalive_interval_plus_timeout() {
    let listen = free_addr();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("flotilla.yaml");
    std::fs::write(
        &config,
        format!(
            "version: 1\nclusters:\n  pool: {{ endpoints: [], registrations: {{}} }}\nlisteners:\n  public:\n    address: {listen}\n    routes: [ {{ to: pool }} ]\n"
        ),
    )
    .expect("write config");
    let flotilla = Flotilla::start_with(
        dir,
        config,
        &[
            "--xds-keepalive-interval",
            "1s",
            "--xds-keepalive-timeout",
            "2s",
        ],
    )
    .await;
    let envoy = Envoy::start(&flotilla, "edge-1", "edge", Xds::Delta).await;
    envoy.wait_listener(listen).await;

    // An instance registers, and an ADS client subscribes, both through the proxy.
    let proxy = FreezingProxy::start(flotilla.xds).await;
    let backend = Backend::start("a").await;
    let mut instance = Client::connect(&proxy.addr.to_string())
        .await
        .expect("registry stream through the proxy");
    instance
        .register(endpoint("pool", &backend.address()))
        .await
        .expect("register");
    let mut ads = SotwClient::open(proxy.addr, Some(node("lost-1", "edge"))).await;
    ads.request(
        "type.googleapis.com/envoy.config.cluster.v3.Cluster",
        &[],
        None,
    )
    .await;
    ads.recv().await.expect("clusters through the proxy");
    let envoy_has = || async { envoy.health_flags("pool", &backend.address()).await };
    wait::until(
        "Envoy to have the instance",
        Duration::from_secs(10),
        || async { envoy_has().await.map(|_| ()) },
    )
    .await;
    wait::until(
        "the ADS node to be listed",
        Duration::from_secs(5),
        || async {
            nodes(&flotilla)
                .await
                .contains(&"lost-1".to_string())
                .then_some(())
        },
    )
    .await;

    // Live connections answer the PINGs: nothing leaves while the proxy forwards.
    wait::holds_for(
        "the registration and the node on live connections",
        INTERVAL + TIMEOUT + MARGIN,
        || async {
            registered(&flotilla).await.len() == 1
                && nodes(&flotilla).await.contains(&"lost-1".to_string())
        },
    )
    .await;

    // The network vanishes: no byte, no FIN, no RST.
    proxy.freeze();
    let lost = Instant::now();
    let bound = INTERVAL + TIMEOUT + MARGIN;
    let left = || bound.saturating_sub(lost.elapsed());
    wait::until("Envoy to drop the instance", left(), || async {
        envoy_has().await.is_none().then_some(())
    })
    .await;
    wait::until("the registration to leave", left(), || async {
        registered(&flotilla).await.is_empty().then_some(())
    })
    .await;
    wait::until("the ADS node to leave", left(), || async {
        (!nodes(&flotilla).await.contains(&"lost-1".to_string())).then_some(())
    })
    .await;
    let took = lost.elapsed();
    // Found by the keepalive, not by anything quicker: a PING had to go unanswered first.
    assert!(
        took >= TIMEOUT,
        "left after {took:?}, before any PING could time out"
    );
    assert!(took <= bound, "left after {took:?}, more than {bound:?}");
    drop((instance, ads));
}
