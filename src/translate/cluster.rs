//! `Cluster`: an EDS cluster whose endpoints come over the same xDS connection, or with
//! `resolve: envoy` a STRICT_DNS / LOGICAL_DNS cluster whose names Envoy resolves itself.

use envoy_types::pb::envoy::config::cluster::v3::{
    CircuitBreakers, Cluster, OutlierDetection,
    circuit_breakers::Thresholds,
    cluster::{ClusterDiscoveryType, CommonLbConfig, DiscoveryType, EdsClusterConfig, LbPolicy},
};
use envoy_types::pb::envoy::config::core::v3::{
    ConfigSource, DnsResolverOptions, Http2ProtocolOptions, RoutingPriority, TypedExtensionConfig,
};
use envoy_types::pb::envoy::extensions::network::dns_resolver::cares::v3::CaresDnsResolverConfig;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions,
    http_protocol_options::{
        ExplicitHttpConfig, UpstreamProtocolOptions, explicit_http_config::ProtocolConfig,
    },
};
use envoy_types::pb::envoy::r#type::v3::Percent;

use super::{any, duration, u32_value};
use crate::config::model::{self, Policy, Resolve, UpstreamProtocol};

const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

const CARES_RESOLVER: &str = "envoy.network.dns_resolver.cares";

/// The DNS resolver of a cluster whose names Envoy resolves: `None` (Envoy's own, the system's
/// configuration) unless serve was given `--dns-server`, in which case Envoy asks exactly
/// those servers, like flotilla does, names looked up as written (no search domains).
pub(super) fn dns_resolver(servers: &[std::net::SocketAddr]) -> Option<TypedExtensionConfig> {
    (!servers.is_empty()).then(|| TypedExtensionConfig {
        name: CARES_RESOLVER.to_string(),
        typed_config: Some(any(&CaresDnsResolverConfig {
            resolvers: servers
                .iter()
                .map(|s| crate::envoy::socket_address(*s))
                .collect(),
            use_resolvers_as_fallback: false,
            dns_resolver_options: Some(DnsResolverOptions {
                use_tcp_for_dns_lookups: false,
                no_default_search_domain: true,
            }),
            ..Default::default()
        })),
    })
}

pub(super) fn cluster(
    c: &model::Cluster,
    eds_source: &ConfigSource,
    dns_servers: &[std::net::SocketAddr],
) -> Cluster {
    let lb_policy = match c.policy {
        Policy::RoundRobin => LbPolicy::RoundRobin,
        // Weighted least-request: measured latency sets the weights, in-flight requests still
        // steer each pick.
        Policy::LeastRequest | Policy::LeastResponseTime => LbPolicy::LeastRequest,
        Policy::RingHash => LbPolicy::RingHash,
        Policy::Maglev => LbPolicy::Maglev,
        Policy::Random => LbPolicy::Random,
    };
    let mut cluster = Cluster {
        name: c.name.clone(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        eds_cluster_config: Some(EdsClusterConfig {
            eds_config: Some(eds_source.clone()),
            service_name: String::new(),
        }),
        connect_timeout: Some(duration(c.connect_timeout)),
        lb_policy: lb_policy as i32,
        // Panic mode would send traffic to endpoints flotilla knows are down as soon as fewer
        // than half are healthy. With 0, healthy endpoints take all traffic while any remain;
        // the all-down case is handled by flotilla publishing every endpoint (see `endpoint`).
        common_lb_config: Some(CommonLbConfig {
            healthy_panic_threshold: Some(Percent {
                value: f64::from(c.panic_threshold),
            }),
            ..Default::default()
        }),
        outlier_detection: c.outlier_detection.as_ref().map(outlier_detection),
        circuit_breakers: c.circuit_breakers.as_ref().map(circuit_breakers),
        transport_socket: c
            .tls
            .as_ref()
            .map(|t| super::tls::upstream(t, c.upstream_protocol, eds_source)),
        ..Default::default()
    };
    if let Resolve::Envoy { logical } = c.resolve {
        // Envoy resolves the names itself: the endpoints go inline, not over EDS.
        let kind = if logical {
            DiscoveryType::LogicalDns
        } else {
            DiscoveryType::StrictDns
        };
        cluster.cluster_discovery_type = Some(ClusterDiscoveryType::Type(kind as i32));
        cluster.eds_cluster_config = None;
        cluster.load_assignment = Some(super::endpoint::dns_assignment(c));
        cluster.typed_dns_resolver_config = dns_resolver(dns_servers);
    }
    if c.upstream_protocol == UpstreamProtocol::Http2 {
        let options = HttpProtocolOptions {
            upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
                ExplicitHttpConfig {
                    protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(
                        Http2ProtocolOptions::default(),
                    )),
                },
            )),
            ..Default::default()
        };
        cluster
            .typed_extension_protocol_options
            .insert(HTTP_PROTOCOL_OPTIONS.to_string(), any(&options));
    }
    cluster
}

/// Envoy's and gRPC's default longest ejection (`max_ejection_time`).
const MAX_EJECTION_TIME: std::time::Duration = std::time::Duration::from_secs(300);

fn outlier_detection(o: &model::OutlierDetection) -> OutlierDetection {
    // Envoy enforces consecutive-5xx ejections by default but only counts gateway failures
    // (which include connect failures) unless told to enforce them: both are set explicitly.
    let enforcing = |on: Option<u32>| u32_value(if on.is_some() { 100 } else { 0 });
    OutlierDetection {
        consecutive_5xx: o.consecutive_5xx.map(u32_value),
        enforcing_consecutive_5xx: Some(enforcing(o.consecutive_5xx)),
        consecutive_gateway_failure: o.consecutive_gateway_failure.map(u32_value),
        enforcing_consecutive_gateway_failure: Some(enforcing(o.consecutive_gateway_failure)),
        interval: Some(duration(o.interval)),
        base_ejection_time: Some(duration(o.base_ejection_time)),
        max_ejection_percent: Some(u32_value(o.max_ejection_percent)),
        // Every other field proxyless gRPC reads (gRFC A50), set explicitly: gRPC turns
        // success-rate ejection on (enforcing 100) when `enforcing_success_rate` is unset, and
        // at least one gRPC library fails on the unset success-rate fields. flotilla's YAML
        // configures consecutive failures only, so success-rate and failure-percentage
        // ejection are off, with the documented defaults for their parameters.
        max_ejection_time: Some(duration(o.base_ejection_time.max(MAX_EJECTION_TIME))),
        success_rate_stdev_factor: Some(u32_value(1900)),
        enforcing_success_rate: Some(u32_value(0)),
        success_rate_minimum_hosts: Some(u32_value(5)),
        success_rate_request_volume: Some(u32_value(100)),
        failure_percentage_threshold: Some(u32_value(85)),
        enforcing_failure_percentage: Some(u32_value(0)),
        failure_percentage_minimum_hosts: Some(u32_value(5)),
        failure_percentage_request_volume: Some(u32_value(50)),
        ..Default::default()
    }
}

fn circuit_breakers(c: &model::CircuitBreakers) -> CircuitBreakers {
    CircuitBreakers {
        thresholds: vec![Thresholds {
            priority: RoutingPriority::Default as i32,
            max_connections: c.max_connections.map(u32_value),
            max_pending_requests: c.max_pending_requests.map(u32_value),
            max_requests: c.max_requests.map(u32_value),
            max_retries: c.max_retries.map(u32_value),
            ..Default::default()
        }],
        ..Default::default()
    }
}
