//! The mesh's resources and who receives them.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac as HttpRbac;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use prost::Message;

use super::mesh::*;
use super::{Transport, select_fleet, select_instance, translate};
use crate::config::model::{Endpoint, service_cluster};
use crate::config::{Config, parse_str};
use crate::identity::workload::{MeshIdentities, WorkloadCert};
use crate::overlay::Overlay;
use crate::tls::PrivateKeyPem;

const YAML: &str = "version: 1
listeners:
  edge: { address: 127.0.0.1:10000, routes: [ { to: web } ] }
clusters:
  web: { endpoints: [127.0.0.1:8080] }
mesh:
  services:
    payments: { port: 9090 }
    orders: { port: 8080, calls: { payments: 15101 } }
    frontend: { calls: { orders: 15102 } }
    audit: { port: 7000, protocol: tcp }
  allow:
    - { from: orders, to: payments, methods: [POST], paths: [/charge, /v1/*] }
";

fn config() -> Config {
    parse_str("m.yaml", YAML).unwrap()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Two payments instances, one orders instance, and minted identities.
fn overlay() -> Overlay {
    let mut o = Overlay::default();
    o.registered.insert(
        service_cluster("payments"),
        vec![
            Endpoint::registered(addr("10.0.0.1:15006"), 1),
            Endpoint::registered(addr("10.0.0.2:15006"), 1),
        ],
    );
    o.registered.insert(
        service_cluster("orders"),
        vec![Endpoint::registered(addr("10.0.0.3:15006"), 1)],
    );
    let cert = |s: &str| WorkloadCert {
        spiffe_id: format!("spiffe://flotilla.local/service/{s}"),
        cert_pem: b"cert".to_vec(),
        key: PrivateKeyPem::new(format!("key of {s}").into_bytes()),
        sha256: String::new(),
        issued_at: 0,
        not_after: 100,
        signer: "ca".into(),
    };
    o.mesh = Some(Arc::new(MeshIdentities {
        trust_domain: "flotilla.local".into(),
        bundle_pem: b"bundle".to_vec(),
        workloads: ["payments", "orders", "frontend", "audit"]
            .into_iter()
            .map(|s| (s.to_string(), cert(s)))
            .collect(),
    }));
    o
}

fn set(names: &[String]) -> BTreeSet<String> {
    names.iter().cloned().collect()
}

#[test]
fn a_sidecar_receives_its_service_and_its_calls_only() {
    let c = config();
    let s = select_instance(&c, "orders", Some(addr("10.0.0.3:15006"))).unwrap();
    assert_eq!(
        s.listeners,
        set(&[
            inbound_listener("orders", addr("10.0.0.3:15006")),
            outbound_listener("orders", "payments"),
        ])
    );
    assert_eq!(
        s.clusters,
        set(&[
            local_cluster("orders"),
            call_cluster("orders", "payments"),
            PASSTHROUGH_CLUSTER.to_string()
        ])
    );
    assert_eq!(
        s.secrets,
        set(&[workload_secret("orders"), TRUST_BUNDLE.to_string()])
    );
    // One payments instance never receives the other's inbound listener.
    let p1 = select_instance(&c, "payments", Some(addr("10.0.0.1:15006"))).unwrap();
    assert!(
        !p1.listeners
            .contains(&inbound_listener("payments", addr("10.0.0.2:15006")))
    );
    // A caller-only sidecar: no inbound, no local app.
    let f = select_instance(&c, "frontend", Some(addr("10.0.0.9:15006"))).unwrap();
    assert_eq!(f.listeners, set(&[outbound_listener("frontend", "orders")]));
    // An Envoy outside the mesh gets no mesh resource, and no workload key.
    let edge = select_fleet(&c, "edge").unwrap();
    assert_eq!(edge.listeners, set(&["edge".to_string()]));
    assert_eq!(edge.clusters, set(&["web".to_string()]));
    assert!(edge.secrets.is_empty());
}

#[test]
fn every_instance_has_an_inbound_listener_and_callers_see_every_instance() {
    let t = translate(&config(), &overlay(), Transport::Ads);
    for a in ["10.0.0.1:15006", "10.0.0.2:15006"] {
        assert!(
            t.listeners
                .contains_key(&inbound_listener("payments", addr(a)))
        );
    }
    let cla = &t.endpoints[&call_cluster("orders", "payments")];
    assert_eq!(cla.cluster_name, call_cluster("orders", "payments"));
    let hosts: usize = cla.endpoints.iter().map(|l| l.lb_endpoints.len()).sum();
    assert_eq!(hosts, 2);
    // The instance clusters themselves are never sent.
    assert!(!t.clusters.contains_key(&service_cluster("payments")));
    // Each service's key is in its own Secret.
    let bytes = t.secrets[&workload_secret("payments")].encode_to_vec();
    assert!(bytes.windows(15).any(|w| w == b"key of payments"));
    assert!(!bytes.windows(13).any(|w| w == b"key of orders"));
}

#[test]
fn the_rules_become_rbac_policies_on_the_callers_spiffe_id() {
    let t = translate(&config(), &overlay(), Transport::Ads);
    let l = &t.listeners[&inbound_listener("payments", addr("10.0.0.1:15006"))];
    let chain = &l.filter_chains[0];
    assert!(chain.transport_socket.is_some(), "mTLS");
    let hcm = match &chain.filters[0].config_type {
        Some(envoy_types::pb::envoy::config::listener::v3::filter::ConfigType::TypedConfig(a)) => {
            HttpConnectionManager::decode(a.value.as_slice()).unwrap()
        }
        _ => panic!("typed config"),
    };
    // RBAC sees the path the app acts on (`/public/../admin` is `/admin`).
    assert_eq!(hcm.normalize_path.map(|b| b.value), Some(true));
    assert!(hcm.merge_slashes);
    assert_eq!(
        hcm.path_with_escaped_slashes_action,
        envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::PathWithEscapedSlashesAction::RejectRequest as i32
    );
    let rbacs: Vec<HttpRbac> = hcm.http_filters[..hcm.http_filters.len() - 1]
        .iter()
        .map(|f| match &f.config_type {
            Some(envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_filter::ConfigType::TypedConfig(a)) => {
                HttpRbac::decode(a.value.as_slice()).unwrap()
            }
            _ => panic!("rbac filter"),
        })
        .collect();
    // First one filter per declared caller that only counts (shadow rules) the calls from it
    // that are denied, then the one that enforces.
    assert_eq!(rbacs.len(), 2);
    assert!(rbacs[0].rules.is_none());
    assert_eq!(
        rbacs[0].shadow_rules_stat_prefix,
        crate::translate::mesh_edges::caller_stat_prefix("orders")
    );
    let rbac = rbacs[1].clone();
    assert!(rbac.shadow_rules.is_none());
    let rules = rbac.rules.unwrap();
    assert_eq!(rules.policies.len(), 1);
    let text = format!("{:?}", rules.policies.values().next().unwrap());
    for want in [
        "spiffe://flotilla.local/service/orders",
        "POST",
        "/charge",
        "/v1/",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
}

const VIPS: &str = "version: 1
mesh:
  outbound: registry_only
  services:
    payments: { port: 9090, vip: 127.240.0.2:80 }
    orders: { port: 8080, vip: 127.240.0.3:80, calls: { payments: 15101 } }
    frontend: { calls: [orders] }
    audit: { port: 7000, protocol: tcp, vip: 127.240.0.4:7000 }
";

#[test]
fn a_call_to_a_service_with_a_vip_gets_a_listener_at_the_vip_that_binds_no_port() {
    let c = parse_str("m.yaml", VIPS).unwrap();
    let t = translate(&c, &overlay(), Transport::Ads);
    let l = &t.listeners[&vip_listener("frontend", "orders")];
    assert_eq!(
        format!("{:?}", l.address),
        format!(
            "{:?}",
            Some(crate::envoy::socket_address(addr("127.240.0.3:80")))
        )
    );
    assert_eq!(l.bind_to_port.as_ref().map(|b| b.value), Some(false));
    // Its route goes to the caller's cluster of the called service (mTLS, checked SAN).
    assert_eq!(
        t.listener_clusters[&vip_listener("frontend", "orders")],
        [call_cluster("frontend", "orders")]
    );
    // A map-form call to a service with a VIP gets both: the local port and the VIP.
    let local = &t.listeners[&outbound_listener("orders", "payments")];
    assert_eq!(local.bind_to_port, None);
    assert!(
        t.listeners
            .contains_key(&vip_listener("orders", "payments"))
    );
    // Nobody calls audit: no listener at its VIP.
    assert!(
        !t.listeners
            .keys()
            .any(|l| l.starts_with("mesh-vip:") && l.ends_with(":audit"))
    );
}

#[test]
fn a_transparent_sidecar_receives_the_vips_of_what_it_calls_and_nothing_else() {
    let c = parse_str("m.yaml", VIPS).unwrap();
    let f = select_instance(&c, "frontend", None).unwrap();
    assert_eq!(f.listeners, set(&[vip_listener("frontend", "orders")]));
    assert_eq!(
        f.clusters,
        set(&[
            call_cluster("frontend", "orders"),
            PASSTHROUGH_CLUSTER.to_string()
        ])
    );
}

#[test]
fn the_passthrough_cluster_follows_mesh_outbound() {
    use envoy_types::pb::envoy::config::cluster::v3::cluster::{
        ClusterDiscoveryType, DiscoveryType,
    };
    let kind = |yaml: &str| {
        let c = parse_str("m.yaml", yaml).unwrap();
        let t = translate(&c, &overlay(), Transport::Ads);
        let p = t.clusters[PASSTHROUGH_CLUSTER].clone();
        let endpoints = p.load_assignment.map(|a| a.endpoints.len());
        (p.cluster_discovery_type, endpoints)
    };
    assert_eq!(
        kind(VIPS),
        (
            Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32)),
            Some(0)
        ),
        "registry_only: a cluster with no endpoints refuses"
    );
    assert_eq!(
        kind(YAML),
        (
            Some(ClusterDiscoveryType::Type(
                DiscoveryType::OriginalDst as i32
            )),
            None
        ),
        "passthrough: the original destination"
    );
}

#[test]
fn only_a_callable_services_instances_shape_listeners() {
    let config = config();
    assert!(endpoints_shape_listeners(
        &config,
        &service_cluster("payments")
    ));
    assert!(endpoints_shape_listeners(
        &config,
        &service_cluster("audit")
    ));
    // frontend has no port: nothing calls its instances, so it has no inbound listeners.
    assert!(!endpoints_shape_listeners(
        &config,
        &service_cluster("frontend")
    ));
    assert!(!endpoints_shape_listeners(&config, "web"));
    assert!(!endpoints_shape_listeners(
        &config,
        &service_cluster("unknown")
    ));
}
