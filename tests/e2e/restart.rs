//! flotilla going away: Envoy keeps forwarding, reconnects to the restarted flotilla, and
//! receives nothing it already has (versions are content hashes, equal across restarts).

use std::time::Duration;

use crate::support::client::Load;
use crate::support::envoy::{Envoy, Xds};
use crate::support::setup::{Setup, both_protocols};
use crate::support::wait;

/// Envoy's counters of applied xDS updates, one per resource type.
const UPDATE_STATS: [&str; 4] = [
    "cluster_manager.cds.update_success",
    "cluster.web.update_success",
    "listener_manager.lds.update_success",
    "http.public.rds.public.update_success",
];

pub(crate) async fn update_counts(envoy: &Envoy) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for name in UPDATE_STATS {
        let v = envoy
            .stat(name)
            .await
            .unwrap_or_else(|| panic!("Envoy has no stat {name}"));
        out.push((name.to_string(), v));
    }
    out
}

async fn envoy_rides_out_a_restart_and_gets_nothing_it_has(xds: Xds) {
    let mut s = Setup::new(&["a", "b"], xds, |b, l| {
        format!(
            "version: 1
clusters:
  web: {{ endpoints: [{}, {}] }}
listeners:
  public:
    address: {l}
    routes: [ {{ to: web }} ]
",
            b["a"].address(),
            b["b"].address()
        )
    })
    .await;
    wait::until("Envoy in sync", Duration::from_secs(10), || async {
        let nodes = s.flotilla.json("/api/v1/nodes").await;
        (nodes[0]["in_sync"] == true).then_some(())
    })
    .await;
    let before = update_counts(&s.envoy).await;
    let load = Load::start(&[s.url("/")], 2, Duration::from_millis(2));
    load.wait_for_more(100).await;

    s.flotilla.kill().await;
    wait::until("Envoy to notice", Duration::from_secs(10), || async {
        (s.envoy.stat("control_plane.connected_state").await == Some(0)).then_some(())
    })
    .await;
    // Envoy forwards on what it has while flotilla is away.
    load.wait_for_more(200).await;

    s.flotilla.restart().await;
    wait::until("Envoy to reconnect", Duration::from_secs(30), || async {
        (s.envoy.stat("control_plane.connected_state").await == Some(1)).then_some(())
    })
    .await;
    wait::until(
        "the reconnected Envoy in sync",
        Duration::from_secs(10),
        || async {
            let nodes = s.flotilla.json("/api/v1/nodes").await;
            (nodes[0]["in_sync"] == true).then_some(())
        },
    )
    .await;
    load.wait_for_more(100).await;
    let report = load.stop().await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);

    // Nothing Envoy already held was sent again: no update was applied for any type.
    assert_eq!(update_counts(&s.envoy).await, before);
    let nodes = s.flotilla.json("/api/v1/nodes").await;
    for t in ["cds", "eds", "lds", "rds"] {
        assert_eq!(
            nodes[0]["types"][t]["responses"].as_u64().unwrap_or(0),
            0,
            "{t} response after reconnect: {nodes}"
        );
    }
}

both_protocols!(envoy_rides_out_a_restart_and_gets_nothing_it_has);
