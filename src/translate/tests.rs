//! Translation behaviour and determinism.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::cluster::v3::cluster::LbPolicy;
use envoy_types::pb::envoy::config::core::v3::HealthStatus;
use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
use envoy_types::pb::envoy::config::route::v3::{route, route_action};
use proptest::prelude::*;

use super::{FleetSelection, Translation, Transport, select_fleet, translate};
use crate::cache::EncodedSet;
use crate::config::Config;
use crate::config::model::Endpoint;
use crate::config::parse_str;
use crate::overlay::{EndpointKey, Overlay, Verdict};

fn config(yaml: &str) -> Config {
    parse_str("t.yaml", yaml).unwrap_or_else(|e| panic!("{e}"))
}

const BASE: &str = r#"
version: 1
clusters:
  api:
    policy: least_request
    endpoints: [127.0.0.1:8081, { address: 127.0.0.1:8082, weight: 3, zone: a }, { address: 127.0.0.1:8083, priority: 1 }]
    health_check: { http: { path: /healthz } }
  shop: { endpoints: [127.0.0.1:9001], affinity: { cookie: { name: c, ttl: 1h } } }
  chat: { policy: maglev, endpoints: [127.0.0.1:9002], affinity: { header: x-user } }
  game: { endpoints: [127.0.0.1:9003], affinity: { source_ip: true } }
  edit: { endpoints: [127.0.0.1:9004], affinity: { sticky_cookie: { name: s } }, upstream_protocol: http2 }
  internal: { endpoints: [127.0.0.1:9005], outlier_detection: false }
listeners:
  public:
    address: 127.0.0.1:10000
    routes:
      - { match: { prefix: /api }, to: api, timeout: 2s }
      - { match: { prefix: /shop }, split: { shop: 3, chat: 1 } }
      - { match: { prefix: /game }, to: game }
      - { match: { path: /edit }, to: edit }
  private:
    address: 127.0.0.1:10001
    routes: [ { to: internal, retries: false } ]
fleets:
  edge: { listeners: [public] }
"#;

fn action(t: &Translation, listener: &str, i: usize) -> RouteAction {
    let r = &t.routes[listener].virtual_hosts[0].routes[i];
    match r.action.clone() {
        Some(route::Action::Route(a)) => a,
        other => panic!("{other:?}"),
    }
}

use envoy_types::pb::envoy::config::route::v3::RouteAction;

#[test]
fn clusters_carry_policy_outlier_detection_and_protocol() {
    let t = translate(&config(BASE), &Overlay::default(), Transport::Ads);
    let api = &t.clusters["api"];
    assert_eq!(api.lb_policy, LbPolicy::LeastRequest as i32);
    let od = api.outlier_detection.as_ref().unwrap();
    assert_eq!(od.enforcing_consecutive_gateway_failure.unwrap().value, 100);
    // Every field proxyless gRPC reads (gRFC A50) is explicit: success-rate and
    // failure-percentage ejection are off, not gRPC's "enforcing 100 when unset".
    assert_eq!(od.enforcing_success_rate.unwrap().value, 0);
    assert_eq!(od.enforcing_failure_percentage.unwrap().value, 0);
    for (name, set) in [
        ("interval", od.interval.is_some()),
        ("base_ejection_time", od.base_ejection_time.is_some()),
        ("max_ejection_time", od.max_ejection_time.is_some()),
        ("max_ejection_percent", od.max_ejection_percent.is_some()),
        (
            "success_rate_stdev_factor",
            od.success_rate_stdev_factor.is_some(),
        ),
        (
            "success_rate_minimum_hosts",
            od.success_rate_minimum_hosts.is_some(),
        ),
        (
            "success_rate_request_volume",
            od.success_rate_request_volume.is_some(),
        ),
        (
            "failure_percentage_threshold",
            od.failure_percentage_threshold.is_some(),
        ),
        (
            "failure_percentage_minimum_hosts",
            od.failure_percentage_minimum_hosts.is_some(),
        ),
        (
            "failure_percentage_request_volume",
            od.failure_percentage_request_volume.is_some(),
        ),
    ] {
        assert!(set, "{name} is left to the client's default");
    }
    assert_eq!(
        api.common_lb_config
            .as_ref()
            .unwrap()
            .healthy_panic_threshold
            .unwrap()
            .value,
        0.0
    );
    assert_eq!(t.clusters["shop"].lb_policy, LbPolicy::RingHash as i32);
    assert_eq!(t.clusters["chat"].lb_policy, LbPolicy::Maglev as i32);
    assert!(t.clusters["internal"].outlier_detection.is_none());
    assert!(
        t.clusters["edit"]
            .typed_extension_protocol_options
            .contains_key("envoy.extensions.upstreams.http.v3.HttpProtocolOptions")
    );
    assert!(
        t.clusters["api"]
            .typed_extension_protocol_options
            .is_empty()
    );
}

#[test]
fn endpoints_group_by_priority_and_zone_with_weights() {
    let t = translate(&config(BASE), &Overlay::default(), Transport::Ads);
    let cla = &t.endpoints["api"];
    let groups: Vec<(u32, String, usize)> = cla
        .endpoints
        .iter()
        .map(|g| {
            (
                g.priority,
                g.locality
                    .as_ref()
                    .map(|l| l.zone.clone())
                    .unwrap_or_default(),
                g.lb_endpoints.len(),
            )
        })
        .collect();
    assert_eq!(
        groups,
        vec![
            (0, String::new(), 1),
            (0, "a".into(), 1),
            (1, String::new(), 1)
        ]
    );
    assert_eq!(
        cla.endpoints[1].lb_endpoints[0]
            .load_balancing_weight
            .unwrap()
            .value,
        3
    );
    assert!(
        cla.endpoints
            .iter()
            .flat_map(|g| &g.lb_endpoints)
            .all(|e| e.health_status == HealthStatus::Unknown as i32)
    );
}

fn health_of(t: &Translation, cluster: &str) -> BTreeMap<String, i32> {
    t.endpoints[cluster]
        .endpoints
        .iter()
        .flat_map(|g| &g.lb_endpoints)
        .map(|e| {
            let Some(HostIdentifier::Endpoint(ep)) = &e.host_identifier else {
                panic!()
            };
            let Some(envoy_types::pb::envoy::config::core::v3::address::Address::SocketAddress(
                sa,
            )) = &ep.address.as_ref().unwrap().address
            else {
                panic!()
            };
            let port = match sa.port_specifier {
                Some(envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(p)) => p,
                _ => 0,
            };
            (format!("{}:{port}", sa.address), e.health_status)
        })
        .collect()
}

#[test]
fn overlay_sets_health_drains_weights_and_registrations() {
    let c = config(BASE);
    let key = |a: &str| EndpointKey::new("api", a.parse().unwrap());
    let mut overlay = Overlay::default();
    overlay
        .verdicts
        .insert(key("127.0.0.1:8081"), Verdict::Unhealthy);
    overlay
        .verdicts
        .insert(key("127.0.0.1:8082"), Verdict::Healthy);
    overlay.draining.insert(key("127.0.0.1:8083"));
    overlay.weights.insert(key("127.0.0.1:8082"), 7);
    overlay.registered.insert(
        "api".into(),
        vec![Endpoint {
            address: "127.0.0.1:8090".parse().unwrap(),
            weight: 2,
            zone: None,
            priority: 0,
        }],
    );
    let t = translate(&c, &overlay, Transport::Ads);
    let h = health_of(&t, "api");
    assert_eq!(h["127.0.0.1:8081"], HealthStatus::Unhealthy as i32);
    assert_eq!(h["127.0.0.1:8082"], HealthStatus::Healthy as i32);
    assert_eq!(h["127.0.0.1:8083"], HealthStatus::Draining as i32);
    assert_eq!(h["127.0.0.1:8090"], HealthStatus::Unknown as i32);
    let weight_of_8082 = t.endpoints["api"].endpoints[1].lb_endpoints[0]
        .load_balancing_weight
        .unwrap()
        .value;
    assert_eq!(weight_of_8082, 7);
}

#[test]
fn every_endpoint_down_fails_open() {
    let c = config(BASE);
    let mut overlay = Overlay::default();
    for a in ["127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8083"] {
        overlay.verdicts.insert(
            EndpointKey::new("api", a.parse().unwrap()),
            Verdict::Unhealthy,
        );
    }
    let h = health_of(&translate(&c, &overlay, Transport::Ads), "api");
    assert!(
        h.values().all(|s| *s == HealthStatus::Unknown as i32),
        "{h:?}"
    );
}

#[test]
fn routes_carry_splits_hash_policies_retries_and_sticky_sessions() {
    let t = translate(&config(BASE), &Overlay::default(), Transport::Ads);
    let api = action(&t, "public", 0);
    assert_eq!(api.timeout.unwrap().seconds, 2);
    let retry = api.retry_policy.unwrap();
    assert_eq!(retry.retry_on, "connect-failure,refused-stream,reset");
    assert_eq!(retry.retry_host_predicate.len(), 1);
    assert!(api.hash_policy.is_empty());

    let split = action(&t, "public", 1);
    let Some(route_action::ClusterSpecifier::WeightedClusters(w)) = split.cluster_specifier else {
        panic!()
    };
    let weights: Vec<(String, u32)> = w
        .clusters
        .iter()
        .map(|c| (c.name.clone(), c.weight.unwrap().value))
        .collect();
    assert_eq!(weights, vec![("shop".into(), 3), ("chat".into(), 1)]);
    assert_eq!(split.hash_policy.len(), 2, "cookie and header hashing");

    let game = action(&t, "public", 2);
    assert!(matches!(
        game.hash_policy[0].policy_specifier,
        Some(route_action::hash_policy::PolicySpecifier::ConnectionProperties(_))
    ));

    let edit = &t.routes["public"].virtual_hosts[0].routes[3];
    assert!(
        edit.typed_per_filter_config
            .contains_key("envoy.filters.http.stateful_session")
    );
    assert!(action(&t, "private", 0).retry_policy.is_none());
}

#[test]
fn listeners_use_rds_and_add_stateful_session_only_when_needed() {
    let t = translate(&config(BASE), &Overlay::default(), Transport::Ads);
    let filters = |l: &str| -> Vec<String> {
        let any = match &t.listeners[l].filter_chains[0].filters[0].config_type {
            Some(
                envoy_types::pb::envoy::config::listener::v3::filter::ConfigType::TypedConfig(a),
            ) => a.clone(),
            _ => panic!(),
        };
        let hcm: envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager =
            prost::Message::decode(any.value.as_slice()).unwrap();
        hcm.http_filters.iter().map(|f| f.name.clone()).collect()
    };
    assert_eq!(
        filters("public"),
        vec![
            "envoy.filters.http.stateful_session",
            "envoy.filters.http.router"
        ]
    );
    assert_eq!(filters("private"), vec!["envoy.filters.http.router"]);
}

#[test]
fn non_ads_transports_point_eds_at_the_xds_cluster() {
    let c = config(BASE);
    let ads = translate(&c, &Overlay::default(), Transport::Ads);
    let delta = translate(&c, &Overlay::default(), Transport::Delta);
    assert_ne!(ads.clusters["api"], delta.clusters["api"]);
    assert_eq!(ads.endpoints, delta.endpoints);
    assert_eq!(ads.routes, delta.routes);
    let source = delta.clusters["api"]
        .eds_cluster_config
        .clone()
        .unwrap()
        .eds_config
        .unwrap();
    assert_eq!(source, Transport::Delta.config_source());
}

#[test]
fn fleets_get_their_listeners_and_the_clusters_they_use() {
    let c = config(BASE);
    let sel = select_fleet(&c, "edge").unwrap();
    assert_eq!(sel.listeners.iter().collect::<Vec<_>>(), vec!["public"]);
    assert_eq!(
        sel.clusters.iter().map(String::as_str).collect::<Vec<_>>(),
        vec!["api", "chat", "edit", "game", "shop"]
    );
    // Fleets are declared: an undeclared one gets nothing, not everything.
    assert_eq!(select_fleet(&c, "unknown"), Some(FleetSelection::default()));
    let mut no_fleets = c.clone();
    no_fleets.fleets.clear();
    assert!(select_fleet(&no_fleets, "unknown").is_none());
    let set = EncodedSet::encode(&translate(&c, &Overlay::default(), Transport::Ads), None);
    let edge = set.snapshot(Some(&sel), crate::cache::ClientKind::Other);
    let all = set.snapshot(None, crate::cache::ClientKind::Other);
    assert!(edge.is_consistent() && all.is_consistent());
    assert_ne!(edge.version, all.version);
}

/// A random configuration, written as YAML in two different key orders.
fn arbitrary_config() -> impl Strategy<Value = (String, String)> {
    let cluster = (
        prop::sample::select(vec![
            "round_robin",
            "least_request",
            "ring_hash",
            "maglev",
            "random",
        ]),
        prop::collection::vec((1u8..250, 1u16..60000, 1u32..100), 1..5),
    );
    (
        prop::collection::btree_map("[a-z]{1,8}", cluster, 1..6),
        any::<u64>(),
    )
        .prop_map(|(clusters, seed)| {
            let names: Vec<&String> = clusters.keys().collect();
            let render = |reverse: bool| {
                let mut cluster_entries: Vec<String> = clusters
                    .iter()
                    .map(|(name, (policy, eps))| {
                        let mut seen = std::collections::BTreeSet::new();
                        let eps: Vec<String> = eps
                            .iter()
                            .filter(|(h, p, _)| seen.insert((*h, *p)))
                            .map(|(h, p, w)| format!("{{ weight: {w}, address: 127.0.0.{h}:{p} }}"))
                            .collect();
                        let fields = [
                            format!("policy: {policy}"),
                            format!("endpoints: [{}]", eps.join(", ")),
                            "connect_timeout: 2s".to_string(),
                        ];
                        let fields: Vec<String> = if reverse {
                            fields.into_iter().rev().collect()
                        } else {
                            fields.to_vec()
                        };
                        format!("  {name}: {{ {} }}", fields.join(", "))
                    })
                    .collect();
                if reverse {
                    cluster_entries.reverse();
                }
                let split: Vec<String> = names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| format!("{n}: {}", (seed >> i) % 9 + 1))
                    .collect();
                let listener = format!(
                    "listeners:\n  l: {{ address: 127.0.0.1:10000, routes: [ {{ split: {{ {} }} }} ] }}\n",
                    if reverse {
                        split.iter().rev().cloned().collect::<Vec<_>>().join(", ")
                    } else {
                        split.join(", ")
                    }
                );
                let clusters = format!("clusters:\n{}\n", cluster_entries.join("\n"));
                if reverse {
                    format!("{listener}{clusters}version: 1\n")
                } else {
                    format!("version: 1\n{clusters}{listener}")
                }
            };
            (render(false), render(true))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Map order in the YAML never changes a byte of what Envoy receives, except for the
    /// order of a weighted split, which is list-like in Envoy but a map in YAML: flotilla keeps
    /// the order written there, so the two orders give equal clusters and endpoints.
    #[test]
    fn same_config_in_any_order_gives_identical_bytes((a, b) in arbitrary_config()) {
        let ca = config(&a);
        let cb = config(&b);
        let ta = EncodedSet::encode(&translate(&ca, &Overlay::default(), Transport::Ads), None).snapshot(None, crate::cache::ClientKind::Other);
        let tb = EncodedSet::encode(&translate(&cb, &Overlay::default(), Transport::Ads), None).snapshot(None, crate::cache::ClientKind::Other);
        for t in [crate::cache::ResourceType::Cluster, crate::cache::ResourceType::Endpoint, crate::cache::ResourceType::Listener] {
            prop_assert_eq!(&ta.get(t).resources, &tb.get(t).resources);
            prop_assert_eq!(&ta.get(t).version, &tb.get(t).version);
        }
        // Translating twice gives the same bytes too.
        let again = EncodedSet::encode(&translate(&ca, &Overlay::default(), Transport::Ads), None).snapshot(None, crate::cache::ClientKind::Other);
        prop_assert_eq!(&ta, &again);
    }

    /// The route → clusters relation carried in the translation is exactly the clusters the
    /// encoded RouteConfigurations send to.
    #[test]
    fn route_clusters_are_the_clusters_routes_name((a, _) in arbitrary_config()) {
        let t = translate(&config(&a), &Overlay::default(), Transport::Ads);
        for (name, r) in &t.routes {
            let mut named: Vec<String> = r
                .virtual_hosts
                .iter()
                .flat_map(|vh| &vh.routes)
                .filter_map(|route| match &route.action {
                    Some(route::Action::Route(a)) => a.cluster_specifier.clone(),
                    _ => None,
                })
                .flat_map(|c| match c {
                    route_action::ClusterSpecifier::Cluster(c) => vec![c],
                    route_action::ClusterSpecifier::WeightedClusters(w) => {
                        w.clusters.into_iter().map(|c| c.name).collect()
                    }
                    _ => Vec::new(),
                })
                .collect();
            named.sort();
            named.dedup();
            prop_assert_eq!(&t.route_clusters[name], &named);
        }
    }
}
