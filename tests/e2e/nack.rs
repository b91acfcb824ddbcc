//! A config that passes flotilla's validation but that Envoy rejects: the NACK is recorded
//! with Envoy's message, Envoy keeps serving what it had, nothing is re-sent in a loop, and
//! the next good config goes through.

use std::time::Duration;

use crate::support::client;
use crate::support::envoy::Xds;
use crate::support::setup::{Setup, both_protocols};
use crate::support::{configs, free_addr, wait};
use crate::traffic::assert_envoy_runs_rendered;

fn config(listen: std::net::SocketAddr, endpoints: &str, bad_listener: bool) -> String {
    let mut yaml = configs::web(listen, endpoints);
    if bad_listener {
        // Valid YAML, valid address, but not an address of this host: Envoy cannot bind it.
        // Nothing short of running on every Envoy's host can know that in advance.
        yaml.push_str(&format!(
            "  elsewhere:\n    address: 192.0.2.10:{}\n    routes: [ {{ to: web }} ]\n",
            listen.port()
        ));
    }
    yaml
}

async fn lds_nack(s: &Setup) -> Option<serde_json::Value> {
    let nodes = s.flotilla.json("/api/v1/nodes").await;
    let nack = nodes[0]["types"]["lds"]["last_nack"].clone();
    (!nack.is_null()).then_some(nack)
}

async fn a_rejected_config_is_recorded_and_the_last_good_one_keeps_serving(xds: Xds) {
    let s = Setup::new(&["a", "b"], xds, |b, l| config(l, &b["a"].address(), false)).await;
    assert_eq!(client::spread(&s.url("/"), 5).await.get("a"), Some(&5));

    s.flotilla
        .write_config(&config(s.listen, &s.addr("a"), true));
    let nack = wait::until(
        "Envoy's NACK in /api/v1/nodes",
        Duration::from_secs(10),
        || lds_nack(&s),
    )
    .await;
    let message = nack["message"].as_str().expect("message");
    assert!(
        message.contains("192.0.2.10"),
        "Envoy's own error is recorded: {message}"
    );

    // Envoy still serves the old listener.
    assert_eq!(client::spread(&s.url("/"), 20).await.get("a"), Some(&20));
    // And flotilla does not push the rejected config again and again.
    let responses =
        |v: serde_json::Value| v[0]["types"]["lds"]["responses"].as_u64().expect("count");
    let before = responses(s.flotilla.json("/api/v1/nodes").await);
    wait::holds_for(
        "LDS is not re-sent after the NACK",
        Duration::from_secs(2),
        || async { responses(s.flotilla.json("/api/v1/nodes").await) == before },
    )
    .await;
    let nodes = s.flotilla.json("/api/v1/nodes").await;
    assert_eq!(nodes[0]["types"]["lds"]["nacks"], 1, "{nodes}");
    assert_eq!(
        nodes[0]["in_sync"], false,
        "a node that refused the config is out of sync: {nodes}"
    );
    let events = s.flotilla.json("/api/v1/events").await.to_string();
    assert!(
        events.contains("rejected lds") && events.contains("192.0.2.10"),
        "{events}"
    );

    // The next good config is applied.
    s.flotilla.write_config(&config(
        s.listen,
        &format!("{}, {}", s.addr("a"), s.addr("b")),
        false,
    ));
    wait::until("b to take traffic", Duration::from_secs(10), || async {
        client::spread(&s.url("/"), 10).await.get("b").map(|_| ())
    })
    .await;
    assert_envoy_runs_rendered(&s.envoy, &s.flotilla, "edge", xds).await;
    wait::until("the node back in sync", Duration::from_secs(10), || async {
        (s.flotilla.json("/api/v1/nodes").await[0]["in_sync"] == true).then_some(())
    })
    .await;
}

/// Issue 11, point 2. A response that Envoy rejects in part: it adds the valid new listener
/// and refuses the other. flotilla cannot know which part was applied, so it must not think
/// that Envoy still holds the previous listeners: the revert is sent, which removes the
/// listener Envoy kept, and the node is in sync only once Envoy ACKs it.
async fn a_revert_after_a_partly_applied_rejection_reaches_envoy(xds: Xds) {
    let s = Setup::new(&["a"], xds, |b, l| config(l, &b["a"].address(), false)).await;
    let good = config(s.listen, &s.addr("a"), false);
    let second = free_addr();
    let mut half_bad = config(s.listen, &s.addr("a"), true);
    half_bad.push_str(&format!(
        "  second:\n    address: {second}\n    routes: [ {{ to: web }} ]\n"
    ));
    s.flotilla.write_config(&half_bad);
    wait::until("Envoy's NACK", Duration::from_secs(10), || lds_nack(&s)).await;
    wait::until(
        "Envoy to keep the valid listener of the rejected response",
        Duration::from_secs(10),
        || async {
            s.envoy
                .admin_get("/listeners")
                .await
                .contains("second")
                .then_some(())
        },
    )
    .await;
    let nodes = s.flotilla.json("/api/v1/nodes").await;
    assert_eq!(nodes[0]["in_sync"], false, "{nodes}");

    s.flotilla.write_config(&good);
    wait::until(
        "the revert to remove the listener Envoy kept",
        Duration::from_secs(10),
        || async { (!s.envoy.admin_get("/listeners").await.contains("second")).then_some(()) },
    )
    .await;
    wait::until("the node back in sync", Duration::from_secs(10), || async {
        (s.flotilla.json("/api/v1/nodes").await[0]["in_sync"] == true).then_some(())
    })
    .await;
    assert_eq!(client::spread(&s.url("/"), 5).await.get("a"), Some(&5));
}

both_protocols!(
    a_rejected_config_is_recorded_and_the_last_good_one_keeps_serving,
    a_revert_after_a_partly_applied_rejection_reaches_envoy
);
