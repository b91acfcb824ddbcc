//! `RouteConfiguration`: one virtual host matching every domain, routes in YAML order.

use envoy_types::pb::envoy::config::core::v3::TypedExtensionConfig;
use envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher, RetryPolicy, Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
    WeightedCluster,
    header_matcher::HeaderMatchSpecifier,
    retry_policy, route,
    route_action::{self, HashPolicy, hash_policy},
    route_match::PathSpecifier,
    weighted_cluster::ClusterWeight,
};
use envoy_types::pb::envoy::extensions::filters::http::stateful_session::v3::{
    StatefulSession, StatefulSessionPerRoute, stateful_session_per_route,
};
use envoy_types::pb::envoy::extensions::http::stateful_session::cookie::v3::CookieBasedSessionState;
use envoy_types::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use envoy_types::pb::envoy::r#type::http::v3::Cookie;
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher::MatchPattern};

use super::listener::STATEFUL_SESSION_FILTER;
use super::{any, duration, u32_value};
use crate::config::Config;
use crate::config::model::{self, Affinity, CookieSpec, HeaderRule, PathMatch};

const PREVIOUS_HOSTS: &str = "envoy.retry_host_predicates.previous_hosts";
const COOKIE_SESSION_STATE: &str = "envoy.http.stateful_session.cookie";

/// With the previous-hosts predicate Envoy re-picks a host this many times to avoid one that
/// already failed the request; a few tries find a fresh host with high odds.
const HOST_SELECTION_ATTEMPTS: i64 = 5;

pub(super) fn route_configuration(l: &model::Listener, config: &Config) -> RouteConfiguration {
    RouteConfiguration {
        name: l.name.clone(),
        virtual_hosts: vec![VirtualHost {
            name: l.name.clone(),
            domains: vec!["*".to_string()],
            routes: l
                .routes
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    route(
                        &format!("{}.routes[{i}]", l.name),
                        r,
                        config,
                        l.is_proxyless_grpc(),
                    )
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The clusters a listener's routes send to, sorted and unique.
pub(super) fn clusters(l: &model::Listener) -> Vec<String> {
    let set: std::collections::BTreeSet<&str> =
        l.routes.iter().flat_map(|r| r.action.clusters()).collect();
    set.into_iter().map(str::to_string).collect()
}

/// `grpc`: the route is for proxyless gRPC clients, which bound a call by
/// `max_stream_duration` and ignore the route `timeout` (gRFC A31).
fn route(name: &str, r: &model::Route, config: &Config, grpc: bool) -> Route {
    let cluster_specifier = match &r.action {
        model::RouteAction::To(cluster) => route_action::ClusterSpecifier::Cluster(cluster.clone()),
        model::RouteAction::Split(split) => {
            route_action::ClusterSpecifier::WeightedClusters(WeightedCluster {
                clusters: split
                    .iter()
                    .map(|(cluster, weight)| ClusterWeight {
                        name: cluster.clone(),
                        weight: Some(u32_value(*weight)),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
        }
    };
    let affinities: Vec<&Affinity> = r
        .action
        .clusters()
        .filter_map(|c| config.clusters.get(c))
        .filter_map(|c| c.affinity.as_ref())
        .collect();
    let mut hash_policy: Vec<HashPolicy> = Vec::new();
    for a in &affinities {
        if let Some(p) = hash(a)
            && !hash_policy.contains(&p)
        {
            hash_policy.push(p);
        }
    }
    let mut out = Route {
        name: name.to_string(),
        r#match: Some(route_match(&r.matcher)),
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(cluster_specifier),
            timeout: r.timeout.filter(|_| !grpc).map(duration),
            max_stream_duration: r.timeout.filter(|_| grpc).map(|t| {
                route_action::MaxStreamDuration {
                    max_stream_duration: Some(duration(t)),
                    ..Default::default()
                }
            }),
            retry_policy: r.retries.as_ref().map(retry_policy),
            hash_policy,
            ..Default::default()
        })),
        ..Default::default()
    };
    if let Some((cookie, strict)) = affinities.iter().find_map(|a| match a {
        Affinity::StickyCookie { cookie, strict } => Some((cookie, *strict)),
        _ => None,
    }) {
        out.typed_per_filter_config.insert(
            STATEFUL_SESSION_FILTER.to_string(),
            any(&sticky_session(cookie, strict)),
        );
    }
    out
}

fn route_match(m: &model::RouteMatch) -> RouteMatch {
    RouteMatch {
        path_specifier: Some(match &m.path {
            PathMatch::Prefix(p) => PathSpecifier::Prefix(p.clone()),
            PathMatch::Exact(p) => PathSpecifier::Path(p.clone()),
        }),
        headers: m
            .headers
            .iter()
            .map(|h| HeaderMatcher {
                name: h.name.clone(),
                header_match_specifier: Some(match &h.rule {
                    HeaderRule::Present(present) => HeaderMatchSpecifier::PresentMatch(*present),
                    HeaderRule::Exact(v) => string_match(MatchPattern::Exact(v.clone())),
                    HeaderRule::Prefix(v) => string_match(MatchPattern::Prefix(v.clone())),
                    HeaderRule::Suffix(v) => string_match(MatchPattern::Suffix(v.clone())),
                    HeaderRule::Contains(v) => string_match(MatchPattern::Contains(v.clone())),
                }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn string_match(pattern: MatchPattern) -> HeaderMatchSpecifier {
    HeaderMatchSpecifier::StringMatch(StringMatcher {
        match_pattern: Some(pattern),
        ignore_case: false,
    })
}

fn retry_policy(r: &model::Retries) -> RetryPolicy {
    RetryPolicy {
        retry_on: r.on.join(","),
        num_retries: Some(u32_value(r.attempts)),
        per_try_timeout: r.per_try_timeout.map(duration),
        retry_host_predicate: if r.previous_hosts {
            vec![retry_policy::RetryHostPredicate {
                name: PREVIOUS_HOSTS.to_string(),
                config_type: Some(retry_policy::retry_host_predicate::ConfigType::TypedConfig(
                    any(&PreviousHostsPredicate::default()),
                )),
            }]
        } else {
            Vec::new()
        },
        host_selection_retry_max_attempts: if r.previous_hosts {
            HOST_SELECTION_ATTEMPTS
        } else {
            0
        },
        ..Default::default()
    }
}

fn hash(a: &Affinity) -> Option<HashPolicy> {
    let specifier =
        match a {
            Affinity::Cookie(c) => {
                hash_policy::PolicySpecifier::Cookie(hash_policy::Cookie {
                    name: c.name.clone(),
                    // A TTL (zero = session cookie) makes Envoy set the cookie when it is missing.
                    ttl: Some(duration(c.ttl)),
                    path: c.path.clone(),
                    ..Default::default()
                })
            }
            Affinity::Header(h) => hash_policy::PolicySpecifier::Header(hash_policy::Header {
                header_name: h.clone(),
                ..Default::default()
            }),
            Affinity::SourceIp => hash_policy::PolicySpecifier::ConnectionProperties(
                hash_policy::ConnectionProperties { source_ip: true },
            ),
            Affinity::StickyCookie { .. } => return None,
        };
    Some(HashPolicy {
        policy_specifier: Some(specifier),
        terminal: false,
    })
}

fn sticky_session(cookie: &CookieSpec, strict: bool) -> StatefulSessionPerRoute {
    let state = CookieBasedSessionState {
        cookie: Some(Cookie {
            name: cookie.name.clone(),
            ttl: Some(duration(cookie.ttl)),
            path: cookie.path.clone(),
            ..Default::default()
        }),
    };
    StatefulSessionPerRoute {
        r#override: Some(stateful_session_per_route::Override::StatefulSession(
            StatefulSession {
                session_state: Some(TypedExtensionConfig {
                    name: COOKIE_SESSION_STATE.to_string(),
                    typed_config: Some(any(&state)),
                }),
                strict,
                ..Default::default()
            },
        )),
    }
}
