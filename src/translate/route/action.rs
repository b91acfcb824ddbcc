//! What a route does: forward (`RouteAction`, with retries, hashing, rewrites, mirroring and
//! upgrades), redirect, or answer directly.

use envoy_types::pb::envoy::config::core::v3::RuntimeFractionalPercent;
use envoy_types::pb::envoy::config::core::v3::{DataSource, data_source};
use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, RedirectAction, RetryPolicy, RouteAction, WeightedCluster,
    redirect_action::{self, RedirectResponseCode},
    retry_policy,
    route_action::{self, HashPolicy, hash_policy},
    weighted_cluster::ClusterWeight,
};
use envoy_types::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use envoy_types::pb::envoy::r#type::matcher::v3::RegexMatchAndSubstitute;
use envoy_types::pb::google::protobuf::BoolValue;

use super::super::{any, duration, u32_value};
use super::matcher::regex;
use super::policy::percent;
use crate::config::model::{self, Affinity, HostRewrite, PathRewrite, Redirect, RedirectPath};

const PREVIOUS_HOSTS: &str = "envoy.retry_host_predicates.previous_hosts";

/// With the previous-hosts predicate Envoy re-picks a host this many times to avoid one that
/// already failed the request; a few tries find a fresh host with high odds.
const HOST_SELECTION_ATTEMPTS: i64 = 5;

/// `grpc`: the route is for proxyless gRPC clients, which bound a call by
/// `max_stream_duration` and ignore the route `timeout` (gRFC A31).
pub(super) fn forward(r: &model::Route, affinities: &[&Affinity], grpc: bool) -> RouteAction {
    let cluster_specifier = match &r.action {
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
        other => route_action::ClusterSpecifier::Cluster(
            other.clusters().next().unwrap_or_default().to_string(),
        ),
    };
    let mut hash_policy: Vec<HashPolicy> = Vec::new();
    for a in affinities {
        if let Some(p) = hash(a)
            && !hash_policy.contains(&p)
        {
            hash_policy.push(p);
        }
    }
    let mut out = RouteAction {
        cluster_specifier: Some(cluster_specifier),
        timeout: r.timeout.filter(|_| !grpc).map(duration),
        max_stream_duration: r
            .timeout
            .filter(|_| grpc)
            .map(|t| route_action::MaxStreamDuration {
                max_stream_duration: Some(duration(t)),
                ..Default::default()
            }),
        retry_policy: r.retries.as_ref().map(retry_policy),
        hash_policy,
        request_mirror_policies: r
            .mirror
            .iter()
            .map(|m| route_action::RequestMirrorPolicy {
                cluster: m.cluster.clone(),
                runtime_fraction: Some(RuntimeFractionalPercent {
                    default_value: Some(percent(m.percent)),
                    runtime_key: String::new(),
                }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    if r.websocket {
        out.upgrade_configs.push(route_action::UpgradeConfig {
            upgrade_type: "websocket".to_string(),
            enabled: Some(BoolValue { value: true }),
            ..Default::default()
        });
    }
    if let Some(rw) = &r.rewrite {
        match &rw.path {
            Some(PathRewrite::Prefix(p)) => out.prefix_rewrite = p.clone(),
            Some(PathRewrite::Regex {
                pattern,
                substitution,
            }) => {
                out.regex_rewrite = Some(RegexMatchAndSubstitute {
                    pattern: Some(regex(pattern)),
                    substitution: substitution.clone(),
                })
            }
            None => {}
        }
        out.host_rewrite_specifier = rw.host.as_ref().map(|h| match h {
            HostRewrite::Literal(h) => {
                route_action::HostRewriteSpecifier::HostRewriteLiteral(h.clone())
            }
            HostRewrite::Auto => {
                route_action::HostRewriteSpecifier::AutoHostRewrite(BoolValue { value: true })
            }
        });
    }
    out
}

pub(super) fn redirect(r: &Redirect) -> RedirectAction {
    let code = match r.code {
        302 => RedirectResponseCode::Found,
        303 => RedirectResponseCode::SeeOther,
        307 => RedirectResponseCode::TemporaryRedirect,
        308 => RedirectResponseCode::PermanentRedirect,
        _ => RedirectResponseCode::MovedPermanently,
    };
    RedirectAction {
        scheme_rewrite_specifier: r
            .scheme
            .clone()
            .map(redirect_action::SchemeRewriteSpecifier::SchemeRedirect),
        host_redirect: r.host.clone().unwrap_or_default(),
        port_redirect: r.port.map(u32::from).unwrap_or(0),
        path_rewrite_specifier: r.path.as_ref().map(|p| match p {
            RedirectPath::Path(p) => redirect_action::PathRewriteSpecifier::PathRedirect(p.clone()),
            RedirectPath::Prefix(p) => {
                redirect_action::PathRewriteSpecifier::PrefixRewrite(p.clone())
            }
        }),
        response_code: code as i32,
        ..Default::default()
    }
}

pub(super) fn direct_response(status: u16, body: Option<&str>) -> DirectResponseAction {
    DirectResponseAction {
        status: u32::from(status),
        body: body.map(|b| DataSource {
            specifier: Some(data_source::Specifier::InlineString(b.to_string())),
            ..Default::default()
        }),
        ..Default::default()
    }
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
            Affinity::Cookie(c) => hash_policy::PolicySpecifier::Cookie(hash_policy::Cookie {
                name: c.name.clone(),
                // A TTL (zero = session cookie) makes Envoy set the cookie when it is missing.
                ttl: Some(duration(c.ttl)),
                path: c.path.clone(),
                ..Default::default()
            }),
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
