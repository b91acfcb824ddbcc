//! `auth`: Envoy's jwt_authn and ext_authz HTTP filters on a listener, and the per-route
//! settings that switch them on or off route by route.
//!
//! A route runs the nearest `auth` written over it (its own, its host's, its listener's).
//! Every distinct JWT configuration of a listener is one provider of one jwt_authn filter,
//! and a route names its provider's requirement (or disables the filter). Every distinct
//! external configuration is one ext_authz filter (a filter talks to one service); a route
//! disables every one but its own.

use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{
    Cluster, cluster::ClusterDiscoveryType, cluster::DiscoveryType, cluster::DnsLookupFamily,
};
use envoy_types::pb::envoy::config::core::v3::{
    ConfigSource, DataSource, GrpcService, HttpUri, data_source, grpc_service, http_uri,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::extensions::filters::http::ext_authz::v3::{
    ExtAuthz, ExtAuthzPerRoute, HttpService, ext_authz, ext_authz_per_route,
};
use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3::{
    JwksAsyncFetch, JwtAuthentication, JwtClaimToHeader, JwtProvider, JwtRequirement,
    PerRouteConfig, RemoteJwks, jwt_provider, jwt_requirement, per_route_config,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter, http_filter,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    ListStringMatcher, StringMatcher, string_matcher,
};
use envoy_types::pb::google::protobuf::Any;

use super::{any, duration};
use crate::config::model::{
    self, Auth, AuthProtocol, ExternalAuth, Jwks, Jwt, UpstreamProtocol, UpstreamTls,
};

pub(super) const JWT_FILTER: &str = "envoy.filters.http.jwt_authn";
const EXT_AUTHZ_FILTER: &str = "envoy.filters.http.ext_authz";
const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The auth configurations of one listener, each with the name Envoy knows it by.
pub(super) struct ListenerAuth<'l> {
    jwts: Vec<&'l Jwt>,
    externals: Vec<&'l ExternalAuth>,
}

impl<'l> ListenerAuth<'l> {
    pub(super) fn of(l: &'l model::Listener) -> ListenerAuth<'l> {
        let mut out = ListenerAuth {
            jwts: Vec::new(),
            externals: Vec::new(),
        };
        for a in l.auths() {
            match a {
                Auth::Jwt(j) if !out.jwts.contains(&j) => out.jwts.push(j),
                Auth::External(e) if !out.externals.contains(&e) => out.externals.push(e),
                _ => {}
            }
        }
        out
    }

    /// The filters, JWT first (an authorization service may then read verified claims).
    pub(super) fn filters(&self) -> Vec<HttpFilter> {
        let mut out = Vec::new();
        if !self.jwts.is_empty() {
            let config = JwtAuthentication {
                providers: self
                    .jwts
                    .iter()
                    .enumerate()
                    .map(|(i, j)| (provider_name(i), provider(j)))
                    .collect(),
                requirement_map: (0..self.jwts.len())
                    .map(|i| {
                        (
                            provider_name(i),
                            JwtRequirement {
                                requires_type: Some(jwt_requirement::RequiresType::ProviderName(
                                    provider_name(i),
                                )),
                            },
                        )
                    })
                    .collect(),
                ..Default::default()
            };
            out.push(filter(JWT_FILTER, any(&config)));
        }
        for (i, e) in self.externals.iter().enumerate() {
            out.push(filter(&ext_authz_name(i), any(&ext_authz(e))));
        }
        out
    }

    /// `(filter name, per-route config)` for a route whose nearest `auth` is `auth`.
    pub(super) fn per_route(&self, auth: Option<&Auth>) -> Vec<(String, Any)> {
        let mut out = Vec::new();
        if !self.jwts.is_empty() {
            let specifier = match auth {
                Some(Auth::Jwt(j)) => {
                    let i = self.jwts.iter().position(|x| x == &j).unwrap_or(0);
                    per_route_config::RequirementSpecifier::RequirementName(provider_name(i))
                }
                _ => per_route_config::RequirementSpecifier::Disabled(true),
            };
            out.push((
                JWT_FILTER.to_string(),
                any(&PerRouteConfig {
                    requirement_specifier: Some(specifier),
                }),
            ));
        }
        for (i, e) in self.externals.iter().enumerate() {
            if !matches!(auth, Some(Auth::External(mine)) if mine == *e) {
                out.push((
                    ext_authz_name(i),
                    any(&ExtAuthzPerRoute {
                        r#override: Some(ext_authz_per_route::Override::Disabled(true)),
                    }),
                ));
            }
        }
        out
    }
}

fn provider_name(i: usize) -> String {
    format!("jwt{}", i + 1)
}

fn ext_authz_name(i: usize) -> String {
    match i {
        0 => EXT_AUTHZ_FILTER.to_string(),
        _ => format!("{EXT_AUTHZ_FILTER}.{}", i + 1),
    }
}

fn filter(name: &str, config: Any) -> HttpFilter {
    HttpFilter {
        name: name.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(config)),
        ..Default::default()
    }
}

fn provider(j: &Jwt) -> JwtProvider {
    let source = match &j.jwks {
        Jwks::File { json, .. } => jwt_provider::JwksSourceSpecifier::LocalJwks(DataSource {
            specifier: Some(data_source::Specifier::InlineString(json.clone())),
            ..Default::default()
        }),
        Jwks::Remote(r) => jwt_provider::JwksSourceSpecifier::RemoteJwks(RemoteJwks {
            http_uri: Some(HttpUri {
                uri: r.url.clone(),
                timeout: Some(duration(JWKS_FETCH_TIMEOUT)),
                http_upstream_type: Some(http_uri::HttpUpstreamType::Cluster(r.cluster_name())),
            }),
            cache_duration: Some(duration(r.cache)),
            // Fetched when the listener starts, not on the first request.
            async_fetch: Some(JwksAsyncFetch::default()),
            ..Default::default()
        }),
    };
    JwtProvider {
        issuer: j.issuer.clone(),
        audiences: j.audiences.clone(),
        claim_to_headers: j
            .claims_to_headers
            .iter()
            .map(|(claim, header)| JwtClaimToHeader {
                header_name: header.clone(),
                claim_name: claim.clone(),
                ..Default::default()
            })
            .collect(),
        jwks_source_specifier: Some(source),
        ..Default::default()
    }
}

fn ext_authz(e: &ExternalAuth) -> ExtAuthz {
    let services = match e.protocol {
        AuthProtocol::Grpc => ext_authz::Services::GrpcService(GrpcService {
            target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
                grpc_service::EnvoyGrpc {
                    cluster_name: e.cluster.clone(),
                    ..Default::default()
                },
            )),
            timeout: Some(duration(e.timeout)),
            ..Default::default()
        }),
        AuthProtocol::Http => ext_authz::Services::HttpService(HttpService {
            server_uri: Some(HttpUri {
                // Envoy takes the host it sends from here; the cluster says where it goes.
                uri: format!("http://{}", e.cluster),
                timeout: Some(duration(e.timeout)),
                http_upstream_type: Some(http_uri::HttpUpstreamType::Cluster(e.cluster.clone())),
            }),
            ..Default::default()
        }),
    };
    let exact = |h: &String| StringMatcher {
        match_pattern: Some(string_matcher::MatchPattern::Exact(h.clone())),
        ..Default::default()
    };
    ExtAuthz {
        services: Some(services),
        // V3 is the only version Envoy 1.40 speaks; set explicitly all the same.
        transport_api_version: 2,
        failure_mode_allow: e.failure_allow,
        allowed_headers: (!e.headers.is_empty()).then(|| ListStringMatcher {
            patterns: e.headers.iter().map(exact).collect(),
        }),
        ..Default::default()
    }
}

/// The clusters Envoy fetches remote JWKS through: DNS-resolved by Envoy (with serve's
/// `--dns-server` when given), TLS to the URL's host (its certificate checked for that name
/// against `jwks_ca`, by default the system's roots).
pub(super) fn jwks_clusters(
    l: &model::Listener,
    source: &ConfigSource,
    dns_servers: &[std::net::SocketAddr],
) -> Vec<Cluster> {
    let mut out: Vec<Cluster> = Vec::new();
    for a in l.auths() {
        let Auth::Jwt(Jwt {
            jwks: Jwks::Remote(r),
            ..
        }) = a
        else {
            continue;
        };
        let name = r.cluster_name();
        if out.iter().any(|c| c.name == name) {
            continue;
        }
        let tls = UpstreamTls {
            sni: Some(r.host.clone()),
            ca: r.ca.clone(),
            client_certificate: None,
        };
        out.push(Cluster {
            name: name.clone(),
            cluster_discovery_type: Some(ClusterDiscoveryType::Type(
                DiscoveryType::LogicalDns as i32,
            )),
            dns_lookup_family: DnsLookupFamily::V4Preferred as i32,
            typed_dns_resolver_config: super::cluster::dns_resolver(dns_servers),
            connect_timeout: Some(duration(JWKS_FETCH_TIMEOUT)),
            load_assignment: Some(ClusterLoadAssignment {
                cluster_name: name,
                endpoints: vec![LocalityLbEndpoints {
                    lb_endpoints: vec![LbEndpoint {
                        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                            address: Some(crate::envoy::named_address(&r.host, r.port)),
                            ..Default::default()
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }),
            transport_socket: Some(super::tls::upstream(&tls, UpstreamProtocol::Http1, source)),
            ..Default::default()
        });
    }
    out
}
