//! `Listener` for `protocol: tcp | tls_passthrough`: Envoy's tcp_proxy forwards whole
//! connections to a cluster; for TLS passthrough the tls_inspector reads the ClientHello's SNI
//! and one filter chain per server name picks the cluster, so TLS ends at the backend.

use std::net::SocketAddr;

use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter, filter, listener_filter,
};
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    TcpProxy, tcp_proxy::ClusterSpecifier,
};
use envoy_types::pb::envoy::r#type::v3::{HashPolicy, hash_policy};

use super::any;
use crate::config::Config;
use crate::config::model::{self, Affinity, TcpForward};
use crate::envoy::socket_address;

pub(crate) const TCP_PROXY_FILTER: &str = "envoy.filters.network.tcp_proxy";
const TLS_INSPECTOR_FILTER: &str = "envoy.filters.listener.tls_inspector";

pub(super) fn listener(
    l: &model::Listener,
    forward: &TcpForward,
    address: SocketAddr,
    config: &Config,
) -> Listener {
    let proxy = |cluster: &str| FilterChain {
        filters: vec![Filter {
            name: TCP_PROXY_FILTER.to_string(),
            config_type: Some(filter::ConfigType::TypedConfig(any(&tcp_proxy(
                l, cluster, config,
            )))),
        }],
        ..Default::default()
    };
    let (listener_filters, filter_chains) = match forward {
        TcpForward::To(cluster) => (Vec::new(), vec![proxy(cluster)]),
        TcpForward::Sni(routes) => {
            let inspector = ListenerFilter {
                name: TLS_INSPECTOR_FILTER.to_string(),
                config_type: Some(listener_filter::ConfigType::TypedConfig(any(
                    &TlsInspector::default(),
                ))),
                ..Default::default()
            };
            // No default chain: a connection whose SNI names no listed server is closed.
            let chains = routes
                .iter()
                .map(|r| FilterChain {
                    filter_chain_match: Some(FilterChainMatch {
                        server_names: vec![r.server_name.clone()],
                        ..Default::default()
                    }),
                    name: r.server_name.clone(),
                    ..proxy(&r.cluster)
                })
                .collect();
            (vec![inspector], chains)
        }
    };
    Listener {
        name: l.name.clone(),
        address: Some(socket_address(address)),
        listener_filters,
        filter_chains,
        ..Default::default()
    }
}

/// Sorted and unique, like a route's clusters.
pub(super) fn clusters(forward: &TcpForward) -> Vec<String> {
    let mut out: Vec<String> = forward.clusters().map(str::to_string).collect();
    out.sort();
    out.dedup();
    out
}

fn tcp_proxy(l: &model::Listener, cluster: &str, config: &Config) -> TcpProxy {
    // Ring hash and maglev need a key; without HTTP the connection's source address is the one
    // there is (validation rejects cookie and header affinity on clusters behind TCP).
    let hashes = config
        .clusters
        .get(cluster)
        .is_some_and(|c| c.policy.is_consistent_hash() || c.affinity == Some(Affinity::SourceIp));
    TcpProxy {
        stat_prefix: l.name.clone(),
        cluster_specifier: Some(ClusterSpecifier::Cluster(cluster.to_string())),
        hash_policy: hashes
            .then_some(HashPolicy {
                policy_specifier: Some(hash_policy::PolicySpecifier::SourceIp(
                    hash_policy::SourceIp {},
                )),
            })
            .into_iter()
            .collect(),
        access_log: super::access_log::access_logs(l, true),
        ..Default::default()
    }
}

#[cfg(test)]
#[path = "tcp_tests.rs"]
mod tests;
