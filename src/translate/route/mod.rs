//! `RouteConfiguration`: one virtual host per configured host (in name order), routes in YAML
//! order. Envoy answers 404 to a request whose Host no virtual host's domains match.

mod action;
mod matcher;
mod policy;

use envoy_types::pb::envoy::config::route::v3::{
    Decorator, Route, RouteConfiguration, VirtualHost, route,
};

use super::any;
use super::auth::ListenerAuth;
use super::listener::{CORS_FILTER, RATE_LIMIT_FILTER, STATEFUL_SESSION_FILTER};
use crate::config::Config;
use crate::config::model::{self, Affinity, Auth, RouteAction};

/// What a route inherits from its listener and host besides the cluster config: the
/// listener's auth filters, the nearest `auth` written above it, whether requests are traced.
struct Inherited<'a> {
    auth: &'a ListenerAuth<'a>,
    nearest: Option<&'a Auth>,
    tracing: bool,
}

pub(crate) use policy::RATE_LIMIT_STAT_PREFIX;

pub(super) fn route_configuration(l: &model::Listener, config: &Config) -> RouteConfiguration {
    let grpc = l.is_proxyless_grpc();
    let single = matches!(l.hosts.as_slice(), [h] if h.name == l.name);
    let auth = ListenerAuth::of(l);
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
                let inherited = Inherited {
                    auth: &auth,
                    nearest: h.auth.as_ref().or(l.auth.as_ref()),
                    tracing: l.tracing.is_some(),
                };
                virtual_host(&prefix, h, config, grpc, &inherited)
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

fn virtual_host(
    prefix: &str,
    h: &model::VirtualHost,
    config: &Config,
    grpc: bool,
    inherited: &Inherited<'_>,
) -> VirtualHost {
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
            .map(|(i, r)| route(&format!("{prefix}.routes[{i}]"), r, config, grpc, inherited))
            .collect(),
        request_headers_to_add,
        request_headers_to_remove,
        response_headers_to_add,
        response_headers_to_remove,
        ..Default::default()
    }
}

fn route(
    name: &str,
    r: &model::Route,
    config: &Config,
    grpc: bool,
    inherited: &Inherited<'_>,
) -> Route {
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
    let nearest = r.auth.as_ref().or(inherited.nearest);
    out.typed_per_filter_config
        .extend(inherited.auth.per_route(nearest));
    if let Some(fault) = &r.fault {
        out.typed_per_filter_config.insert(
            super::fault::FAULT_FILTER.to_string(),
            any(&super::fault::per_route(fault)),
        );
    }
    if inherited.tracing {
        // Spans are named after the route, as `flotilla render` and the YAML's order name it.
        out.decorator = Some(Decorator {
            operation: name.to_string(),
            ..Default::default()
        });
    }
    out
}

#[cfg(test)]
mod tests;
