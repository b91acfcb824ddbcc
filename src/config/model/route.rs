//! Virtual hosts and routes: what a request is matched on and what happens to it.

use std::collections::BTreeMap;
use std::time::Duration;

/// A set of domains with their own routes (Envoy's `VirtualHost`, nginx's `server` block).
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualHost {
    pub name: String,
    /// Exact names, `*.suffix` / `prefix.*` wildcards, or `*` (the default host).
    pub domains: Vec<String>,
    pub routes: Vec<Route>,
    /// Applied to every request and response of the host, after the route's own.
    pub headers: HeaderChanges,
    /// What the host's routes require unless they say otherwise (else the listener's).
    pub auth: Option<super::Auth>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub matcher: RouteMatch,
    pub action: RouteAction,
    pub timeout: Option<Duration>,
    pub retries: Option<Retries>,
    /// Forwarding routes only (decode refuses it with a redirect or a direct response).
    pub rewrite: Option<Rewrite>,
    pub headers: HeaderChanges,
    pub rate_limit: Option<RateLimit>,
    pub mirror: Option<Mirror>,
    pub websocket: bool,
    pub cors: Option<Cors>,
    /// The route's own `auth` (`Some(Auth::None)`: exempt from its host's or listener's).
    pub auth: Option<super::Auth>,
    pub fault: Option<super::Fault>,
}

impl Route {
    /// The clusters this route sends traffic to, the mirror's included.
    pub fn clusters(&self) -> impl Iterator<Item = &str> {
        self.action
            .clusters()
            .chain(self.mirror.iter().map(|m| m.cluster.as_str()))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouteMatch {
    pub path: PathMatch,
    pub headers: Vec<HeaderMatch>,
    pub query: Vec<QueryMatch>,
    /// Upper-case method names; empty means any method.
    pub methods: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Prefix(String),
    Exact(String),
    /// RE2 syntax, matched against the whole path (without the query string).
    Regex(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMatch {
    pub name: String,
    pub rule: HeaderRule,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderRule {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    /// RE2 syntax, matched against the whole value.
    Regex(String),
    /// `true`: the header is present; `false`: it is absent.
    Present(bool),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryMatch {
    pub name: String,
    /// Query parameters take the same rules as headers.
    pub rule: HeaderRule,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteAction {
    To(String),
    /// (cluster, weight) in the order written.
    Split(Vec<(String, u32)>),
    Redirect(Redirect),
    DirectResponse {
        status: u16,
        body: Option<String>,
    },
}

impl RouteAction {
    pub fn clusters(&self) -> impl Iterator<Item = &str> {
        let (single, split) = match self {
            RouteAction::To(c) => (Some(c.as_str()), &[][..]),
            RouteAction::Split(s) => (None, s.as_slice()),
            RouteAction::Redirect(_) | RouteAction::DirectResponse { .. } => (None, &[][..]),
        };
        single
            .into_iter()
            .chain(split.iter().map(|(c, _)| c.as_str()))
    }

    /// Whether the route sends the request to a cluster (rather than answering it).
    pub fn forwards(&self) -> bool {
        matches!(self, RouteAction::To(_) | RouteAction::Split(_))
    }
}

/// Every part left `None` keeps what the request had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub path: Option<RedirectPath>,
    /// 301, 302, 303, 307 or 308.
    pub code: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedirectPath {
    /// Replaces the whole path.
    Path(String),
    /// Replaces the part of the path the route's prefix matched.
    Prefix(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    pub path: Option<PathRewrite>,
    pub host: Option<HostRewrite>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathRewrite {
    /// Replaces the part of the path the route's prefix matched.
    Prefix(String),
    Regex {
        pattern: String,
        substitution: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRewrite {
    Literal(String),
    /// The chosen endpoint's hostname (Envoy's `auto_host_rewrite`).
    Auto,
}

/// Header edits; values may use Envoy's `%DOWNSTREAM_REMOTE_ADDRESS%`-style variables.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderChanges {
    pub request: HeaderEdit,
    pub response: HeaderEdit,
}

impl HeaderChanges {
    pub fn is_empty(&self) -> bool {
        self.request.is_empty() && self.response.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderEdit {
    /// Appended to any value already there.
    pub add: BTreeMap<String, String>,
    /// Replaces any value already there.
    pub set: BTreeMap<String, String>,
    pub remove: Vec<String>,
}

impl HeaderEdit {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.set.is_empty() && self.remove.is_empty()
    }
}

/// A token bucket per Envoy (each Envoy counts on its own): `burst` tokens, refilled with
/// `requests_per_second` every second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub requests_per_second: u32,
    pub burst: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    pub cluster: String,
    /// 1-100: the share of requests copied to the mirror.
    pub percent: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    /// Exact origins, or `*` for any.
    pub allow_origins: Vec<String>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age: Option<Duration>,
    pub allow_credentials: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Retries {
    pub attempts: u32,
    pub on: Vec<String>,
    pub previous_hosts: bool,
    pub per_try_timeout: Option<Duration>,
}
