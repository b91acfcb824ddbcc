//! The Envoy bootstrap that connects an Envoy to flotilla (`flotilla bootstrap`).

use std::net::IpAddr;
use std::time::Duration;

use envoy_types::pb::envoy::config::bootstrap::v3::{
    Admin, Bootstrap, ClusterManager,
    bootstrap::{DynamicResources, StaticResources},
};
use envoy_types::pb::envoy::config::cluster::v3::{
    Cluster,
    cluster::{ClusterDiscoveryType, DiscoveryType},
};
use envoy_types::pb::envoy::config::core::v3::{
    ApiVersion, Http2ProtocolOptions, KeepaliveSettings, Node, api_config_source::ApiType,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions,
    http_protocol_options::{
        ExplicitHttpConfig, UpstreamProtocolOptions, explicit_http_config::ProtocolConfig,
    },
};

use envoy_types::pb::envoy::config::metrics::v3::{
    HistogramEmitMode, MetricsServiceConfig, StatsSink, stats_sink,
};
use envoy_types::pb::google::protobuf as pbwk;

use super::xds_source::{Transport, XDS_CLUSTER, xds_api_source, xds_grpc_service};
use super::{duration, named_address, pack};

/// What `flotilla bootstrap` asks for.
#[derive(Debug, Clone)]
pub struct BootstrapOptions {
    pub node_id: String,
    /// Reported as `node.cluster`; flotilla serves the fleet of that name.
    pub fleet: String,
    /// flotilla's xDS addresses, `(host, port)` (an IP, or a DNS name resolved by Envoy):
    /// one, or one per replica; Envoy connects to one and moves to another if it fails.
    pub xds: Vec<(String, u16)>,
    pub delta: bool,
    /// ADS (one stream, ordered updates) unless false: then one stream per resource type.
    pub ads: bool,
    pub admin_address: IpAddr,
    pub admin_port: u16,
    /// How often Envoy flushes its stats to flotilla's metrics sink; `None`: no sink.
    pub stats_flush: Option<std::time::Duration>,
    /// TLS (mTLS with a client certificate) for the connection to flotilla; None: plaintext.
    pub xds_tls: Option<super::xds_tls::XdsClientTls>,
    /// A mesh sidecar's inbound listener address, announced in the node's metadata so that
    /// flotilla makes this instance an endpoint of its service (`xds::sidecar`).
    pub inbound: Option<std::net::SocketAddr>,
    /// A transparent mesh sidecar's outbound port (`--transparent`): the listener that
    /// iptables redirects the app's outbound connections to (`flotilla sidecar iptables`).
    pub transparent: Option<u16>,
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("--xds `{0}`: expected host:port")]
    BadXdsAddress(String),
    #[error("--xds: {0} addresses, at most {MAX_XDS_ADDRESSES}")]
    TooManyXdsAddresses(usize),
    #[error("--inbound {0}: {1}")]
    BadInbound(std::net::SocketAddr, String),
    #[error("--outbound-port {0}: {1}")]
    BadOutboundPort(u16, String),
}

impl BootstrapOptions {
    /// A sidecar's listeners and its admin interface need distinct ports, and its inbound
    /// address must be one flotilla accepts as an instance: a bootstrap that breaks either
    /// started an Envoy that could not bind (its listener NACKed, or Envoy exiting) or was
    /// refused by flotilla only once connected.
    pub fn check(&self) -> Result<(), BootstrapError> {
        let overlaps = |a: IpAddr, b: IpAddr| a == b || a.is_unspecified() || b.is_unspecified();
        if let Some(inbound) = self.inbound {
            let bad = |why: String| Err(BootstrapError::BadInbound(inbound, why));
            if inbound.port() == 0 {
                return bad("port 0: callers need the port the listener is on".into());
            }
            if !inbound.ip().is_unspecified()
                && let Some(why) = crate::runtime::admission::refused(inbound.ip())
            {
                return bad(format!("{why}: flotilla refuses it as an instance"));
            }
            if inbound.port() == self.admin_port && overlaps(inbound.ip(), self.admin_address) {
                return bad(format!(
                    "the admin interface listens at {}:{} (--admin-port)",
                    self.admin_address, self.admin_port
                ));
            }
        }
        if let Some(port) = self.transparent {
            let bad = |why: String| Err(BootstrapError::BadOutboundPort(port, why));
            if port == self.admin_port && overlaps(IpAddr::from([127, 0, 0, 1]), self.admin_address)
            {
                return bad("it is the admin interface's port (--admin-port)".into());
            }
            if self.inbound.is_some_and(|i| i.port() == port) {
                return bad("it is the inbound listener's port (--inbound)".into());
            }
        }
        Ok(())
    }
}

/// Most xDS addresses (replicas) one bootstrap lists.
pub const MAX_XDS_ADDRESSES: usize = 16;

/// Splits `host:port[,host:port…]`.
pub fn split_xds_list(text: &str) -> Result<Vec<(String, u16)>, BootstrapError> {
    let list = text
        .split(',')
        .map(split_host_port)
        .collect::<Result<Vec<_>, _>>()?;
    if list.len() > MAX_XDS_ADDRESSES {
        return Err(BootstrapError::TooManyXdsAddresses(list.len()));
    }
    Ok(list)
}

/// Splits `host:port` (`[v6]:port` for IPv6).
pub fn split_host_port(text: &str) -> Result<(String, u16), BootstrapError> {
    let bad = || BootstrapError::BadXdsAddress(text.to_string());
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or_else(bad)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

pub fn bootstrap(o: &BootstrapOptions) -> Bootstrap {
    let transport = match (o.ads, o.delta) {
        (true, _) => Transport::Ads,
        (false, false) => Transport::Sotw,
        (false, true) => Transport::Delta,
    };
    let api_type = if o.delta {
        ApiType::DeltaGrpc
    } else {
        ApiType::Grpc
    };
    let dynamic_resources = DynamicResources {
        ads_config: o.ads.then(|| xds_api_source(api_type)),
        cds_config: Some(transport.config_source()),
        lds_config: Some(transport.config_source()),
        ..Default::default()
    };
    let (stats_sinks, stats_flush_interval, cluster_manager) = match o.stats_flush {
        Some(every) => (
            vec![metrics_sink()],
            Some(duration(every)),
            Some(ClusterManager {
                load_stats_config: Some(xds_api_source(ApiType::Grpc)),
                ..Default::default()
            }),
        ),
        None => (Vec::new(), None, None),
    };
    Bootstrap {
        stats_sinks,
        stats_flush_interval,
        cluster_manager,
        node: Some(Node {
            id: o.node_id.clone(),
            cluster: o.fleet.clone(),
            // The admin interface, announced so that flotilla refuses it as a registration
            // (registered, it would put /config_dump and /quitquitquit behind a listener), and
            // a sidecar's inbound address (the endpoint it is of its service).
            metadata: Some(pbwk::Struct {
                fields: [(
                    crate::runtime::admission::ADMIN_ADDRESS_METADATA.to_string(),
                    pbwk::Value {
                        kind: Some(pbwk::value::Kind::StringValue(
                            std::net::SocketAddr::new(o.admin_address, o.admin_port).to_string(),
                        )),
                    },
                )]
                .into_iter()
                .chain(o.inbound.map(|a| {
                    (
                        crate::xds::sidecar::INBOUND_METADATA.to_string(),
                        pbwk::Value {
                            kind: Some(pbwk::value::Kind::StringValue(a.to_string())),
                        },
                    )
                }))
                .collect(),
            }),
            ..Default::default()
        }),
        static_resources: Some(StaticResources {
            clusters: vec![xds_cluster(&o.xds, o.xds_tls.as_ref())],
            listeners: o
                .transparent
                .map(super::transparent::outbound_listener)
                .into_iter()
                .collect(),
            ..Default::default()
        }),
        dynamic_resources: Some(dynamic_resources),
        admin: Some(Admin {
            address: Some(named_address(&o.admin_address.to_string(), o.admin_port)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Envoy's metrics_service sink, streaming to flotilla over the same connection as xDS:
/// counters as deltas (summing across Envoys is then addition), tags as labels (cluster and
/// endpoint arrive as labels, not baked into names), histograms as buckets (mergeable).
fn metrics_sink() -> StatsSink {
    let config = MetricsServiceConfig {
        grpc_service: Some(xds_grpc_service()),
        transport_api_version: ApiVersion::V3 as i32,
        report_counters_as_deltas: Some(pbwk::BoolValue { value: true }),
        emit_tags_as_labels: true,
        histogram_emit_mode: HistogramEmitMode::Histogram as i32,
        batch_size: 1000,
    };
    StatsSink {
        name: "envoy.stat_sinks.metrics_service".to_string(),
        config_type: Some(stats_sink::ConfigType::TypedConfig(pack(&config))),
    }
}

/// The static cluster for flotilla itself: HTTP/2 (gRPC) with keepalives, so a dead control
/// plane connection is noticed and re-established promptly (on another replica when several
/// are listed: the cluster balances new connections over them). With `tls`, over TLS: one
/// transport socket for every replica, checked against the first address's host (replicas
/// share a certificate naming it).
fn xds_cluster(addresses: &[(String, u16)], tls: Option<&super::xds_tls::XdsClientTls>) -> Cluster {
    let discovery = if addresses.iter().all(|(h, _)| h.parse::<IpAddr>().is_ok()) {
        DiscoveryType::Static
    } else {
        DiscoveryType::StrictDns
    };
    let options = HttpProtocolOptions {
        upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
            ExplicitHttpConfig {
                protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(Http2ProtocolOptions {
                    connection_keepalive: Some(KeepaliveSettings {
                        interval: Some(duration(Duration::from_secs(15))),
                        timeout: Some(duration(Duration::from_secs(5))),
                        ..Default::default()
                    }),
                    ..Default::default()
                })),
            },
        )),
        ..Default::default()
    };
    let mut cluster = Cluster {
        name: XDS_CLUSTER.to_string(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(discovery as i32)),
        connect_timeout: Some(duration(Duration::from_secs(1))),
        transport_socket: tls
            .zip(addresses.first())
            .map(|(t, (host, _))| super::xds_tls::transport_socket(t, host)),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: XDS_CLUSTER.to_string(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: addresses
                    .iter()
                    .map(|(host, port)| LbEndpoint {
                        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                            address: Some(named_address(host, *port)),
                            ..Default::default()
                        })),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    cluster.typed_extension_protocol_options.insert(
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_string(),
        pack(&options),
    );
    cluster
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_sidecars_ports_are_distinct_and_its_inbound_admissible() {
        let options =
            |inbound: &str, admin_port: u16, transparent: Option<u16>| super::BootstrapOptions {
                node_id: "p-1".into(),
                fleet: "payments".into(),
                xds: vec![("127.0.0.1".into(), 18000)],
                delta: false,
                ads: true,
                admin_address: "127.0.0.1".parse().unwrap(),
                admin_port,
                stats_flush: None,
                xds_tls: None,
                inbound: Some(inbound.parse().unwrap()),
                transparent,
            };
        for (inbound, admin, transparent, error) in [
            ("0.0.0.0:15006", 9901, Some(15001), None),
            ("10.0.0.7:9901", 9901, None, None),
            ("127.0.0.5:0", 9901, None, Some("port 0")),
            ("169.254.169.254:80", 9901, None, Some("link-local")),
            ("224.0.0.1:80", 9901, None, Some("not a unicast")),
            ("0.0.0.0:9901", 9901, None, Some("admin interface")),
            ("127.0.0.1:9901", 9901, None, Some("admin interface")),
            ("0.0.0.0:15006", 9901, Some(9901), Some("admin interface")),
            ("0.0.0.0:15006", 9901, Some(15006), Some("inbound listener")),
        ] {
            let got = options(inbound, admin, transparent).check();
            match error {
                None => assert!(got.is_ok(), "{inbound}: {got:?}"),
                Some(want) => {
                    let e = got.expect_err(inbound).to_string();
                    assert!(e.contains(want), "{inbound}: {e}");
                }
            }
        }
    }

    use super::*;

    #[test]
    fn host_port_forms() {
        assert_eq!(
            split_host_port("127.0.0.1:18000").unwrap(),
            ("127.0.0.1".into(), 18000)
        );
        assert_eq!(
            split_host_port("[::1]:18000").unwrap(),
            ("::1".into(), 18000)
        );
        assert_eq!(
            split_host_port("flotilla.svc:18000").unwrap(),
            ("flotilla.svc".into(), 18000)
        );
        assert!(split_host_port("flotilla").is_err());
        assert!(split_host_port(":18000").is_err());
        assert!(split_host_port("a:0").is_err());
    }

    #[test]
    fn several_xds_addresses_become_endpoints_of_the_xds_cluster() {
        let list = split_xds_list("10.0.0.1:18000,[::1]:18001").unwrap();
        assert_eq!(list, [("10.0.0.1".into(), 18000), ("::1".into(), 18001)]);
        let cluster = xds_cluster(&list, None);
        assert_eq!(
            cluster.cluster_discovery_type,
            Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32))
        );
        let endpoints = &cluster.load_assignment.unwrap().endpoints[0].lb_endpoints;
        assert_eq!(endpoints.len(), 2);
        // A DNS name among them: resolved by Envoy.
        let named = xds_cluster(&split_xds_list("a.svc:1,10.0.0.1:2").unwrap(), None);
        assert_eq!(
            named.cluster_discovery_type,
            Some(ClusterDiscoveryType::Type(DiscoveryType::StrictDns as i32))
        );
        assert!(split_xds_list("a:1,,b:2").is_err());
        let many = vec!["a:1"; MAX_XDS_ADDRESSES + 1].join(",");
        assert_eq!(
            split_xds_list(&many).unwrap_err().to_string(),
            "--xds: 17 addresses, at most 16"
        );
    }
}
