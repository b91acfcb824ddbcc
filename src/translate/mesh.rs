//! The mesh's resources: for each service, the inbound listener of each of its instances
//! (mTLS from the trust domain, RBAC on the caller's SPIFFE ID, forward to the app), the
//! cluster of its app (127.0.0.1:port), and for each call an outbound listener on
//! 127.0.0.1:local_port with a cluster to the called service's instances over mTLS that checks
//! the callee's SPIFFE ID. Secrets: each service's workload certificate and the trust bundle.
//!
//! Which sidecar receives what is `fleet::select_sidecar`'s: a service's own resources, those
//! of its calls, and only its own instance's inbound listener.

use std::net::SocketAddr;

use envoy_types::pb::envoy::config::cluster::v3::{
    Cluster, OutlierDetection,
    cluster::{ClusterDiscoveryType, DiscoveryType, LbPolicy},
};
use envoy_types::pb::envoy::config::core::v3::{ConfigSource, TransportSocket};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use envoy_types::pb::envoy::config::rbac::v3::{
    Permission, Policy, Principal, Rbac as RbacRules, permission, principal, rbac,
};
use envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher, RetryPolicy, Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
    header_matcher, retry_policy, route, route_action, route_match,
};
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac as HttpRbac;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, http_connection_manager, http_filter,
};
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac as NetworkRbac;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    TcpProxy, tcp_proxy::ClusterSpecifier,
};
use envoy_types::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, Secret,
    SubjectAltNameMatcher, TlsCertificate, UpstreamTlsContext,
    common_tls_context::{CombinedCertificateValidationContext, ValidationContextType},
    secret,
    subject_alt_name_matcher::SanType,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    PathMatcher, StringMatcher, path_matcher, string_matcher,
};
use envoy_types::pb::google::protobuf::BoolValue;

use super::mesh_edges::caller_stat_prefix;
use super::{Translation, any, duration, u32_value};
use crate::config::Config;
use crate::config::model::{self, Mesh, MeshDefault, MeshOutbound, MeshProtocol, service_cluster};
use crate::envoy::socket_address;
use crate::identity::workload::{MeshIdentities, service_id};
use crate::overlay::Overlay;

const TLS_SOCKET: &str = "envoy.transport_sockets.tls";
const HCM_FILTER: &str = "envoy.filters.network.http_connection_manager";
const TCP_PROXY_FILTER: &str = "envoy.filters.network.tcp_proxy";
const HTTP_RBAC_FILTER: &str = "envoy.filters.http.rbac";
const NETWORK_RBAC_FILTER: &str = "envoy.filters.network.rbac";
const ROUTER_FILTER: &str = "envoy.filters.http.router";

/// The Secret every sidecar checks its peers' certificates against.
pub const TRUST_BUNDLE: &str = "mesh-trust-bundle";

/// The Secret with a service's certificate and key: sent only to that service's sidecars.
pub fn workload_secret(service: &str) -> String {
    format!("mesh-workload:{service}")
}

/// Whether the endpoints of `cluster` are more than a ClusterLoadAssignment: each instance of
/// a callable mesh service is also an inbound listener, so a change of its instances cannot
/// take the endpoint fast path.
pub fn endpoints_shape_listeners(config: &crate::config::Config, cluster: &str) -> bool {
    crate::config::model::cluster_service(cluster).is_some_and(|service| {
        config
            .mesh
            .as_ref()
            .and_then(|m| m.services.get(service))
            .is_some_and(|s| s.port.is_some())
    })
}

/// The inbound listener of one instance of `service`.
pub fn inbound_listener(service: &str, address: SocketAddr) -> String {
    format!("mesh-inbound:{service}:{address}")
}

/// The cluster of a service's app, behind its sidecar.
pub fn local_cluster(service: &str) -> String {
    format!("mesh-local:{service}")
}

/// The outbound listener, and the cluster, of `caller`'s calls to `called`.
pub fn outbound_listener(caller: &str, called: &str) -> String {
    format!("mesh-outbound:{caller}:{called}")
}

pub fn call_cluster(caller: &str, called: &str) -> String {
    format!("mesh-call:{caller}:{called}")
}

/// `caller`'s listener at `called`'s VIP: it binds no port; a transparent sidecar's outbound
/// listener (`flotilla bootstrap --transparent`) hands it the calls whose original
/// destination is the VIP, as Istio's per-service outbound listeners.
pub fn vip_listener(caller: &str, called: &str) -> String {
    format!("mesh-vip:{caller}:{called}")
}

/// The cluster a transparent sidecar sends calls to addresses that are no service's VIP to:
/// their original destination (`outbound: passthrough`), or nowhere (`registry_only`). Its
/// name is in the bootstrap's outbound listener, so it is the same for every service.
pub const PASSTHROUGH_CLUSTER: &str = crate::envoy::transparent::PASSTHROUGH_CLUSTER;

/// Stat prefix of a service's inbound traffic: Envoy counts RBAC decisions under
/// `http.<prefix>.rbac.{allowed,denied}` (HTTP) and `<prefix>.rbac.{allowed,denied}` (TCP).
pub fn inbound_stat_prefix(service: &str) -> String {
    format!("mesh_inbound_{service}")
}

/// The trust domain the translation uses: the one the certificates were minted in, else the
/// config's, else flotilla's default (what `render` shows without a running server).
pub fn trust_domain<'a>(mesh: &'a Mesh, identities: Option<&'a MeshIdentities>) -> &'a str {
    identities
        .map(|i| i.trust_domain.as_str())
        .or(mesh.trust_domain.as_deref())
        .unwrap_or(crate::identity::DEFAULT_TRUST_DOMAIN)
}

/// Adds every mesh resource to `out`.
pub(super) fn add(
    config: &Config,
    overlay: &Overlay,
    source: &ConfigSource,
    out: &mut Translation,
) {
    let Some(mesh) = &config.mesh else { return };
    let identities = overlay.mesh.as_deref();
    let td = trust_domain(mesh, identities);
    if let Some(ids) = identities {
        out.secrets.insert(
            TRUST_BUNDLE.to_string(),
            Secret {
                name: TRUST_BUNDLE.to_string(),
                r#type: Some(secret::Type::ValidationContext(
                    CertificateValidationContext {
                        trusted_ca: Some(super::tls::inline(&ids.bundle_pem)),
                        ..Default::default()
                    },
                )),
            },
        );
        for (service, w) in &ids.workloads {
            if !mesh.services.contains_key(service) {
                continue;
            }
            let name = workload_secret(service);
            out.secrets.insert(
                name.clone(),
                Secret {
                    name,
                    r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
                        certificate_chain: Some(super::tls::inline(&w.cert_pem)),
                        private_key: Some(super::tls::inline(w.key.expose())),
                        ..Default::default()
                    })),
                },
            );
        }
    }
    for (name, s) in &mesh.services {
        let Some(port) = s.port else { continue };
        let local = local_cluster(name);
        out.clusters
            .insert(local.clone(), local_app(&local, port, s.protocol));
        let instances = config.clusters.get(&service_cluster(name));
        for (e, _) in instances
            .map(|c| overlay.endpoints(c).collect::<Vec<_>>())
            .unwrap_or_default()
        {
            let listener = inbound_listener(name, e.address);
            out.listeners.insert(
                listener.clone(),
                inbound(mesh, td, name, s.protocol, &listener, e.address, source),
            );
            out.listener_clusters.insert(listener, vec![local.clone()]);
        }
    }
    out.clusters
        .insert(PASSTHROUGH_CLUSTER.to_string(), passthrough(mesh.outbound));
    for (caller, s) in &mesh.services {
        for (called, local_port) in &s.calls {
            let (Some(target), Some(instances)) = (
                mesh.services.get(called),
                config.clusters.get(&service_cluster(called)),
            ) else {
                continue;
            };
            let cluster = call_cluster(caller, called);
            out.clusters.insert(
                cluster.clone(),
                call(
                    td,
                    caller,
                    called,
                    target.protocol,
                    instances,
                    &cluster,
                    source,
                ),
            );
            let mut assignment: ClusterLoadAssignment =
                super::endpoint::load_assignment(instances, overlay);
            assignment.cluster_name = cluster.clone();
            out.endpoints.insert(cluster.clone(), assignment);
            if let Some(port) = local_port {
                let listener = outbound_listener(caller, called);
                let address = SocketAddr::from(([127, 0, 0, 1], *port));
                out.listeners.insert(
                    listener.clone(),
                    outbound(&listener, address, target.protocol, &cluster, true),
                );
                out.listener_clusters
                    .insert(listener, vec![cluster.clone()]);
            }
            if let Some(vip) = target.vip {
                let listener = vip_listener(caller, called);
                out.listeners.insert(
                    listener.clone(),
                    outbound(&listener, vip, target.protocol, &cluster, false),
                );
                out.listener_clusters.insert(listener, vec![cluster]);
            }
        }
    }
}

/// The app behind a sidecar, on loopback.
fn local_app(name: &str, port: u16, protocol: MeshProtocol) -> Cluster {
    let c = model::Cluster {
        name: name.to_string(),
        upstream_protocol: match protocol {
            MeshProtocol::Grpc => model::UpstreamProtocol::Http2,
            _ => model::UpstreamProtocol::Http1,
        },
        ..instances_like(name)
    };
    let mut cluster = super::cluster::cluster(&c, &ConfigSource::default(), &[]);
    cluster.cluster_discovery_type = Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32));
    cluster.eds_cluster_config = None;
    cluster.load_assignment = Some(ClusterLoadAssignment {
        cluster_name: name.to_string(),
        endpoints: vec![envoy_types::pb::envoy::config::endpoint::v3::LocalityLbEndpoints {
            lb_endpoints: vec![envoy_types::pb::envoy::config::endpoint::v3::LbEndpoint {
                host_identifier: Some(
                    envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier::Endpoint(
                        envoy_types::pb::envoy::config::endpoint::v3::Endpoint {
                            address: Some(socket_address(SocketAddr::from(([127, 0, 0, 1], port)))),
                            ..Default::default()
                        },
                    ),
                ),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    });
    cluster
}

fn instances_like(name: &str) -> model::Cluster {
    model::Cluster {
        name: name.to_string(),
        policy: model::Policy::RoundRobin,
        endpoints: Vec::new(),
        connect_timeout: std::time::Duration::from_secs(1),
        upstream_protocol: model::UpstreamProtocol::Http1,
        health_check: None,
        outlier_detection: None,
        circuit_breakers: None,
        affinity: None,
        panic_threshold: 0,
        registrations: Some(model::Registrations::default()),
        hostnames: Vec::new(),
        resolve: Default::default(),
        tls: None,
    }
}

/// A caller's cluster to a called service's instances: their endpoints by EDS, mTLS with the
/// caller's certificate, and the callee must prove it is `spiffe://<td>/service/<called>`.
fn call(
    td: &str,
    caller: &str,
    called: &str,
    protocol: MeshProtocol,
    instances: &model::Cluster,
    name: &str,
    source: &ConfigSource,
) -> Cluster {
    let c = model::Cluster {
        name: name.to_string(),
        ..instances.clone()
    };
    let mut cluster = super::cluster::cluster(&c, source, &[]);
    // An instance that stops answering is ejected before the checker's verdict arrives.
    cluster.outlier_detection = Some(OutlierDetection {
        consecutive_gateway_failure: Some(u32_value(2)),
        enforcing_consecutive_gateway_failure: Some(u32_value(100)),
        consecutive_5xx: Some(u32_value(5)),
        enforcing_consecutive_5xx: Some(u32_value(0)),
        interval: Some(duration(std::time::Duration::from_secs(1))),
        base_ejection_time: Some(duration(std::time::Duration::from_secs(5))),
        max_ejection_percent: Some(u32_value(100)),
        ..Default::default()
    });
    let alpn = if protocol == MeshProtocol::Grpc {
        "h2"
    } else {
        "http/1.1"
    };
    let context = UpstreamTlsContext {
        common_tls_context: Some(common(
            caller,
            vec![exact_uri(&service_id(td, called))],
            vec![alpn.to_string()],
            source,
        )),
        ..Default::default()
    };
    cluster.transport_socket = Some(tls_socket(any(&context)));
    cluster
}

/// What every mesh TLS context shares: the service's own certificate, peers checked against
/// the trust bundle and `sans`.
fn common(
    service: &str,
    sans: Vec<SubjectAltNameMatcher>,
    alpn: Vec<String>,
    source: &ConfigSource,
) -> CommonTlsContext {
    CommonTlsContext {
        tls_certificate_sds_secret_configs: vec![super::tls::sds_config(
            &workload_secret(service),
            source,
        )],
        alpn_protocols: alpn,
        validation_context_type: Some(ValidationContextType::CombinedValidationContext(
            CombinedCertificateValidationContext {
                default_validation_context: Some(CertificateValidationContext {
                    match_typed_subject_alt_names: sans,
                    ..Default::default()
                }),
                validation_context_sds_secret_config: Some(super::tls::sds_config(
                    TRUST_BUNDLE,
                    source,
                )),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

fn uri_matcher(pattern: string_matcher::MatchPattern) -> SubjectAltNameMatcher {
    SubjectAltNameMatcher {
        san_type: SanType::Uri as i32,
        matcher: Some(StringMatcher {
            match_pattern: Some(pattern),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn exact_uri(id: &str) -> SubjectAltNameMatcher {
    uri_matcher(string_matcher::MatchPattern::Exact(id.to_string()))
}

fn tls_socket(config: envoy_types::pb::google::protobuf::Any) -> TransportSocket {
    TransportSocket {
        name: TLS_SOCKET.to_string(),
        config_type: Some(
            envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType::TypedConfig(
                config,
            ),
        ),
    }
}

/// One instance's inbound listener: mTLS from any workload of the trust domain, the `allow`
/// rules on the caller's SPIFFE ID, then the app on 127.0.0.1.
fn inbound(
    mesh: &Mesh,
    td: &str,
    service: &str,
    protocol: MeshProtocol,
    name: &str,
    address: SocketAddr,
    source: &ConfigSource,
) -> Listener {
    let context = DownstreamTlsContext {
        common_tls_context: Some(common(
            service,
            vec![uri_matcher(string_matcher::MatchPattern::Prefix(format!(
                "spiffe://{td}/service/"
            )))],
            match protocol {
                MeshProtocol::Tcp => Vec::new(),
                _ => vec!["h2".to_string(), "http/1.1".to_string()],
            },
            source,
        )),
        require_client_certificate: Some(BoolValue { value: true }),
        ..Default::default()
    };
    let rules = rbac_rules(mesh, td, service, protocol);
    // Before the enforcing filter, so that they see the calls it refuses.
    let shadows = super::mesh_edges::denied_from(mesh, td, service, protocol);
    let prefix = inbound_stat_prefix(service);
    let filters = if protocol.is_http() {
        let hcm = HttpConnectionManager {
            stat_prefix: prefix,
            codec_type: http_connection_manager::CodecType::Auto as i32,
            // The callee learns who called: the caller's SPIFFE ID, set by this sidecar from
            // the verified certificate (anything the caller sent is replaced).
            forward_client_cert_details:
                http_connection_manager::ForwardClientCertDetails::SanitizeSet as i32,
            set_current_client_cert_details: Some(
                http_connection_manager::SetCurrentClientCertDetails {
                    uri: true,
                    ..Default::default()
                },
            ),
            route_specifier: Some(http_connection_manager::RouteSpecifier::RouteConfig(
                route_config(name, &local_cluster(service), false),
            )),
            // RBAC matches the path the app will act on: `/public/../admin` passed an
            // `allow` of `/public/*` and reached the app as `/admin` (Envoy leaves paths as
            // sent by default). Dot segments are resolved and slashes merged before RBAC,
            // and the app receives that path; an escaped slash (%2F, %5C), which apps read
            // differently, is refused with 400.
            normalize_path: Some(BoolValue { value: true }),
            merge_slashes: true,
            path_with_escaped_slashes_action:
                http_connection_manager::PathWithEscapedSlashesAction::RejectRequest as i32,
            http_filters: shadows
                .into_iter()
                .map(|(caller, shadow)| {
                    http_filter_of(
                        HTTP_RBAC_FILTER,
                        any(&HttpRbac {
                            shadow_rules: Some(shadow),
                            shadow_rules_stat_prefix: caller_stat_prefix(&caller),
                            ..Default::default()
                        }),
                    )
                })
                .chain([
                    http_filter_of(
                        HTTP_RBAC_FILTER,
                        any(&HttpRbac {
                            rules: Some(rules),
                            ..Default::default()
                        }),
                    ),
                    http_filter_of(ROUTER_FILTER, any(&Router::default())),
                ])
                .collect(),
            ..Default::default()
        };
        vec![network_filter(HCM_FILTER, any(&hcm))]
    } else {
        shadows
            .into_iter()
            .map(|(caller, shadow)| {
                network_filter(
                    NETWORK_RBAC_FILTER,
                    any(&NetworkRbac {
                        shadow_rules: Some(shadow),
                        shadow_rules_stat_prefix: caller_stat_prefix(&caller),
                        stat_prefix: format!("{prefix}."),
                        ..Default::default()
                    }),
                )
            })
            .chain([
                network_filter(
                    NETWORK_RBAC_FILTER,
                    any(&NetworkRbac {
                        rules: Some(rules),
                        stat_prefix: format!("{prefix}."),
                        ..Default::default()
                    }),
                ),
                network_filter(
                    TCP_PROXY_FILTER,
                    any(&tcp_proxy(&prefix, &local_cluster(service))),
                ),
            ])
            .collect()
    };
    Listener {
        name: name.to_string(),
        address: Some(socket_address(address)),
        filter_chains: vec![FilterChain {
            filters,
            transport_socket: Some(tls_socket(any(&context))),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The rules of calls into `service`: one ALLOW policy per rule (or one allowing every
/// workload with `default: allow`); a call no policy matches is denied.
fn rbac_rules(mesh: &Mesh, td: &str, service: &str, protocol: MeshProtocol) -> RbacRules {
    let mut policies = std::collections::HashMap::new();
    if mesh.default == MeshDefault::Allow {
        policies.insert(
            "default-allow".to_string(),
            Policy {
                permissions: vec![any_permission()],
                principals: vec![Principal {
                    identifier: Some(principal::Identifier::Any(true)),
                }],
                ..Default::default()
            },
        );
    }
    for (i, rule) in mesh
        .allow
        .iter()
        .enumerate()
        .filter(|(_, r)| r.to == service)
    {
        policies.insert(
            format!("allow-{i}-from-{}", rule.from),
            Policy {
                permissions: vec![rule_permission(rule, protocol)],
                principals: vec![caller_principal(td, &rule.from)],
                ..Default::default()
            },
        );
    }
    RbacRules {
        action: rbac::Action::Allow as i32,
        policies,
        ..Default::default()
    }
}

/// The calling workload `from`, by the SPIFFE ID in its verified certificate.
pub(super) fn caller_principal(td: &str, from: &str) -> Principal {
    Principal {
        identifier: Some(principal::Identifier::Authenticated(
            principal::Authenticated {
                principal_name: Some(StringMatcher {
                    match_pattern: Some(string_matcher::MatchPattern::Exact(service_id(td, from))),
                    ..Default::default()
                }),
            },
        )),
    }
}

/// What a rule allows: its methods and paths (HTTP only), or anything.
pub(super) fn rule_permission(rule: &model::AllowRule, protocol: MeshProtocol) -> Permission {
    let mut and = Vec::new();
    if protocol.is_http() && !rule.methods.is_empty() {
        and.push(or_permissions(
            rule.methods.iter().map(|m| method(m)).collect(),
        ));
    }
    if protocol.is_http() && !rule.paths.is_empty() {
        and.push(or_permissions(rule.paths.iter().map(|p| path(p)).collect()));
    }
    match and.len() {
        0 => any_permission(),
        1 => and.remove(0),
        _ => Permission {
            rule: Some(permission::Rule::AndRules(permission::Set { rules: and })),
        },
    }
}

pub(super) fn any_permission() -> Permission {
    Permission {
        rule: Some(permission::Rule::Any(true)),
    }
}

pub(super) fn or_permissions(rules: Vec<Permission>) -> Permission {
    Permission {
        rule: Some(permission::Rule::OrRules(permission::Set { rules })),
    }
}

fn method(m: &str) -> Permission {
    Permission {
        rule: Some(permission::Rule::Header(HeaderMatcher {
            name: ":method".to_string(),
            header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(
                StringMatcher {
                    match_pattern: Some(string_matcher::MatchPattern::Exact(m.to_string())),
                    ..Default::default()
                },
            )),
            ..Default::default()
        })),
    }
}

fn path(p: &str) -> Permission {
    let pattern = match p.strip_suffix('*') {
        Some(prefix) => string_matcher::MatchPattern::Prefix(prefix.to_string()),
        None => string_matcher::MatchPattern::Exact(p.to_string()),
    };
    Permission {
        rule: Some(permission::Rule::UrlPath(PathMatcher {
            rule: Some(path_matcher::Rule::Path(StringMatcher {
                match_pattern: Some(pattern),
                ..Default::default()
            })),
        })),
    }
}

/// The passthrough cluster: the original destination of the connection (ORIGINAL_DST), or,
/// with `registry_only`, a cluster with no endpoints (the connection is closed, and counted
/// under `cluster.mesh-passthrough.upstream_cx_none_healthy`).
fn passthrough(outbound: MeshOutbound) -> Cluster {
    let (discovery, lb) = match outbound {
        MeshOutbound::Passthrough => (DiscoveryType::OriginalDst, LbPolicy::ClusterProvided),
        MeshOutbound::RegistryOnly => (DiscoveryType::Static, LbPolicy::RoundRobin),
    };
    Cluster {
        name: PASSTHROUGH_CLUSTER.to_string(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(discovery as i32)),
        lb_policy: lb as i32,
        connect_timeout: Some(duration(std::time::Duration::from_secs(5))),
        load_assignment: (outbound == MeshOutbound::RegistryOnly).then(|| ClusterLoadAssignment {
            cluster_name: PASSTHROUGH_CLUSTER.to_string(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A caller's outbound listener: plaintext from the app, to the called service. On loopback
/// at the call's local port (`bind`), or at the called service's VIP without binding it (a
/// transparent sidecar's outbound listener hands it the connections to the VIP).
fn outbound(
    name: &str,
    address: SocketAddr,
    protocol: MeshProtocol,
    cluster: &str,
    bind: bool,
) -> Listener {
    let filter = if protocol.is_http() {
        let hcm = HttpConnectionManager {
            stat_prefix: name.replace([':', '.'], "_"),
            codec_type: http_connection_manager::CodecType::Auto as i32,
            route_specifier: Some(http_connection_manager::RouteSpecifier::RouteConfig(
                route_config(name, cluster, true),
            )),
            http_filters: vec![http_filter_of(ROUTER_FILTER, any(&Router::default()))],
            ..Default::default()
        };
        network_filter(HCM_FILTER, any(&hcm))
    } else {
        network_filter(
            TCP_PROXY_FILTER,
            any(&tcp_proxy(&name.replace([':', '.'], "_"), cluster)),
        )
    };
    Listener {
        name: name.to_string(),
        address: Some(socket_address(address)),
        filter_chains: vec![FilterChain {
            filters: vec![filter],
            ..Default::default()
        }],
        bind_to_port: (!bind).then_some(BoolValue { value: false }),
        ..Default::default()
    }
}

/// Every request to `cluster`; an outbound route retries what never reached an app (a
/// connection refused or reset by an instance that went away) on another instance.
fn route_config(name: &str, cluster: &str, retries: bool) -> RouteConfiguration {
    let retry_policy = retries.then(|| RetryPolicy {
        retry_on: "connect-failure,reset,refused-stream,unavailable".to_string(),
        num_retries: Some(u32_value(3)),
        retry_host_predicate: vec![retry_policy::RetryHostPredicate {
            name: "envoy.retry_host_predicates.previous_hosts".to_string(),
            config_type: Some(retry_policy::retry_host_predicate::ConfigType::TypedConfig(
                any(&PreviousHostsPredicate::default()),
            )),
        }],
        host_selection_retry_max_attempts: 5,
        ..Default::default()
    });
    RouteConfiguration {
        name: name.to_string(),
        virtual_hosts: vec![VirtualHost {
            name: name.to_string(),
            domains: vec!["*".to_string()],
            routes: vec![Route {
                r#match: Some(RouteMatch {
                    path_specifier: Some(route_match::PathSpecifier::Prefix("/".to_string())),
                    ..Default::default()
                }),
                action: Some(route::Action::Route(RouteAction {
                    cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(
                        cluster.to_string(),
                    )),
                    // gRPC streams and long calls are the app's to bound.
                    timeout: Some(duration(std::time::Duration::ZERO)),
                    retry_policy,
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn tcp_proxy(stat_prefix: &str, cluster: &str) -> TcpProxy {
    TcpProxy {
        stat_prefix: stat_prefix.to_string(),
        cluster_specifier: Some(ClusterSpecifier::Cluster(cluster.to_string())),
        ..Default::default()
    }
}

fn http_filter_of(name: &str, config: envoy_types::pb::google::protobuf::Any) -> HttpFilter {
    HttpFilter {
        name: name.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(config)),
        ..Default::default()
    }
}

fn network_filter(name: &str, config: envoy_types::pb::google::protobuf::Any) -> Filter {
    Filter {
        name: name.to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(config)),
    }
}
