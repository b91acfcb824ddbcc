//! `clusters.<name>`: a group of backends and how Envoy balances across them.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;

use crate::config::diagnostic::Sink;
use crate::config::model::{
    Cluster, Endpoint, HostEndpoint, Policy, ProbeTls, Resolve, Secrets, UpstreamProtocol,
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

/// Values of `resolve`.
pub(crate) const RESOLVERS: &[&str] = &["flotilla", "envoy"];

/// Hostname endpoints in one cluster at most: each is a name flotilla keeps resolving.
pub const MAX_HOSTNAMES: usize = 64;

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
            Kind::List(&Kind::AnyOf(&[Kind::HostAddress, Kind::Object(&ENDPOINT)])),
            "Backends: `ip:port` or `host:port` (weight 1) or { address, weight, zone, priority }.",
        ),
        optional(
            "resolve",
            Kind::Enum(RESOLVERS),
            "Who resolves hostname endpoints: flotilla (default; every address an endpoint) or envoy (STRICT_DNS).",
        ),
        optional(
            "logical",
            Kind::Bool,
            "With resolve: envoy, a LOGICAL_DNS cluster (one name, resolved per new connection).",
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
        required(
            "address",
            Kind::HostAddress,
            "ip:port (IPv6 in brackets) or host:port.",
        ),
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
        None => Some((Vec::new(), Vec::new())),
    };
    let resolve = resolve(sink, &f);

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
        Some(n) => registrations::registrations(sink, n, &f.path("registrations")).map(Some),
        None => Some(None),
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

    let (endpoints, hostnames) = endpoints?;
    let (mut health_check, mut tls, resolve) = (health_check?, tls?, resolve?);
    // Upstream TLS to a name: the name is the SNI and what the certificate must be for,
    // whichever address it resolved to (one name; with several, `tls.sni` says which).
    let names: BTreeSet<&str> = hostnames.iter().map(|h| h.host.as_str()).collect();
    if let (Some(t), [only]) = (&mut tls, names.iter().collect::<Vec<_>>().as_slice())
        && t.sni.is_none()
    {
        t.sni = Some(only.to_string());
    }
    if let (Some(check), Some(t)) = (&mut health_check, &tls) {
        check.tls = Some(ProbeTls::new(t, secrets));
    }
    if let Resolve::Envoy { logical } = resolve {
        let at = f.get("resolve").unwrap_or(node);
        if health_check.is_some() {
            sink.error(
                at,
                &f.path("resolve"),
                "flotilla cannot health-check addresses Envoy resolves: use resolve: flotilla, or outlier_detection",
            );
        }
        if logical && endpoints.len() + hostnames.len() != 1 {
            sink.error(
                f.get("logical").unwrap_or(at),
                &f.path("logical"),
                "a LOGICAL_DNS cluster takes exactly one endpoint",
            );
        }
    }
    if health_check.is_some() && endpoints.is_empty() && hostnames.is_empty() {
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
        hostnames,
        resolve,
    })
}

/// `resolve` and `logical`.
fn resolve(sink: &mut Sink, f: &Fields<'_>) -> Option<Resolve> {
    let logical = match f.get("logical") {
        Some(n) => reader::boolean(sink, n, &f.path("logical"))?,
        None => false,
    };
    let envoy = match f.get("resolve") {
        Some(n) => match reader::string(sink, n, &f.path("resolve"))?.as_str() {
            "flotilla" => false,
            "envoy" => true,
            other => {
                sink.error(
                    n,
                    &f.path("resolve"),
                    format!(
                        "unknown resolver `{other}` (expected {})",
                        RESOLVERS.join(" or ")
                    ),
                );
                return None;
            }
        },
        None => false,
    };
    if logical && !envoy {
        sink.error(
            f.get("logical")?,
            &f.path("logical"),
            "logical: true needs resolve: envoy (flotilla resolves names itself otherwise)",
        );
        return None;
    }
    Some(if envoy {
        Resolve::Envoy { logical }
    } else {
        Resolve::Flotilla
    })
}

/// A written endpoint: an address, or a name to resolve.
enum Written {
    Ip(Endpoint),
    Host(HostEndpoint),
}

fn endpoints(
    sink: &mut Sink,
    node: &Node,
    path: &str,
) -> Option<(Vec<Endpoint>, Vec<HostEndpoint>)> {
    let items = reader::list(sink, node, path)?;
    let mut out = Vec::with_capacity(items.len());
    let mut hosts: Vec<HostEndpoint> = Vec::new();
    let mut positions: HashMap<String, usize> = HashMap::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let ipath = format!("{path}[{i}]");
        let endpoint = if item.as_str().is_some() {
            address(sink, item, &ipath).map(|a| match a {
                Target::Ip(address) => Written::Ip(Endpoint {
                    address,
                    weight: 1,
                    zone: None,
                    priority: 0,
                }),
                Target::Host(host, port) => Written::Host(HostEndpoint {
                    host,
                    port,
                    weight: 1,
                    zone: None,
                    priority: 0,
                    loc: item.loc.clone(),
                    field: ipath.clone(),
                }),
            })
        } else {
            long_endpoint(sink, item, &ipath)
        };
        let Some(endpoint) = endpoint else {
            ok = false;
            continue;
        };
        let key = match &endpoint {
            Written::Ip(e) => e.address.to_string(),
            Written::Host(h) => format!("{}:{}", h.host, h.port),
        };
        if let Some(first) = positions.get(&key) {
            sink.error(
                item,
                &ipath,
                format!("{key} is listed twice (also at [{first}])"),
            );
            ok = false;
        } else {
            positions.insert(key, i);
        }
        match endpoint {
            Written::Ip(e) => out.push(e),
            Written::Host(h) => {
                if hosts.len() == MAX_HOSTNAMES {
                    sink.error(
                        item,
                        &ipath,
                        format!("more than {MAX_HOSTNAMES} hostname endpoints in one cluster"),
                    );
                    ok = false;
                }
                hosts.push(h);
            }
        }
    }
    let priorities: BTreeSet<u32> = out
        .iter()
        .map(|e| e.priority)
        .chain(hosts.iter().map(|h| h.priority))
        .collect();
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
    ok.then_some((out, hosts))
}

/// What an endpoint's address names.
enum Target {
    Ip(SocketAddr),
    Host(String, u16),
}

/// `ip:port`, or `host:port` with a valid DNS name.
fn address(sink: &mut Sink, node: &Node, path: &str) -> Option<Target> {
    let text = reader::string(sink, node, path)?;
    let parsed = match reader::parse_socket_address(&text) {
        Ok(a) => Ok(Target::Ip(a)),
        Err(ip_error) => match crate::dns::parse_host_port(&text) {
            Ok(Some((host, port))) => Ok(Target::Host(host, port)),
            Ok(None) => Err(ip_error),
            Err(e) => Err(e),
        },
    };
    parsed.map_err(|e| sink.error(node, path, e)).ok()
}

fn long_endpoint(sink: &mut Sink, node: &Node, path: &str) -> Option<Written> {
    let f = Fields::read(sink, node, path, &ENDPOINT)?;
    let Some(address_node) = f.get("address") else {
        sink.error(node, path, "missing field `address`");
        return None;
    };
    let address = address(sink, address_node, &f.path("address"));
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
    let (weight, zone, priority) = (weight?, zone?, priority?);
    Some(match address? {
        Target::Ip(address) => Written::Ip(Endpoint {
            address,
            weight,
            zone,
            priority,
        }),
        Target::Host(host, port) => Written::Host(HostEndpoint {
            host,
            port,
            weight,
            zone,
            priority,
            loc: address_node.loc.clone(),
            field: f.path("address"),
        }),
    })
}
