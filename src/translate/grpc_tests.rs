//! What proxyless gRPC clients receive: an api_listener, gRPC-shaped routes, and EDS with a
//! locality and a weight on every group.

use envoy_types::pb::envoy::config::core::v3::config_source::ConfigSourceSpecifier;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::{RouteAction, route};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier,
};
use prost::Message;

use super::{Transport, translate};
use crate::config::parse_str;
use crate::overlay::{EndpointKey, Overlay, Verdict};

const GRPC: &str = r#"
version: 1
clusters:
  greeter:
    endpoints:
      - { address: 127.0.0.1:50051, zone: a }
      - { address: 127.0.0.1:50052, zone: a }
      - { address: 127.0.0.1:50053 }
  ring:
    policy: ring_hash
    affinity: { header: x-user }
    endpoints: [{ address: 127.0.0.1:50061, zone: a }, { address: 127.0.0.1:50062, weight: 3, zone: a }]
listeners:
  "greeter.test:50051":
    proxyless_grpc: true
    routes:
      - { match: { prefix: /ring }, to: ring }
      - { to: greeter, timeout: 3s, retries: { attempts: 3, on: [unavailable, cancelled] } }
"#;

fn hcm(l: &Listener) -> HttpConnectionManager {
    let any = l
        .api_listener
        .as_ref()
        .and_then(|a| a.api_listener.as_ref())
        .expect("an api_listener");
    HttpConnectionManager::decode(any.value.as_slice()).expect("an HttpConnectionManager")
}

fn action(t: &super::Translation, i: usize) -> RouteAction {
    match t.routes["greeter.test:50051"].virtual_hosts[0].routes[i]
        .action
        .clone()
    {
        Some(route::Action::Route(a)) => a,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_proxyless_listener_is_an_api_listener_with_rds_over_ads_and_the_router_only() {
    let config = parse_str("t.yaml", GRPC).expect("valid");
    // Even for Envoys on per-type streams: gRPC clients only speak ADS.
    for transport in Transport::ALL {
        let t = translate(&config, &Overlay::default(), transport);
        let l = &t.listeners["greeter.test:50051"];
        assert_eq!(l.name, "greeter.test:50051");
        assert!(l.address.is_none() && l.filter_chains.is_empty());
        let hcm = hcm(l);
        let names: Vec<&str> = hcm.http_filters.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["envoy.filters.http.router"]);
        let Some(RouteSpecifier::Rds(rds)) = &hcm.route_specifier else {
            panic!("RDS expected: {hcm:?}");
        };
        assert_eq!(rds.route_config_name, "greeter.test:50051");
        let source = rds
            .config_source
            .as_ref()
            .and_then(|s| s.config_source_specifier.as_ref());
        assert!(
            matches!(source, Some(ConfigSourceSpecifier::Ads(_))),
            "{source:?}"
        );
    }
}

#[test]
fn grpc_routes_bound_calls_by_max_stream_duration_and_retry_on_status_names() {
    let t = translate(
        &parse_str("t.yaml", GRPC).expect("valid"),
        &Overlay::default(),
        Transport::Ads,
    );
    let a = action(&t, 1);
    assert_eq!(a.timeout, None, "gRPC ignores the route timeout");
    let max = a
        .max_stream_duration
        .and_then(|m| m.max_stream_duration)
        .expect("max_stream_duration");
    assert_eq!((max.seconds, max.nanos), (3, 0));
    let retry = a.retry_policy.expect("retry policy");
    assert_eq!(retry.retry_on, "unavailable,cancelled");
    assert_eq!(retry.num_retries.map(|n| n.value), Some(3));
    assert!(retry.per_try_timeout.is_none() && retry.retry_host_predicate.is_empty());
    let ring = action(&t, 0);
    assert_eq!(ring.hash_policy.len(), 1, "hash on the x-user header");
}

fn localities(cla: &ClusterLoadAssignment) -> Vec<(String, u32)> {
    cla.endpoints
        .iter()
        .map(|g| {
            let zone = g
                .locality
                .as_ref()
                .expect("every group has a locality")
                .zone
                .clone();
            (
                zone,
                g.load_balancing_weight
                    .as_ref()
                    .expect("and a weight")
                    .value,
            )
        })
        .collect()
}

#[test]
fn every_locality_carries_a_locality_and_its_serving_weight() {
    let config = parse_str("t.yaml", GRPC).expect("valid");
    let t = translate(&config, &Overlay::default(), Transport::Ads);
    // Groups sort by zone, no zone (empty locality) first.
    assert_eq!(
        localities(&t.endpoints["greeter"]),
        [("".into(), 1), ("a".into(), 2)]
    );
    // Under ring_hash gRPC multiplies endpoint weights by the locality's: it stays 1.
    assert_eq!(localities(&t.endpoints["ring"]), [("a".into(), 1)]);

    let mut overlay = Overlay::default();
    let key = |a: &str| EndpointKey::new("greeter", a.parse().unwrap());
    overlay
        .verdicts
        .insert(key("127.0.0.1:50051"), Verdict::Unhealthy);
    overlay.weights.insert(key("127.0.0.1:50052"), 5);
    let t = translate(&config, &overlay, Transport::Ads);
    assert_eq!(
        localities(&t.endpoints["greeter"]),
        [("".into(), 1), ("a".into(), 5)],
        "an unhealthy endpoint does not count; an override does"
    );
}
