//! `mesh:`: services whose Envoy sidecars flotilla gives an identity, mutual TLS on every hop
//! and the authorization rules between them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// The mesh: its services, and which calls between them are allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mesh {
    /// SPIFFE trust domain of the workload identities; `None`: serve's `--trust-domain`.
    pub trust_domain: Option<String>,
    /// Lifetime of the workload certificates flotilla mints; they are renewed at half of it.
    pub certificate_ttl: Duration,
    /// What happens to calls that no `allow` rule matches.
    pub default: MeshDefault,
    /// What a transparent sidecar does with calls to addresses that are no service's VIP.
    pub outbound: MeshOutbound,
    pub services: BTreeMap<String, MeshService>,
    pub allow: Vec<AllowRule>,
}

impl Mesh {
    pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
    pub const MIN_TTL: Duration = Duration::from_secs(60);
    pub const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
    /// Services in one mesh at most.
    pub const MAX_SERVICES: usize = 10_000;
    /// `calls` entries of one service at most.
    pub const MAX_CALLS: usize = 256;
    /// `allow` rules at most.
    pub const MAX_RULES: usize = 10_000;
    /// Methods, and paths, of one rule at most.
    pub const MAX_METHODS: usize = 16;
    pub const MAX_PATHS: usize = 64;
    /// Bytes in one path of a rule.
    pub const MAX_PATH_BYTES: usize = 1024;

    /// The rules that allow calls into `service`.
    pub fn rules_to<'a>(&'a self, service: &'a str) -> impl Iterator<Item = &'a AllowRule> {
        self.allow.iter().filter(move |r| r.to == service)
    }
}

/// `default:` for calls no rule allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeshDefault {
    Deny,
    Allow,
}

/// `outbound:` what a transparent sidecar does with a call to an address that is no
/// service's VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeshOutbound {
    /// Sent on to the address the app dialled, unchanged (outside the mesh, no mTLS).
    Passthrough,
    /// Refused: apps reach only the mesh's services (Istio's REGISTRY_ONLY).
    RegistryOnly,
}

impl MeshOutbound {
    pub const NAMES: &'static [&'static str] = &["passthrough", "registry_only"];
}

/// What an application speaks on its port: decides HTTP rules (methods, paths) or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeshProtocol {
    Http,
    Grpc,
    Tcp,
}

impl MeshProtocol {
    pub const NAMES: &'static [&'static str] = &["http", "grpc", "tcp"];

    pub fn from_name(name: &str) -> Option<MeshProtocol> {
        Some(match name {
            "http" => MeshProtocol::Http,
            "grpc" => MeshProtocol::Grpc,
            "tcp" => MeshProtocol::Tcp,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            MeshProtocol::Http => "http",
            MeshProtocol::Grpc => "grpc",
            MeshProtocol::Tcp => "tcp",
        }
    }

    /// Requests (HTTP/1.1 or HTTP/2), not bare connections.
    pub fn is_http(self) -> bool {
        self != MeshProtocol::Tcp
    }
}

/// One service of the mesh: the app behind each of its sidecars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshService {
    /// The app's port; the inbound listener forwards to 127.0.0.1:port. `None`: the service
    /// only calls others (nothing may call it).
    pub port: Option<u16>,
    pub protocol: MeshProtocol,
    /// The stable virtual address apps dial for this service (like a ClusterIP): a
    /// transparent sidecar catches calls to it and sends them to the service's instances.
    pub vip: Option<SocketAddr>,
    /// Called service → the local port its sidecar listens on for the app (127.0.0.1), or
    /// `None`: reached through the called service's VIP only (`calls: [name]`).
    pub calls: BTreeMap<String, Option<u16>>,
}

/// `allow:` one kind of call: `from` may call `to` (with these methods, on these paths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowRule {
    pub from: String,
    pub to: String,
    /// Empty: any method.
    pub methods: Vec<String>,
    /// Empty: any path. A path ending in `*` is a prefix.
    pub paths: Vec<String>,
}

/// The cluster that holds a mesh service's instances (the sidecars that registered their
/// inbound address): the registry and the health checker see it like any cluster. The `:` is
/// outside the YAML's name alphabet, so no configured cluster can take the name.
pub fn service_cluster(service: &str) -> String {
    format!("mesh:{service}")
}

/// The mesh service whose instances a cluster holds, if it is one (see [`service_cluster`]).
pub fn cluster_service(cluster: &str) -> Option<&str> {
    cluster.strip_prefix("mesh:")
}
