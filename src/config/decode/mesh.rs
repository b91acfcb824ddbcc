//! `mesh:`: services behind Envoy sidecars, the calls between them, and who may call whom.
//!
//! ```yaml
//! mesh:
//!   trust_domain: flotilla.local   # default: serve's --trust-domain
//!   certificate_ttl: 24h           # at least 1m; renewed at half life
//!   default: deny                  # deny | allow
//!   outbound: passthrough          # passthrough | registry_only (transparent sidecars)
//!   services:
//!     payments: { port: 9090, protocol: http, vip: 127.240.0.2:80 }
//!     orders: { port: 8080, calls: { payments: 15101 } }
//!     frontend: { calls: [orders, payments] }   # through the VIPs only
//!   allow:
//!     - { from: orders, to: payments, methods: [POST], paths: [/charge] }
//! ```
//!
//! Each service with a `port` also gets a cluster (`mesh:<service>`) holding its instances,
//! which sidecars join while their xDS stream lives.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use crate::config::diagnostic::Sink;
use crate::config::model::{
    AllowRule, Cluster, HealthCheck, Listener, Mesh, MeshDefault, MeshOutbound, MeshProtocol,
    MeshService, Policy, Probe, Registrations, TcpProbe, UpstreamProtocol, service_cluster,
};
use crate::config::reader::{self, Fields};
use crate::config::shape::{Kind, Object, object, optional, required, secs};
use crate::config::yaml::{Node, Value};

pub(crate) const MESH: Object = object(
    "mesh",
    "Services behind Envoy sidecars: identities, mutual TLS on every hop, authorization.",
    &[
        optional(
            "trust_domain",
            Kind::NonEmpty,
            "SPIFFE trust domain of workload identities (default: serve's --trust-domain).",
        ),
        optional(
            "certificate_ttl",
            Kind::Duration {
                min: Mesh::MIN_TTL,
                max: Mesh::MAX_TTL,
            },
            "Lifetime of the workload certificates flotilla mints (default 24h); renewed at half life.",
        ),
        optional(
            "default",
            Kind::Enum(&["deny", "allow"]),
            "Calls that no rule allows: deny (default) or allow.",
        ),
        optional(
            "outbound",
            Kind::Enum(MeshOutbound::NAMES),
            "Transparent sidecars' calls to addresses that are no service's VIP: passthrough (default; sent on unchanged) or registry_only (refused).",
        ),
        optional(
            "services",
            Kind::Map(&Kind::Object(&SERVICE)),
            "Services by name; a sidecar's fleet (node.cluster) is its service.",
        ),
        optional(
            "allow",
            Kind::List(&Kind::Object(&RULE)),
            "Calls that are allowed.",
        ),
    ],
);

const SERVICE: Object = object(
    "mesh_service",
    "One service of the mesh.",
    &[
        optional(
            "port",
            Kind::Integer { min: 1, max: 65535 },
            "The app's port behind its sidecar (the inbound listener forwards to 127.0.0.1:port).",
        ),
        optional(
            "protocol",
            Kind::Enum(MeshProtocol::NAMES),
            "What the app speaks: http (default), grpc or tcp.",
        ),
        optional(
            "vip",
            Kind::Address,
            "The stable virtual address (ip:port) apps dial for this service; transparent sidecars catch calls to it.",
        ),
        optional(
            "calls",
            Kind::AnyOf(&[
                Kind::Map(&Kind::Integer { min: 1, max: 65535 }),
                Kind::List(&Kind::NonEmpty),
            ]),
            "Called service → the local port (127.0.0.1) its sidecar listens on for the app; or a list of called services, reached through their `vip`.",
        ),
    ],
);

const RULE: Object = object(
    "mesh_rule",
    "Calls from one service to another that are allowed.",
    &[
        required("from", Kind::NonEmpty, "The calling service."),
        required("to", Kind::NonEmpty, "The called service."),
        optional(
            "methods",
            Kind::List(&Kind::NonEmpty),
            "HTTP methods (http/grpc services only); default any.",
        ),
        optional(
            "paths",
            Kind::List(&Kind::NonEmpty),
            "Paths, or prefixes ending in * (http/grpc services only); default any.",
        ),
    ],
);

/// Decodes `mesh:` and adds a cluster per callable service to `clusters`. VIPs must not be
/// the address of a listener or an endpoint among `listeners` and `clusters`.
pub(super) fn mesh(
    sink: &mut Sink,
    node: &Node,
    clusters: &mut BTreeMap<String, Cluster>,
    listeners: &BTreeMap<String, Listener>,
) -> Option<Mesh> {
    let f = Fields::read(sink, node, "mesh", &MESH)?;
    let mut ok = true;
    let trust_domain = match f.get("trust_domain") {
        Some(n) => {
            let td = reader::string(sink, n, &f.path("trust_domain"));
            match td.as_deref().map(crate::identity::check_trust_domain) {
                Some(Ok(())) => td,
                Some(Err(e)) => {
                    sink.error(n, &f.path("trust_domain"), e);
                    ok = false;
                    None
                }
                None => {
                    ok = false;
                    None
                }
            }
        }
        None => None,
    };
    let certificate_ttl = match f.get("certificate_ttl") {
        Some(n) => f.duration(sink, n, "certificate_ttl"),
        None => Some(Mesh::DEFAULT_TTL),
    };
    let default = match f.get("default") {
        Some(n) => choice(sink, n, &f.path("default"), &["deny", "allow"]).map(|t| match t {
            "allow" => MeshDefault::Allow,
            _ => MeshDefault::Deny,
        }),
        None => Some(MeshDefault::Deny),
    };
    let outbound = match f.get("outbound") {
        Some(n) => choice(sink, n, &f.path("outbound"), MeshOutbound::NAMES).map(|t| match t {
            "registry_only" => MeshOutbound::RegistryOnly,
            _ => MeshOutbound::Passthrough,
        }),
        None => Some(MeshOutbound::Passthrough),
    };
    let mut services = BTreeMap::new();
    let mut keys: HashMap<String, &Node> = HashMap::new();
    if let Some(n) = f.get("services") {
        let entries = reader::named_entries(sink, n, &f.path("services")).unwrap_or(&[]);
        if entries.len() > Mesh::MAX_SERVICES {
            sink.error(
                n,
                &f.path("services"),
                format!(
                    "{} services; at most {} are accepted",
                    entries.len(),
                    Mesh::MAX_SERVICES
                ),
            );
            return None;
        }
        for (key, value) in entries {
            let Some(name) = reader::non_empty_string(sink, key, &f.path("services")) else {
                ok = false;
                continue;
            };
            let path = format!("mesh.services.{name}");
            if let Err(e) = super::check_name(&name) {
                sink.error(key, &path, e);
                ok = false;
                continue;
            }
            match service(sink, value, &path) {
                Some(s) => {
                    keys.insert(name.clone(), key);
                    services.insert(name, s);
                }
                None => ok = false,
            }
        }
    }
    ok &= check_calls(sink, node, &services, &keys);
    ok &= check_vips(sink, node, &services, &keys, clusters, listeners);
    let allow = match f.get("allow") {
        Some(n) => rules(sink, n, &f.path("allow"), &services),
        None => Some(Vec::new()),
    };
    let mesh = Mesh {
        trust_domain,
        certificate_ttl: certificate_ttl?,
        default: default?,
        outbound: outbound?,
        services,
        allow: allow?,
    };
    if !ok {
        return None;
    }
    for (name, s) in &mesh.services {
        if let Some(_port) = s.port {
            let cluster = instances(name, s.protocol);
            clusters.insert(cluster.name.clone(), cluster);
        }
    }
    Some(mesh)
}

fn service(sink: &mut Sink, node: &Node, path: &str) -> Option<MeshService> {
    let f = Fields::read(sink, node, path, &SERVICE)?;
    let port = match f.get("port") {
        Some(n) => Some(u16::try_from(f.integer(sink, n, "port")?).ok()?),
        None => None,
    };
    let protocol = match f.get("protocol") {
        Some(n) => choice(sink, n, &f.path("protocol"), MeshProtocol::NAMES)
            .and_then(MeshProtocol::from_name)?,
        None => MeshProtocol::Http,
    };
    let vip = match f.get("vip") {
        Some(n) => Some(reader::socket_address(sink, n, &f.path("vip"))?),
        None => None,
    };
    let calls = match f.get("calls") {
        Some(n) if matches!(n.value, Value::Seq(_)) => call_list(sink, n, &f.path("calls"))?,
        Some(n) => call_ports(sink, n, &f.path("calls"), port)?,
        None => BTreeMap::new(),
    };
    Some(MeshService {
        port,
        protocol,
        vip,
        calls,
    })
}

/// `calls: [a, b]`: services reached through their VIPs, no local port.
fn call_list(sink: &mut Sink, node: &Node, path: &str) -> Option<BTreeMap<String, Option<u16>>> {
    let items = reader::list(sink, node, path)?;
    too_many_calls(sink, node, path, items.len())?;
    let mut calls = BTreeMap::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let ipath = format!("{path}[{i}]");
        let Some(called) = reader::non_empty_string(sink, item, &ipath) else {
            ok = false;
            continue;
        };
        if calls.insert(called.clone(), None).is_some() {
            sink.error(item, &ipath, format!("`{called}` is listed twice"));
            ok = false;
        }
    }
    ok.then_some(calls)
}

fn too_many_calls(sink: &mut Sink, node: &Node, path: &str, n: usize) -> Option<()> {
    if n > Mesh::MAX_CALLS {
        sink.error(
            node,
            path,
            format!("{n} calls; at most {} are accepted", Mesh::MAX_CALLS),
        );
        return None;
    }
    Some(())
}

/// `calls: { a: 15101 }`: each called service gets a local port on the sidecar's host.
fn call_ports(
    sink: &mut Sink,
    n: &Node,
    path: &str,
    port: Option<u16>,
) -> Option<BTreeMap<String, Option<u16>>> {
    let entries = reader::named_entries(sink, n, path)?;
    too_many_calls(sink, n, path, entries.len())?;
    let mut calls = BTreeMap::new();
    let mut ok = true;
    // The app's port and every local port share the sidecar's host.
    let mut used: HashMap<u16, String> = HashMap::new();
    if let Some(p) = port {
        used.insert(p, "the service's own `port`".to_string());
    }
    for (key, value) in entries {
        let Some(called) = reader::non_empty_string(sink, key, path) else {
            ok = false;
            continue;
        };
        let cpath = format!("{path}.{called}");
        let Some(local) = reader::integer(sink, value, &cpath, 1, 65535) else {
            ok = false;
            continue;
        };
        let local = local as u16;
        if let Some(first) = used.get(&local) {
            sink.error(
                value,
                &cpath,
                format!("port {local} is already used by {first}"),
            );
            ok = false;
            continue;
        }
        used.insert(local, format!("the call to `{called}`"));
        calls.insert(called, Some(local));
    }
    ok.then_some(calls)
}

/// Each VIP names one service, and is neither a listener's address nor an endpoint's: a
/// transparent sidecar would otherwise catch calls meant for them.
fn check_vips(
    sink: &mut Sink,
    mesh: &Node,
    services: &BTreeMap<String, MeshService>,
    keys: &HashMap<String, &Node>,
    clusters: &BTreeMap<String, Cluster>,
    listeners: &BTreeMap<String, Listener>,
) -> bool {
    let mut ok = true;
    let mut seen: HashMap<SocketAddr, &str> = HashMap::new();
    for (name, s) in services {
        let Some(vip) = s.vip else { continue };
        let path = format!("mesh.services.{name}.vip");
        let at = keys.get(name).copied().unwrap_or(mesh);
        let problem = if let Some(first) = seen.get(&vip) {
            Some(format!("{vip} is already the VIP of service `{first}`"))
        } else if vip.port() == 0 || vip.ip().is_unspecified() {
            Some(format!("{vip}: a VIP is one address and a port, not 0"))
        } else if !vip.is_ipv4() {
            Some(format!(
                "{vip}: a VIP is an IPv4 address (transparent sidecars redirect IPv4 only)"
            ))
        } else if vip.ip() == std::net::Ipv4Addr::LOCALHOST {
            // Sidecars' local ports live there (a VIP listener at one was refused by the
            // caller's Envoy as a duplicate address), and iptables never redirects it.
            Some(format!(
                "{vip}: 127.0.0.1 is where sidecars listen for their apps and is never \
                 redirected; give the VIP an address of its own (127.240.0.0/16, for instance)"
            ))
        } else if let Some(why) = crate::runtime::admission::refused(vip.ip()) {
            Some(format!("{vip} is {why}: not a VIP"))
        } else if let Some(l) = listeners.values().find(|l| l.address() == Some(vip)) {
            Some(format!("{vip} is the address of listener `{}`", l.name))
        } else {
            clusters
                .values()
                .find(|c| c.endpoints.iter().any(|e| e.address == vip))
                .map(|c| format!("{vip} is an endpoint of cluster `{}`", c.name))
        };
        match problem {
            Some(p) => {
                sink.error(at, &path, p);
                ok = false;
            }
            None => {
                seen.insert(vip, name);
            }
        }
    }
    ok
}

/// Every called service exists, has a port (and a VIP when no local port is given), and is
/// not the caller itself.
fn check_calls(
    sink: &mut Sink,
    mesh: &Node,
    services: &BTreeMap<String, MeshService>,
    keys: &HashMap<String, &Node>,
) -> bool {
    let mut ok = true;
    for (name, s) in services {
        for (called, local) in &s.calls {
            let path = format!("mesh.services.{name}.calls.{called}");
            let at = keys.get(name).copied().unwrap_or(mesh);
            let problem = match services.get(called) {
                None => Some(format!("unknown service `{called}`")),
                Some(_) if called == name => {
                    Some("a service does not call itself through its sidecar".to_string())
                }
                Some(c) if c.port.is_none() => Some(format!(
                    "service `{called}` has no `port`: nothing can call it"
                )),
                Some(c) if local.is_none() && c.vip.is_none() => Some(format!(
                    "service `{called}` has no `vip`: a call without a local port goes through the called service's vip"
                )),
                Some(_) => None,
            };
            if let Some(p) = problem {
                sink.error(at, &path, p);
                ok = false;
            }
        }
    }
    ok
}

fn rules(
    sink: &mut Sink,
    node: &Node,
    path: &str,
    services: &BTreeMap<String, MeshService>,
) -> Option<Vec<AllowRule>> {
    let items = reader::list(sink, node, path)?;
    if items.len() > Mesh::MAX_RULES {
        sink.error(
            node,
            path,
            format!(
                "{} rules; at most {} are accepted",
                items.len(),
                Mesh::MAX_RULES
            ),
        );
        return None;
    }
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match rule(sink, item, &format!("{path}[{i}]"), services) {
            Some(r) => out.push(r),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn rule(
    sink: &mut Sink,
    node: &Node,
    path: &str,
    services: &BTreeMap<String, MeshService>,
) -> Option<AllowRule> {
    let f = Fields::read(sink, node, path, &RULE)?;
    let mut named = |key: &str| -> Option<String> {
        let Some(n) = f.get(key) else {
            sink.error(node, &f.path(key), format!("missing field `{key}`"));
            return None;
        };
        let name = reader::non_empty_string(sink, n, &f.path(key))?;
        if !services.contains_key(&name) {
            sink.error(n, &f.path(key), format!("unknown service `{name}`"));
            return None;
        }
        Some(name)
    };
    let (from, to) = (named("from"), named("to"));
    let (from, to) = (from?, to?);
    let protocol = services[&to].protocol;
    let mut strings = |key: &str, max: usize, check: fn(&str) -> Result<(), String>| {
        let Some(n) = f.get(key) else {
            return Some(Vec::new());
        };
        let kpath = f.path(key);
        if !protocol.is_http() {
            sink.error(
                n,
                &kpath,
                format!("`{to}` is a tcp service: rules on it cannot name {key}"),
            );
            return None;
        }
        let items = reader::list(sink, n, &kpath)?;
        if items.len() > max {
            sink.error(n, &kpath, format!("at most {max} entries are accepted"));
            return None;
        }
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let ipath = format!("{kpath}[{i}]");
            let text = reader::non_empty_string(sink, item, &ipath)?;
            if let Err(e) = check(&text) {
                sink.error(item, &ipath, e);
                return None;
            }
            out.push(text);
        }
        Some(out)
    };
    let methods = strings("methods", Mesh::MAX_METHODS, check_method);
    let paths = strings("paths", Mesh::MAX_PATHS, check_path);
    Some(AllowRule {
        from,
        to,
        methods: methods?,
        paths: paths?,
    })
}

fn check_method(m: &str) -> Result<(), String> {
    if m.len() <= 32 && m.bytes().all(|b| b.is_ascii_uppercase() || b == b'-') {
        Ok(())
    } else {
        Err(format!(
            "`{m}` is not an HTTP method (upper case letters, like GET or POST)"
        ))
    }
}

fn check_path(p: &str) -> Result<(), String> {
    if !p.starts_with('/') {
        return Err(format!("`{p}` must start with /"));
    }
    if p.len() > Mesh::MAX_PATH_BYTES {
        return Err(format!(
            "a path is longer than {} bytes",
            Mesh::MAX_PATH_BYTES
        ));
    }
    if p.bytes().any(|b| b.is_ascii_control() || b == b' ') || p[..p.len() - 1].contains('*') {
        return Err(format!(
            "`{p}`: no spaces or control characters; `*` only at the end (a prefix)"
        ));
    }
    Ok(())
}

/// One of `names`, or an error listing them.
fn choice<'a>(sink: &mut Sink, node: &Node, path: &str, names: &[&'a str]) -> Option<&'a str> {
    let text = reader::string(sink, node, path)?;
    match names.iter().find(|n| **n == text) {
        Some(n) => Some(n),
        None => {
            sink.error(
                node,
                path,
                format!(
                    "unknown value `{text}` (expected one of: {})",
                    names.join(", ")
                ),
            );
            None
        }
    }
}

/// The cluster of a service's instances: no configured endpoints (sidecars join it), probed
/// by a TCP connect to each sidecar's inbound listener (which needs a workload certificate to
/// say more), registrations bounded like any cluster's.
fn instances(service: &str, protocol: MeshProtocol) -> Cluster {
    Cluster {
        name: service_cluster(service),
        policy: Policy::RoundRobin,
        endpoints: Vec::new(),
        connect_timeout: secs(1),
        upstream_protocol: match protocol {
            MeshProtocol::Grpc => UpstreamProtocol::Http2,
            _ => UpstreamProtocol::Http1,
        },
        health_check: Some(HealthCheck {
            probe: Probe::Tcp(TcpProbe::default()),
            interval: secs(2),
            timeout: secs(1),
            jitter: crate::config::shape::ms(200),
            healthy_threshold: 1,
            unhealthy_threshold: 2,
            tls: None,
        }),
        outlier_detection: None,
        circuit_breakers: None,
        affinity: None,
        panic_threshold: 0,
        registrations: Some(Registrations::default()),
        hostnames: Vec::new(),
        resolve: Default::default(),
        tls: None,
    }
}
