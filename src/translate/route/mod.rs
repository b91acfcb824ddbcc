//! `RouteConfiguration`: one virtual host per configured host (in name order), routes in YAML
//! order. Envoy answers 404 to a request whose Host no virtual host's domains match.

mod action;
mod matcher;
mod policy;

use envoy_types::pb::envoy::config::route::v3::{Route, RouteConfiguration, VirtualHost, route};

use super::any;
use super::listener::{CORS_FILTER, RATE_LIMIT_FILTER, STATEFUL_SESSION_FILTER};
use crate::config::Config;
use crate::config::model::{self, Affinity, RouteAction};

pub(crate) use policy::RATE_LIMIT_STAT_PREFIX;

pub(super) fn route_configuration(l: &model::Listener, config: &Config) -> RouteConfiguration {
    let grpc = l.is_proxyless_grpc();
    let single = matches!(l.hosts.as_slice(), [h] if h.name == l.name);
    RouteConfiguration {
        name: l.name.clone(),
        virtual_hosts: l
            .hosts
            .iter()
            .map(|h| {
                let prefix = if single {
                    l.name.clone()
                } else {
                    format!("{}.hosts.{}", l.name, h.name)
                };
                virtual_host(&prefix, h, config, grpc)
            })
            .collect(),
        ..Default::default()
    }
}

/// The clusters a listener's routes send to (mirrors included), sorted and unique.
pub(super) fn clusters(l: &model::Listener) -> Vec<String> {
    let set: std::collections::BTreeSet<&str> = l.clusters().collect();
    set.into_iter().map(str::to_string).collect()
}

fn virtual_host(prefix: &str, h: &model::VirtualHost, config: &Config, grpc: bool) -> VirtualHost {
    let (request_headers_to_add, request_headers_to_remove) =
        policy::header_options(&h.headers.request);
    let (response_headers_to_add, response_headers_to_remove) =
        policy::header_options(&h.headers.response);
    VirtualHost {
        name: h.name.clone(),
        domains: h.domains.clone(),
        routes: h
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| route(&format!("{prefix}.routes[{i}]"), r, config, grpc))
            .collect(),
        request_headers_to_add,
        request_headers_to_remove,
        response_headers_to_add,
        response_headers_to_remove,
        ..Default::default()
    }
}

fn route(name: &str, r: &model::Route, config: &Config, grpc: bool) -> Route {
    let affinities: Vec<&Affinity> = r
        .action
        .clusters()
        .filter_map(|c| config.clusters.get(c))
        .filter_map(|c| c.affinity.as_ref())
        .collect();
    let action = match &r.action {
        RouteAction::To(_) | RouteAction::Split(_) => {
            route::Action::Route(action::forward(r, &affinities, grpc))
        }
        RouteAction::Redirect(redirect) => route::Action::Redirect(action::redirect(redirect)),
        RouteAction::DirectResponse { status, body } => {
            route::Action::DirectResponse(action::direct_response(*status, body.as_deref()))
        }
    };
    let (request_headers_to_add, request_headers_to_remove) =
        policy::header_options(&r.headers.request);
    let (response_headers_to_add, response_headers_to_remove) =
        policy::header_options(&r.headers.response);
    let mut out = Route {
        name: name.to_string(),
        r#match: Some(matcher::route_match(&r.matcher)),
        action: Some(action),
        request_headers_to_add,
        request_headers_to_remove,
        response_headers_to_add,
        response_headers_to_remove,
        ..Default::default()
    };
    if let Some((cookie, strict)) = affinities.iter().find_map(|a| match a {
        Affinity::StickyCookie { cookie, strict } => Some((cookie, *strict)),
        _ => None,
    }) {
        out.typed_per_filter_config.insert(
            STATEFUL_SESSION_FILTER.to_string(),
            any(&policy::sticky_session(cookie, strict)),
        );
    }
    if let Some(limit) = &r.rate_limit {
        out.typed_per_filter_config.insert(
            RATE_LIMIT_FILTER.to_string(),
            any(&policy::rate_limit(limit)),
        );
    }
    if let Some(cors) = &r.cors {
        out.typed_per_filter_config
            .insert(CORS_FILTER.to_string(), any(&policy::cors(cors)));
    }
    out
}

#[cfg(test)]
mod tests;
