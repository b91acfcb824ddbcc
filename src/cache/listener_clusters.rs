//! The clusters a listener names itself: a tcp_proxy's cluster. (HTTP listeners name theirs in
//! their RouteConfiguration.) Make-before-break and fleet consistency need both kinds.

use envoy_types::pb::envoy::config::listener::v3::{Listener, filter};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    TcpProxy, tcp_proxy::ClusterSpecifier,
};
use prost::Message;

/// Sorted and without duplicates, like a route's clusters.
pub(super) fn listener_clusters(l: &Listener) -> Vec<String> {
    let mut out: Vec<String> = l
        .filter_chains
        .iter()
        .flat_map(|chain| chain.filters.iter())
        .filter_map(|f| match &f.config_type {
            Some(filter::ConfigType::TypedConfig(any))
                if any.type_url.ends_with("tcp_proxy.v3.TcpProxy") =>
            {
                TcpProxy::decode(any.value.as_slice()).ok()
            }
            _ => None,
        })
        .filter_map(|proxy| match proxy.cluster_specifier {
            Some(ClusterSpecifier::Cluster(c)) => Some(c),
            _ => None,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}
