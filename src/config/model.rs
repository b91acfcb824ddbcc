//! The validated configuration: what the YAML means, with every default applied.
//!
//! Nothing here can be invalid: `decode` only builds these values after checking them, so
//! `translate` never has to guess. Maps are `BTreeMap`s so iteration order, and with it every
//! byte flotilla sends to Envoy, is the same whatever order the YAML was written in.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    pub clusters: BTreeMap<String, Cluster>,
    pub listeners: BTreeMap<String, Listener>,
    pub fleets: BTreeMap<String, Fleet>,
    /// Certificates and CAs that listeners and clusters use, by Secret name.
    pub secrets: Secrets,
    /// The DNS servers Envoy resolves the names it resolves itself with (`resolve: envoy`
    /// clusters, remote JWKS hosts): serve's `--dns-server`; empty: Envoy's own (the system's)
    /// resolver configuration.
    pub envoy_dns_servers: Vec<SocketAddr>,
    /// The operator's `allow_empty: true`: serve may apply this config even though it removes
    /// every listener or cluster (see `config::empty`).
    pub allow_empty: bool,
    /// Where each item was written (for NACKs, diffs and status); never part of equality.
    pub sources: super::sources::Sources,
    /// `mesh:` (sidecars with identities); its services' instance clusters are in `clusters`.
    pub mesh: Option<Mesh>,
}

impl Config {
    /// Every file besides the YAML whose change asks for a reload: certificates, keys and
    /// CAs, and JWKS files.
    pub fn watched_files(&self) -> impl Iterator<Item = &std::path::Path> {
        secret_files(&self.secrets).chain(self.listeners.values().flat_map(Listener::jwks_files))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    pub name: String,
    pub policy: Policy,
    pub endpoints: Vec<Endpoint>,
    pub connect_timeout: Duration,
    pub upstream_protocol: UpstreamProtocol,
    pub health_check: Option<HealthCheck>,
    pub outlier_detection: Option<OutlierDetection>,
    pub circuit_breakers: Option<CircuitBreakers>,
    pub affinity: Option<Affinity>,
    /// Envoy's healthy-panic threshold, in percent. See `translate::cluster` for why the
    /// default is 0.
    pub panic_threshold: u32,
    /// `registrations:`: endpoints may register themselves into the cluster only when it is
    /// present (opt-in); without it every registration is refused.
    pub registrations: Option<Registrations>,
    /// `tls`: Envoy (and flotilla's health probes) reach the endpoints over TLS.
    pub tls: Option<UpstreamTls>,
    /// Endpoints written as `host:port`: their addresses come from DNS (see `crate::dns`).
    pub hostnames: Vec<HostEndpoint>,
    /// Who resolves `hostnames`.
    pub resolve: Resolve,
}

/// Who turns a cluster's hostnames into addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Resolve {
    /// flotilla resolves them and sends every address as an endpoint over EDS: health-checked,
    /// weighted and drained like any other (the default).
    #[default]
    Flotilla,
    /// Envoy resolves them itself (`resolve: envoy`): a STRICT_DNS cluster, or LOGICAL_DNS with
    /// `logical: true` (one name, re-resolved per new connection).
    Envoy { logical: bool },
}

/// An endpoint named by DNS (`db.internal:5432`).
#[derive(Debug, Clone)]
pub struct HostEndpoint {
    /// The name, lowercase, without a trailing dot.
    pub host: String,
    pub port: u16,
    pub weight: u32,
    pub zone: Option<String>,
    pub priority: u32,
    /// Where it was written, for errors found by resolving it (`NXDOMAIN` at first load).
    pub loc: super::yaml::Location,
    /// Its field path (`clusters.db.endpoints[0]`).
    pub field: String,
}

/// Where a hostname was written does not change what it means.
impl PartialEq for HostEndpoint {
    fn eq(&self, other: &HostEndpoint) -> bool {
        (
            &self.host,
            self.port,
            self.weight,
            &self.zone,
            self.priority,
        ) == (
            &other.host,
            other.port,
            other.weight,
            &other.zone,
            other.priority,
        )
    }
}

impl HostEndpoint {
    /// The endpoint one of the name's addresses stands for.
    pub fn at(&self, ip: std::net::IpAddr) -> Endpoint {
        Endpoint {
            address: SocketAddr::new(ip, self.port),
            weight: self.weight,
            zone: self.zone.clone(),
            priority: self.priority,
        }
    }
}

/// What endpoints may add to a cluster by registering themselves (the admin API's
/// `POST .../registrations`), which anyone holding the admin token can call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registrations {
    /// Live registrations at most; one more is refused until a lease ends.
    pub max: usize,
    /// Ranges of addresses refused by default (unspecified, link-local, cloud metadata
    /// services) that this cluster accepts anyway.
    pub allow_addresses: Vec<ipnet::IpNet>,
    /// `from`: the fleets whose identities (xDS client certificates, under mTLS) may register
    /// into the cluster over a registration stream. Under mTLS a stream may register only
    /// into clusters that name its fleet; a stream without an identity only into clusters
    /// without `from`.
    pub from: Option<Vec<String>>,
}

impl Registrations {
    pub const DEFAULT_MAX: usize = 1_000;
    /// The highest `max` a cluster may set.
    pub const MAX: usize = 10_000;
    /// `allow_addresses` entries at most.
    pub const MAX_ALLOWED: usize = 64;
    /// `from` entries at most.
    pub const MAX_FROM: usize = 64;
}

impl Default for Registrations {
    fn default() -> Registrations {
        Registrations {
            max: Registrations::DEFAULT_MAX,
            allow_addresses: Vec::new(),
            from: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Policy {
    RoundRobin,
    LeastRequest,
    RingHash,
    Maglev,
    Random,
    /// flotilla's own: endpoint weights follow the latency its health checker measures.
    LeastResponseTime,
}

impl Policy {
    pub const NAMES: &'static [&'static str] = &[
        "round_robin",
        "least_request",
        "ring_hash",
        "maglev",
        "random",
        "least_response_time",
    ];

    pub fn from_name(name: &str) -> Option<Policy> {
        Some(match name {
            "round_robin" => Policy::RoundRobin,
            "least_request" => Policy::LeastRequest,
            "ring_hash" => Policy::RingHash,
            "maglev" => Policy::Maglev,
            "random" => Policy::Random,
            "least_response_time" => Policy::LeastResponseTime,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Policy::RoundRobin => "round_robin",
            Policy::LeastRequest => "least_request",
            Policy::RingHash => "ring_hash",
            Policy::Maglev => "maglev",
            Policy::Random => "random",
            Policy::LeastResponseTime => "least_response_time",
        }
    }

    /// Whether the policy picks hosts by hashing a request key (what hash affinity needs).
    pub fn is_consistent_hash(self) -> bool {
        matches!(self, Policy::RingHash | Policy::Maglev)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    Http1,
    Http2,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub address: SocketAddr,
    pub weight: u32,
    pub zone: Option<String>,
    pub priority: u32,
}

impl Endpoint {
    /// An endpoint in no zone at priority 0: what a runtime registration adds.
    pub fn registered(address: SocketAddr, weight: u32) -> Endpoint {
        Endpoint {
            address,
            weight,
            zone: None,
            priority: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub probe: Probe,
    pub interval: Duration,
    pub timeout: Duration,
    pub jitter: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    /// The cluster's upstream TLS, which HTTP and gRPC probes use too.
    pub tls: Option<ProbeTls>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    Http(HttpProbe),
    Tcp(TcpProbe),
    Grpc(GrpcProbe),
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpProbe {
    pub path: String,
    pub host: Option<String>,
    /// Inclusive ranges; a single status is a range of one.
    pub expected_statuses: Vec<(u16, u16)>,
    pub body_contains: Option<String>,
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct TcpProbe {
    pub send: Option<String>,
    pub expect: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct GrpcProbe {
    pub service: String,
    pub authority: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutlierDetection {
    pub consecutive_5xx: Option<u32>,
    pub consecutive_gateway_failure: Option<u32>,
    pub interval: Duration,
    pub base_ejection_time: Duration,
    pub max_ejection_percent: u32,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct CircuitBreakers {
    pub max_connections: Option<u32>,
    pub max_pending_requests: Option<u32>,
    pub max_requests: Option<u32>,
    pub max_retries: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Affinity {
    /// Consistent hash on a cookie that Envoy sets when the client has none.
    Cookie(CookieSpec),
    /// Consistent hash on a request header.
    Header(String),
    /// Consistent hash on the downstream connection's source address ("ip-hash").
    SourceIp,
    /// Strict stickiness: Envoy's stateful_session filter writes the chosen host into a cookie.
    StickyCookie { cookie: CookieSpec, strict: bool },
}

impl Affinity {
    /// Hash affinity only works when the load balancer hashes; sticky cookies work with any.
    pub fn needs_consistent_hash(&self) -> bool {
        !matches!(self, Affinity::StickyCookie { .. })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CookieSpec {
    pub name: String,
    /// Zero means a session cookie.
    pub ttl: Duration,
    pub path: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    pub name: String,
    pub kind: ListenerKind,
    /// Virtual hosts in name order; `routes:` written directly on a listener is one host named
    /// after the listener with domains `["*"]`.
    pub hosts: Vec<VirtualHost>,
    /// `Some` for `protocol: tcp | tls_passthrough` (then `hosts` is empty).
    pub tcp: Option<TcpForward>,
    /// `tls`: Envoy terminates TLS on this listener.
    pub tls: Option<ListenerTls>,
    /// Off unless the listener asks for one.
    pub access_log: Option<AccessLog>,
    /// What every route requires unless its host or itself says otherwise.
    pub auth: Option<Auth>,
    pub tracing: Option<Tracing>,
}

/// Who runs a listener: an Envoy listening on an address, or gRPC clients that take their
/// routing from xDS themselves (`xds:///<name>`), with no proxy and no address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    Envoy(SocketAddr),
    ProxylessGrpc,
}

impl Listener {
    /// The address Envoy listens on; `None` for a proxyless gRPC listener.
    pub fn address(&self) -> Option<SocketAddr> {
        match self.kind {
            ListenerKind::Envoy(a) => Some(a),
            ListenerKind::ProxylessGrpc => None,
        }
    }

    pub fn is_proxyless_grpc(&self) -> bool {
        self.kind == ListenerKind::ProxylessGrpc
    }

    /// Every route of every host, hosts in name order.
    pub fn routes(&self) -> impl Iterator<Item = &Route> {
        self.hosts.iter().flat_map(|h| h.routes.iter())
    }

    /// Every cluster this listener sends traffic to: by its routes (mirrors included), for
    /// a TCP listener by forwarding connections, and the clusters of its authorization
    /// services and trace collector.
    pub fn clusters(&self) -> impl Iterator<Item = &str> {
        self.routes()
            .flat_map(Route::clusters)
            .chain(self.tcp.iter().flat_map(TcpForward::clusters))
            .chain(self.edge_clusters())
    }

    /// Every `auth` written on the listener, its hosts and its routes, outermost first.
    pub fn auths(&self) -> impl Iterator<Item = &Auth> {
        self.auth.iter().chain(self.hosts.iter().flat_map(|h| {
            h.auth
                .iter()
                .chain(h.routes.iter().flat_map(|r| r.auth.iter()))
        }))
    }

    /// The authorization services' and the trace collector's clusters.
    fn edge_clusters(&self) -> impl Iterator<Item = &str> {
        self.auths()
            .filter_map(|a| match a {
                Auth::External(e) => Some(e.cluster.as_str()),
                Auth::None | Auth::Jwt(_) => None,
            })
            .chain(self.tracing.iter().map(|t| t.collector.as_str()))
    }

    /// The clusters flotilla makes for Envoy to fetch remote JWKS through (not in `clusters`).
    pub fn jwks_clusters(&self) -> impl Iterator<Item = String> + '_ {
        self.auths().filter_map(|a| match a {
            Auth::Jwt(Jwt {
                jwks: Jwks::Remote(r),
                ..
            }) => Some(r.cluster_name()),
            _ => None,
        })
    }

    /// The JWKS files this listener's JWT checks read (what a key rotation changes).
    pub fn jwks_files(&self) -> impl Iterator<Item = &std::path::Path> {
        self.auths().filter_map(|a| match a {
            Auth::Jwt(Jwt {
                jwks: Jwks::File { path, .. },
                ..
            }) => Some(path.as_path()),
            _ => None,
        })
    }

    /// The Secrets this listener's TLS names, and the CAs its remote JWKS are fetched with.
    pub fn secrets(&self) -> impl Iterator<Item = &str> {
        self.tls
            .iter()
            .flat_map(|t| {
                t.certificates
                    .iter()
                    .chain(t.client_ca.as_ref())
                    .map(String::as_str)
            })
            .chain(self.auths().filter_map(|a| match a {
                Auth::Jwt(Jwt {
                    jwks:
                        Jwks::Remote(RemoteJwks {
                            ca: TrustedCa::Secret(ca),
                            ..
                        }),
                    ..
                }) => Some(ca.as_str()),
                _ => None,
            }))
    }
}

impl Cluster {
    /// The Secrets this cluster's upstream TLS names.
    pub fn secrets(&self) -> impl Iterator<Item = &str> {
        self.tls.iter().flat_map(|t| {
            let ca = match &t.ca {
                TrustedCa::Secret(name) => Some(name.as_str()),
                TrustedCa::System => None,
            };
            ca.into_iter().chain(t.client_certificate.as_deref())
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fleet {
    pub listeners: Vec<String>,
}

mod access_log;
pub use access_log::*;
mod edge;
pub use edge::*;
mod tcp;
pub use tcp::*;
mod route;
pub use route::*;
mod tls;
pub use tls::*;
mod mesh;
pub use mesh::*;
