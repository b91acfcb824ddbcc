//! A transparent mesh sidecar's outbound listener (`flotilla bootstrap --sidecar
//! --transparent`): iptables redirects the app's outbound TCP connections to it
//! (`flotilla sidecar iptables`), and it hands each one to the listener at the connection's
//! original destination — the `mesh-vip:<caller>:<called>` listeners flotilla serves at the
//! VIPs of the services the sidecar's service calls (they bind no port). A connection to any
//! other address stays here and goes to the passthrough cluster, which flotilla serves as the
//! original destination (`mesh.outbound: passthrough`) or as a cluster with no endpoint
//! (`registry_only`: refused).
//!
//! Istio's `virtualOutbound` listener works the same way. This one is in the bootstrap, not
//! served by LDS, because its port is the sidecar's (`--outbound-port`) and what it holds
//! never changes: what changes (the VIPs, the default) is in the listeners and the cluster
//! it hands connections to.

use std::net::SocketAddr;

use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    TcpProxy, tcp_proxy::ClusterSpecifier,
};
use envoy_types::pb::google::protobuf::BoolValue;

use super::pack;

/// The listener's name (static: flotilla never serves a listener of that name).
pub const OUTBOUND_LISTENER: &str = "mesh-transparent-outbound";

/// The cluster of connections to no VIP (flotilla serves it to every sidecar).
pub const PASSTHROUGH_CLUSTER: &str = "mesh-passthrough";

/// Stat prefix of the connections that went to the passthrough cluster.
pub const PASSTHROUGH_STAT_PREFIX: &str = "mesh_passthrough";

/// The default `--outbound-port`, Istio's.
pub const DEFAULT_OUTBOUND_PORT: u16 = 15001;

/// The outbound listener on 127.0.0.1:`port`: iptables' REDIRECT of a locally made
/// connection sends it to the loopback address, so nothing outside the host reaches it.
pub fn outbound_listener(port: u16) -> Listener {
    let proxy = TcpProxy {
        stat_prefix: PASSTHROUGH_STAT_PREFIX.to_string(),
        cluster_specifier: Some(ClusterSpecifier::Cluster(PASSTHROUGH_CLUSTER.to_string())),
        ..Default::default()
    };
    Listener {
        name: OUTBOUND_LISTENER.to_string(),
        address: Some(crate::envoy::socket_address(SocketAddr::from((
            [127, 0, 0, 1],
            port,
        )))),
        // Adds the original_dst listener filter (the destination before the redirect) and
        // hands the connection to the listener at that address, if any.
        use_original_dst: Some(BoolValue { value: true }),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.tcp_proxy".to_string(),
                config_type: Some(filter::ConfigType::TypedConfig(pack(&proxy))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outbound_listener_uses_the_original_destination_and_falls_to_passthrough() {
        let l = outbound_listener(15001);
        assert_eq!(l.use_original_dst, Some(BoolValue { value: true }));
        let text = format!("{l:?}");
        assert!(text.contains("127.0.0.1"), "{text}");
        assert!(text.contains("15001"), "{text}");
    }
}
