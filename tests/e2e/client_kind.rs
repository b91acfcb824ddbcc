//! One fleet, both kinds of listener: a real Envoy is never sent the proxyless gRPC listener
//! (no api_listener in its config, no warning about the extension it lacks), and a client
//! naming a listener of the other kind is told it does not exist, with an event saying why.

use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;

use crate::support::client;
use crate::support::envoy::Xds;
use crate::support::setup::Setup;
use crate::support::wait;
use crate::support::xds_client::{DeltaClient, LDS, SotwClient, sotw_names};

const GRPC: &str = "greeter.test:50051";

/// No fleets declared: every client is in the one undeclared fleet and would get everything.
fn config(listen: std::net::SocketAddr, endpoint: &str) -> String {
    format!(
        "version: 1
clusters:
  web: {{ endpoints: [{endpoint}] }}
listeners:
  public:
    address: {listen}
    routes: [ {{ to: web }} ]
  \"{GRPC}\":
    proxyless_grpc: true
    routes: [ {{ to: web }} ]
"
    )
}

fn node(id: &str, user_agent: &str) -> Option<Node> {
    let mut node = crate::support::xds_client::node(id, "edge");
    node.user_agent_name = user_agent.to_string();
    Some(node)
}

async fn event_within(s: &Setup, text: &str) -> String {
    wait::until(
        &format!("an event saying {text:?}"),
        Duration::from_secs(10),
        || async {
            let events = s.flotilla.json("/api/v1/events").await.to_string();
            events.contains(text).then_some(events)
        },
    )
    .await
}

#[tokio::test]
async fn an_envoy_never_receives_the_grpc_listener_of_its_fleet() {
    for xds in [Xds::Sotw, Xds::Delta] {
        let s = Setup::new(&["a"], xds, |b, l| config(l, &b["a"].address())).await;
        assert_eq!(client::spread(&s.url("/"), 5).await.get("a"), Some(&5));
        let dump = s.envoy.config_dump().await;
        let listeners: Vec<String> = dump["configs"]
            .as_array()
            .expect("configs")
            .iter()
            .filter(|c| {
                c["@type"]
                    .as_str()
                    .is_some_and(|t| t.ends_with("ListenersConfigDump"))
            })
            .flat_map(|c| {
                c["dynamic_listeners"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|l| l["name"].as_str().map(str::to_string))
            .collect();
        assert_eq!(listeners, ["public"], "{xds:?}: {dump}");
        assert!(
            !dump.to_string().contains("api_listener"),
            "{xds:?}: {dump}"
        );
        let log = s.envoy.log();
        assert!(!log.contains("API listener"), "{xds:?}: {log}");
        assert!(!log.contains(GRPC), "{xds:?}: {log}");
    }
}

#[tokio::test]
async fn a_grpc_client_naming_an_envoy_listener_gets_nothing_and_an_event_says_why() {
    let s = Setup::new(&["a"], Xds::Sotw, |b, l| config(l, &b["a"].address())).await;
    let mut grpc = SotwClient::open(s.flotilla.xds, node("grpc-app-1", "gRPC Python")).await;
    grpc.request(LDS, &["public"], None).await;
    let response = grpc.recv().await.expect("LDS");
    assert!(sotw_names(&response).is_empty(), "{response:?}");
    let events = event_within(&s, "gRPC client node grpc-app-1 asked for listener public").await;
    assert!(events.contains("served only to Envoys"), "{events}");

    // Its own listener, on the same stream, it does get.
    grpc.request(LDS, &["public", GRPC], Some(&response)).await;
    let response = grpc.recv().await.expect("LDS");
    assert_eq!(sotw_names(&response), [GRPC]);
    // The real Envoy carries on.
    assert_eq!(client::spread(&s.url("/"), 5).await.get("a"), Some(&5));
}

#[tokio::test]
async fn an_envoy_naming_the_grpc_listener_is_told_it_does_not_exist() {
    let s = Setup::new(&["a"], Xds::Delta, |b, l| config(l, &b["a"].address())).await;
    let mut envoy = DeltaClient::open(s.flotilla.xds, node("raw-envoy-1", "envoy")).await;
    envoy
        .send(DeltaDiscoveryRequest {
            type_url: LDS.into(),
            resource_names_subscribe: vec![GRPC.into(), "public".into()],
            ..Default::default()
        })
        .await;
    let received = envoy.next().await.expect("LDS");
    assert_eq!(received.names.iter().collect::<Vec<_>>(), ["public"]);
    assert_eq!(received.removed.iter().collect::<Vec<_>>(), [GRPC]);
    event_within(
        &s,
        &format!("Envoy node raw-envoy-1 asked for proxyless gRPC listener {GRPC}; it is served only to gRPC clients"),
    )
    .await;
    let log = s.flotilla.log();
    assert!(log.contains("asked for proxyless gRPC listener"), "{log}");
    assert_eq!(client::spread(&s.url("/"), 5).await.get("a"), Some(&5));
}
