//! `clusters.<name>`: a group of backends and how Envoy balances across them.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use crate::config::diagnostic::Sink;
use crate::config::model::{
    Affinity, Cluster, CookieSpec, Endpoint, Policy, ProbeTls, Registrations, Secrets,
    UpstreamProtocol,
};
use crate::config::reader::{self, Fields};
use crate::config::yaml::{Node, Value};

use super::defaults::{CONNECT_TIMEOUT, Defaults, is_off};
use super::{health, registrations, resilience};

const KEYS: &[&str] = &[
    "policy",
    "endpoints",
    "connect_timeout",
    "upstream_protocol",
    "health_check",
    "outlier_detection",
    "circuit_breakers",
    "affinity",
    "panic_threshold",
    "registrations",
    "tls",
];

/// Highest endpoint weight accepted. Envoy caps the sum of weights in a locality at 2^32-1;
/// this bound keeps any realistic number of endpoints far from it.
pub const MAX_WEIGHT: u32 = 1_000_000;

pub(crate) fn cluster(
    sink: &mut Sink,
    name: &str,
    node: &Node,
    defaults: &Defaults,
    secrets: &mut Secrets,
) -> Option<Cluster> {
    let path = format!("clusters.{name}");
    let f = Fields::read(sink, node, &path, KEYS)?;
    let tls = match f.get("tls") {
        Some(n) => super::tls::upstream_tls(sink, n, &f.path("tls"), secrets).map(Some),
        None => Some(None),
    };

    let explicit_policy = match f.get("policy") {
        Some(n) => {
            let text = reader::string(sink, n, &f.path("policy"));
            match text.as_deref().map(|t| (t, Policy::from_name(t))) {
                Some((_, Some(p))) => Some((p, n)),
                Some((t, None)) => {
                    sink.error(
                        n,
                        &f.path("policy"),
                        format!(
                            "unknown policy `{t}` (expected one of: {})",
                            Policy::NAMES.join(", ")
                        ),
                    );
                    None
                }
                None => None,
            }
        }
        None => None,
    };

    let endpoints = match f.get("endpoints") {
        Some(n) => endpoints(sink, n, &f.path("endpoints")),
        None => Some(Vec::new()),
    };

    let connect_timeout = defaults
        .layer("connect_timeout", f.get("connect_timeout"))
        .and_then(|n| {
            reader::duration_in(
                sink,
                &n,
                &f.path("connect_timeout"),
                CONNECT_TIMEOUT.0,
                CONNECT_TIMEOUT.1,
            )
        });

    let upstream_protocol = match f.get("upstream_protocol") {
        Some(n) => match reader::string(sink, n, &f.path("upstream_protocol")).as_deref() {
            Some("http1") => Some(UpstreamProtocol::Http1),
            Some("http2") => Some(UpstreamProtocol::Http2),
            Some(other) => {
                sink.error(
                    n,
                    &f.path("upstream_protocol"),
                    format!("unknown protocol `{other}` (expected http1 or http2)"),
                );
                None
            }
            None => None,
        },
        None => Some(UpstreamProtocol::Http1),
    };

    let own_health = f.get("health_check");
    let health_check = match defaults.layer("health_check", own_health) {
        Some(n) if is_off(&n) => Some(None),
        Some(n) => health::health_check(
            sink,
            &n,
            &f.path("health_check"),
            own_health.is_some_and(|o| matches!(o.value, Value::Map(_))),
        ),
        None => Some(None),
    };

    let outlier_detection = match defaults.layer("outlier_detection", f.get("outlier_detection")) {
        Some(n) => resilience::outlier_detection(sink, &n, &f.path("outlier_detection")),
        None => Some(None),
    };
    let circuit_breakers = match defaults.layer("circuit_breakers", f.get("circuit_breakers")) {
        Some(n) => resilience::circuit_breakers(sink, &n, &f.path("circuit_breakers")),
        None => Some(None),
    };

    let affinity = match f.get("affinity") {
        Some(n) => affinity(sink, n, &f.path("affinity")),
        None => Some(None),
    };

    let panic_threshold = match f.get("panic_threshold") {
        Some(n) => reader::u32_in(sink, n, &f.path("panic_threshold"), 0, 100),
        None => Some(0),
    };

    let registrations = match f.get("registrations") {
        Some(n) => registrations::registrations(sink, n, &f.path("registrations")),
        None => Some(Registrations::default()),
    };

    let affinity = affinity?;
    let policy = match (explicit_policy, &affinity) {
        (Some((policy, policy_node)), Some(a)) if a.needs_consistent_hash() => {
            if !policy.is_consistent_hash() {
                sink.error(
                    policy_node,
                    &f.path("policy"),
                    format!(
                        "{} affinity needs policy ring_hash or maglev, not {}",
                        affinity_kind(a),
                        policy.name()
                    ),
                );
                return None;
            }
            policy
        }
        (Some((policy, _)), _) => policy,
        (None, Some(a)) if a.needs_consistent_hash() => Policy::RingHash,
        (None, _) => {
            if f.get("policy").is_some() {
                return None;
            }
            Policy::RoundRobin
        }
    };

    let endpoints = endpoints?;
    let (mut health_check, tls) = (health_check?, tls?);
    if let (Some(check), Some(t)) = (&mut health_check, &tls) {
        check.tls = Some(ProbeTls::new(t, secrets));
    }
    if health_check.is_some() && endpoints.is_empty() {
        let at = f.get("endpoints").unwrap_or(node);
        sink.error(
            at,
            &f.path("endpoints"),
            "an active health check is configured but there are no endpoints to check",
        );
    }
    if policy == Policy::LeastResponseTime && health_check.is_none() {
        let at = f.get("policy").unwrap_or(node);
        sink.error(
            at,
            &f.path("policy"),
            "least_response_time needs an active health_check: its weights come from the latency the checker measures",
        );
    }

    Some(Cluster {
        name: name.to_string(),
        policy,
        endpoints,
        connect_timeout: connect_timeout?,
        upstream_protocol: upstream_protocol?,
        health_check,
        outlier_detection: outlier_detection?,
        circuit_breakers: circuit_breakers?,
        affinity,
        panic_threshold: panic_threshold?,
        registrations: registrations?,
        tls,
    })
}

fn affinity_kind(a: &Affinity) -> &'static str {
    match a {
        Affinity::Cookie(_) => "cookie",
        Affinity::Header(_) => "header",
        Affinity::SourceIp => "source_ip",
        Affinity::StickyCookie { .. } => "sticky_cookie",
    }
}

fn endpoints(sink: &mut Sink, node: &Node, path: &str) -> Option<Vec<Endpoint>> {
    let items = reader::list(sink, node, path)?;
    let mut out = Vec::with_capacity(items.len());
    let mut positions: HashMap<SocketAddr, usize> = HashMap::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let ipath = format!("{path}[{i}]");
        let endpoint = if item.as_str().is_some() {
            reader::socket_address(sink, item, &ipath).map(|address| Endpoint {
                address,
                weight: 1,
                zone: None,
                priority: 0,
            })
        } else {
            long_endpoint(sink, item, &ipath)
        };
        match endpoint {
            Some(e) => {
                if let Some(first) = positions.get(&e.address) {
                    sink.error(
                        item,
                        &ipath,
                        format!("{} is listed twice (also at [{first}])", e.address),
                    );
                    ok = false;
                } else {
                    positions.insert(e.address, out.len());
                }
                out.push(e);
            }
            None => ok = false,
        }
    }
    let priorities: BTreeSet<u32> = out.iter().map(|e| e.priority).collect();
    if let Some((gap, _)) = priorities
        .iter()
        .enumerate()
        .find(|(i, p)| **p != *i as u32)
    {
        sink.error(
            node,
            path,
            format!("priorities must run from 0 without gaps; priority {gap} has no endpoints"),
        );
        ok = false;
    }
    ok.then_some(out)
}

fn long_endpoint(sink: &mut Sink, node: &Node, path: &str) -> Option<Endpoint> {
    let f = Fields::read(sink, node, path, &["address", "weight", "zone", "priority"])?;
    let Some(address_node) = f.get("address") else {
        sink.error(node, path, "missing field `address`");
        return None;
    };
    let address = reader::socket_address(sink, address_node, &f.path("address"));
    let weight = match f.get("weight") {
        Some(n) => reader::u32_in(sink, n, &f.path("weight"), 1, MAX_WEIGHT),
        None => Some(1),
    };
    let zone = match f.get("zone") {
        Some(n) => reader::non_empty_string(sink, n, &f.path("zone")).map(Some),
        None => Some(None),
    };
    let priority = match f.get("priority") {
        Some(n) => reader::u32_in(sink, n, &f.path("priority"), 0, 127),
        None => Some(0),
    };
    Some(Endpoint {
        address: address?,
        weight: weight?,
        zone: zone?,
        priority: priority?,
    })
}

fn affinity(sink: &mut Sink, node: &Node, path: &str) -> Option<Option<Affinity>> {
    let f = Fields::read(
        sink,
        node,
        path,
        &["cookie", "header", "source_ip", "sticky_cookie"],
    )?;
    let kinds: Vec<&str> = f.keys().collect();
    let [kind] = kinds.as_slice() else {
        sink.error(
            node,
            path,
            if kinds.is_empty() {
                "choose one of cookie, header, source_ip or sticky_cookie".to_string()
            } else {
                format!("choose one kind of affinity, not {}", kinds.join(" and "))
            },
        );
        return None;
    };
    let value = f.get(kind)?;
    let kpath = f.path(kind);
    Some(Some(match *kind {
        "cookie" => Affinity::Cookie(cookie(sink, value, &kpath, "fl-session", &[])?.0),
        "header" => {
            let name = reader::non_empty_string(sink, value, &kpath)?;
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                sink.error(
                    value,
                    &kpath,
                    format!("`{name}` is not a valid header name"),
                );
                return None;
            }
            Affinity::Header(name.to_ascii_lowercase())
        }
        "source_ip" => {
            if !reader::boolean(sink, value, &kpath)? {
                return Some(None);
            }
            Affinity::SourceIp
        }
        _ => {
            let (cookie, strict) = cookie(sink, value, &kpath, "fl-sticky", &["strict"])?;
            Affinity::StickyCookie { cookie, strict }
        }
    }))
}

fn cookie(
    sink: &mut Sink,
    node: &Node,
    path: &str,
    default_name: &str,
    extra: &[&str],
) -> Option<(CookieSpec, bool)> {
    let mut keys = vec!["name", "ttl", "path"];
    keys.extend_from_slice(extra);
    if node.is_null() {
        return Some((
            CookieSpec {
                name: default_name.to_string(),
                ttl: Duration::ZERO,
                path: "/".to_string(),
            },
            false,
        ));
    }
    let f = Fields::read(sink, node, path, &keys)?;
    let name = match f.get("name") {
        Some(n) => {
            let name = reader::non_empty_string(sink, n, &f.path("name"))?;
            if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                sink.error(
                    n,
                    &f.path("name"),
                    format!("`{name}` is not a valid cookie name (letters, digits, - _ .)"),
                );
                return None;
            }
            name
        }
        None => default_name.to_string(),
    };
    let ttl = match f.get("ttl") {
        Some(n) => reader::duration_in(
            sink,
            n,
            &f.path("ttl"),
            Duration::ZERO,
            Duration::from_secs(400 * 24 * 3600),
        )?,
        None => Duration::ZERO,
    };
    let cookie_path = match f.get("path") {
        Some(n) => {
            let p = reader::non_empty_string(sink, n, &f.path("path"))?;
            if !p.starts_with('/') {
                sink.error(n, &f.path("path"), "must start with /");
                return None;
            }
            p
        }
        None => "/".to_string(),
    };
    let strict = match f.get("strict") {
        Some(n) => reader::boolean(sink, n, &f.path("strict"))?,
        None => false,
    };
    Some((
        CookieSpec {
            name,
            ttl,
            path: cookie_path,
        },
        strict,
    ))
}
