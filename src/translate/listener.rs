//! `Listener`: an HTTP connection manager on the configured address, routes fetched by RDS;
//! for proxyless gRPC clients the same manager as an `api_listener`, with no address.

use envoy_types::pb::envoy::config::core::v3::ConfigSource;
use envoy_types::pb::envoy::config::listener::v3::{
    ApiListener, Filter, FilterChain, Listener, filter,
};
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::Cors;
use envoy_types::pb::envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::http::stateful_session::v3::StatefulSession;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager, http_filter,
};
use envoy_types::pb::google::protobuf::BoolValue;

use super::route::RATE_LIMIT_STAT_PREFIX;
use super::{Transport, any};
use crate::config::Config;
use crate::config::model::{self, Affinity, ListenerKind};
use crate::envoy::socket_address;

pub(super) const STATEFUL_SESSION_FILTER: &str = "envoy.filters.http.stateful_session";
pub(super) const RATE_LIMIT_FILTER: &str = "envoy.filters.http.local_ratelimit";
pub(super) const CORS_FILTER: &str = "envoy.filters.http.cors";
const ROUTER_FILTER: &str = "envoy.filters.http.router";
const HCM_FILTER: &str = "envoy.filters.network.http_connection_manager";

pub(super) fn listener(
    l: &model::Listener,
    config: &Config,
    rds_source: &ConfigSource,
) -> Listener {
    let mut http_filters = Vec::new();
    // gRPC clients run only the filters they know; validation keeps sticky sessions (the one
    // optional filter) away from gRPC listeners.
    if !l.is_proxyless_grpc() && uses_sticky_sessions(l, config) {
        // Present but empty: a no-op until a route to a sticky cluster enables it with its own
        // cookie (see `route`). One listener can front sticky and non-sticky clusters.
        http_filters.push(HttpFilter {
            name: STATEFUL_SESSION_FILTER.to_string(),
            config_type: Some(http_filter::ConfigType::TypedConfig(any(
                &StatefulSession::default(),
            ))),
            ..Default::default()
        });
    }
    // Both present but inactive: only routes with their own `rate_limit` / `cors` turn them on
    // (`typed_per_filter_config`). CORS runs first so a preflight is answered, not counted.
    if l.routes().any(|r| r.cors.is_some()) {
        http_filters.push(HttpFilter {
            name: CORS_FILTER.to_string(),
            config_type: Some(http_filter::ConfigType::TypedConfig(any(&Cors::default()))),
            ..Default::default()
        });
    }
    // Who may pass is decided before faults and rate limits count a request.
    http_filters.extend(super::auth::ListenerAuth::of(l).filters());
    http_filters.extend(super::fault::filter(l));
    if l.routes().any(|r| r.rate_limit.is_some()) {
        http_filters.push(HttpFilter {
            name: RATE_LIMIT_FILTER.to_string(),
            config_type: Some(http_filter::ConfigType::TypedConfig(any(&LocalRateLimit {
                stat_prefix: RATE_LIMIT_STAT_PREFIX.to_string(),
                ..Default::default()
            }))),
            ..Default::default()
        });
    }
    http_filters.push(HttpFilter {
        name: ROUTER_FILTER.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(
            any(&Router::default()),
        )),
        ..Default::default()
    });
    let address = match l.kind {
        ListenerKind::Envoy(address) => address,
        ListenerKind::ProxylessGrpc => {
            // gRPC clients speak ADS only and reject an RDS source that is not `ads`.
            let hcm = connection_manager(l, http_filters, &Transport::Ads.config_source(), false);
            return Listener {
                name: l.name.clone(),
                api_listener: Some(ApiListener {
                    api_listener: Some(any(&hcm)),
                }),
                ..Default::default()
            };
        }
    };
    let hcm = connection_manager(l, http_filters, rds_source, true);
    Listener {
        name: l.name.clone(),
        address: Some(socket_address(address)),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: HCM_FILTER.to_string(),
                config_type: Some(filter::ConfigType::TypedConfig(any(&hcm))),
            }],
            transport_socket: l
                .tls
                .as_ref()
                .map(|t| super::tls::downstream(t, rds_source)),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn connection_manager(
    l: &model::Listener,
    http_filters: Vec<HttpFilter>,
    rds_source: &ConfigSource,
    edge: bool,
) -> HttpConnectionManager {
    HttpConnectionManager {
        // An edge Envoy: the client is the peer of the connection, so Envoy appends the peer's
        // address to x-forwarded-for and trusts no x-forwarded-for hop a client sent
        // (`xff_num_trusted_hops: 0`), sets x-forwarded-proto from the connection, and strips
        // x-envoy-* headers from outside. Hosts match the Host without its port.
        use_remote_address: edge.then_some(BoolValue { value: true }),
        xff_num_trusted_hops: 0,
        strip_port_mode: edge.then_some(http_connection_manager::StripPortMode::StripAnyHostPort(
            true,
        )),
        stat_prefix: l.name.clone(),
        route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: Some(rds_source.clone()),
            route_config_name: l.name.clone(),
        })),
        http_filters,
        access_log: super::access_log::access_logs(l, false),
        tracing: l
            .tracing
            .as_ref()
            .map(super::tracing::connection_manager_tracing),
        ..Default::default()
    }
}

fn uses_sticky_sessions(l: &model::Listener, config: &Config) -> bool {
    l.routes()
        .flat_map(|r| r.action.clusters())
        .filter_map(|name| config.clusters.get(name))
        .any(|c| matches!(c.affinity, Some(Affinity::StickyCookie { .. })))
}
