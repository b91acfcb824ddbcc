//! `clusters.<name>`: a group of backends and how Envoy balances across them.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;

use crate::config::diagnostic::Sink;
use crate::config::model::{
    Cluster, Endpoint, Policy, ProbeTls, Registrations, Secrets, UpstreamProtocol,
};
use crate::config::reader::{self, Fields};
use crate::config::shape::{Kind, Object, object, optional, required};
use crate::config::yaml::{Node, Value};

use super::affinity::{self, AFFINITY, affinity_kind};
use super::defaults::{self, Defaults, is_off};
use super::{health, registrations, resilience};

/// Highest endpoint weight accepted. Envoy caps the sum of weights in a locality at 2^32-1;
/// this bound keeps any realistic number of endpoints far from it.
pub const MAX_WEIGHT: u32 = 1_000_000;

/// Protocols flotilla speaks to a cluster's endpoints.
pub(crate) const UPSTREAM_PROTOCOLS: &[&str] = &["http1", "http2"];

pub(crate) const CLUSTER: Object = object(
    "cluster",
    "A group of backends and how Envoy balances across them.",
    &[
        optional(
            "policy",
            Kind::Enum(Policy::NAMES),
            "Load-balancing policy (default round_robin; ring_hash when a hash affinity is set).",
        )
        .defaults_to("round_robin"),
        optional(
            "endpoints",
            Kind::List(&Kind::AnyOf(&[Kind::Address, Kind::Object(&ENDPOINT)])),
            "Backends: `ip:port` (weight 1) or { address, weight, zone, priority }.",
        ),
        defaults::CONNECT_TIMEOUT,
        optional(
            "upstream_protocol",
            Kind::Enum(UPSTREAM_PROTOCOLS),
            "Protocol to the endpoints (default http1).",
        )
        .defaults_to("http1"),
        defaults::HEALTH_CHECK,
        defaults::OUTLIER_DETECTION,
        defaults::CIRCUIT_BREAKERS,
        optional(
            "affinity",
            Kind::Object(&AFFINITY),
            "Session affinity, performed by Envoy.",
        ),
        optional(
            "panic_threshold",
            Kind::Integer { min: 0, max: 100 },
            "Percent of healthy endpoints below which Envoy balances across all (default 0: off).",
        )
        .defaults_to("0"),
        optional(
            "registrations",
            Kind::Object(&registrations::REGISTRATIONS),
            "Limits on endpoints that register themselves into this cluster.",
        ),
        optional(
            "tls",
            Kind::Object(&super::tls::UPSTREAM_TLS),
            "TLS to the endpoints (SNI, CA, client certificate).",
        ),
    ],
);

const ENDPOINT: Object = object(
    "endpoint",
    "One backend.",
    &[
        required("address", Kind::Address, "ip:port (IPv6 in brackets)."),
        optional(
            "weight",
            Kind::Integer {
                min: 1,
                max: MAX_WEIGHT as u64,
            },
            "Relative share of traffic (default 1).",
        )
        .defaults_to("1"),
        optional("zone", Kind::NonEmpty, "Locality zone."),
        optional(
            "priority",
            Kind::Integer { min: 0, max: 127 },
            "Priority level; 0 first, the next only when it is unhealthy (default 0).",
        )
        .defaults_to("0"),
    ],
);

pub(crate) fn cluster(
    sink: &mut Sink,
    name: &str,
    node: &Node,
    defaults: &Defaults,
    secrets: &mut Secrets,
) -> Option<Cluster> {
    let path = format!("clusters.{name}");
    let f = Fields::read(sink, node, &path, &CLUSTER)?;
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
        .and_then(|n| f.duration(sink, &n, "connect_timeout"));

    let upstream_protocol = match f.get("upstream_protocol") {
        Some(n) => match reader::string(sink, n, &f.path("upstream_protocol")).as_deref() {
            Some("http1") => Some(UpstreamProtocol::Http1),
            Some("http2") => Some(UpstreamProtocol::Http2),
            Some(other) => {
                sink.error(
                    n,
                    &f.path("upstream_protocol"),
                    format!(
                        "unknown protocol `{other}` (expected {})",
                        UPSTREAM_PROTOCOLS.join(" or ")
                    ),
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
        Some(n) => affinity::affinity(sink, n, &f.path("affinity")),
        None => Some(None),
    };

    let panic_threshold = match f.get("panic_threshold") {
        Some(n) => f.u32(sink, n, "panic_threshold"),
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
    let f = Fields::read(sink, node, path, &ENDPOINT)?;
    let Some(address_node) = f.get("address") else {
        sink.error(node, path, "missing field `address`");
        return None;
    };
    let address = reader::socket_address(sink, address_node, &f.path("address"));
    let weight = match f.get("weight") {
        Some(n) => f.u32(sink, n, "weight"),
        None => Some(1),
    };
    let zone = match f.get("zone") {
        Some(n) => reader::non_empty_string(sink, n, &f.path("zone")).map(Some),
        None => Some(None),
    };
    let priority = match f.get("priority") {
        Some(n) => f.u32(sink, n, "priority"),
        None => Some(0),
    };
    Some(Endpoint {
        address: address?,
        weight: weight?,
        zone: zone?,
        priority: priority?,
    })
}
