//! TCP and TLS passthrough listeners: tcp_proxy per cluster, SNI filter chains, no routes,
//! and their clusters counted by fleets and snapshots.

use envoy_types::pb::envoy::config::listener::v3::{FilterChain, filter};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    TcpProxy, tcp_proxy::ClusterSpecifier,
};
use envoy_types::pb::envoy::r#type::v3::hash_policy::PolicySpecifier;
use prost::Message;

use super::TCP_PROXY_FILTER;
use crate::cache::{ClientKind, EncodedSet, ResourceType};
use crate::config::parse_str;
use crate::translate::{Overlay, Transport, select_fleet, translate};

const TCP: &str = r#"
version: 1
clusters:
  pg: { policy: maglev, endpoints: [127.0.0.1:5432, { address: 127.0.0.1:5433, weight: 3 }] }
  a: { endpoints: [127.0.0.1:9001] }
  b: { endpoints: [127.0.0.1:9002] }
  unused: { endpoints: [127.0.0.1:9003] }
listeners:
  db: { address: 127.0.0.1:15432, protocol: tcp, to: pg }
  tls: { address: 127.0.0.1:10444, protocol: tls_passthrough, sni: { a.example.com: a, "*.b.example.com": b } }
fleets:
  data: { listeners: [db, tls] }
"#;

fn proxy(chain: &FilterChain) -> TcpProxy {
    let [f] = chain.filters.as_slice() else {
        panic!("one filter expected: {chain:?}");
    };
    assert_eq!(f.name, TCP_PROXY_FILTER);
    let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type else {
        panic!("typed config expected");
    };
    TcpProxy::decode(any.value.as_slice()).unwrap()
}

fn cluster(p: &TcpProxy) -> &str {
    match &p.cluster_specifier {
        Some(ClusterSpecifier::Cluster(c)) => c,
        other => panic!("{other:?}"),
    }
}

#[test]
fn tcp_listeners_proxy_connections_and_hash_on_source_ip() {
    let c = parse_str("t.yaml", TCP).unwrap();
    let t = translate(&c, &Overlay::default(), Transport::Ads);
    assert!(t.routes.is_empty(), "TCP listeners have no routes");
    let db = &t.listeners["db"];
    assert!(db.listener_filters.is_empty());
    let [chain] = db.filter_chains.as_slice() else {
        panic!("{db:?}")
    };
    let p = proxy(chain);
    assert_eq!((cluster(&p), p.stat_prefix.as_str()), ("pg", "db"));
    assert!(matches!(
        p.hash_policy[0].policy_specifier,
        Some(PolicySpecifier::SourceIp(_))
    ));

    let tls = &t.listeners["tls"];
    assert_eq!(
        tls.listener_filters[0].name,
        "envoy.filters.listener.tls_inspector"
    );
    let chains: Vec<(Vec<String>, String, bool)> = tls
        .filter_chains
        .iter()
        .map(|ch| {
            let p = proxy(ch);
            let names = ch.filter_chain_match.clone().unwrap().server_names;
            (names, cluster(&p).to_string(), p.hash_policy.is_empty())
        })
        .collect();
    assert_eq!(
        chains,
        [
            (vec!["*.b.example.com".to_string()], "b".to_string(), true),
            (vec!["a.example.com".to_string()], "a".to_string(), true),
        ]
    );
}

#[test]
fn fleets_and_snapshots_count_the_clusters_tcp_listeners_use() {
    let c = parse_str("t.yaml", TCP).unwrap();
    let sel = select_fleet(&c, "data").unwrap();
    assert_eq!(
        sel.clusters.iter().map(String::as_str).collect::<Vec<_>>(),
        ["a", "b", "pg"]
    );
    let set = EncodedSet::encode(&translate(&c, &Overlay::default(), Transport::Ads), None);
    let snapshot = set.snapshot(Some(&sel), ClientKind::Envoy);
    assert!(snapshot.is_consistent());
    let listeners = &snapshot.get(ResourceType::Listener).resources;
    assert_eq!(listeners["db"].clusters, ["pg"]);
    assert_eq!(listeners["tls"].clusters, ["a", "b"]);
    // Without `b` the passthrough listener names a cluster the snapshot lacks.
    let mut partial = sel.clone();
    partial.clusters.remove("b");
    assert!(
        !set.snapshot(Some(&partial), ClientKind::Envoy)
            .is_consistent()
    );
}
