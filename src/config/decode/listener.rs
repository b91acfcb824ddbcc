//! `listeners.<name>`: an address Envoy listens on (or, with `proxyless_grpc: true`, a target
//! gRPC clients dial as `xds:///<name>`) and its virtual hosts, each with the routes that pick
//! what happens to a request.

use std::collections::BTreeMap;

use crate::config::diagnostic::Sink;
use crate::config::model::{
    AccessLog, Auth, HeaderChanges, Listener, ListenerKind, PathMatch, Redirect, Route,
    RouteAction, RouteMatch, Secrets, Tracing, VirtualHost,
};
use crate::config::reader::{self, Fields};
use crate::config::shape::{Kind, Object, object, optional, required};
use crate::config::yaml::{Location, Node};

use super::defaults::Defaults;
use super::route::{self, RouteContext};
use super::route_policy;

/// A listener holds at most this many virtual hosts unless `--max-hosts-per-listener` says
/// otherwise (see [`crate::config::limits`]), and a host at most [`MAX_DOMAINS`] domains.
pub const MAX_HOSTS: usize = crate::config::limits::DEFAULT_HOSTS_PER_LISTENER;
pub const MAX_DOMAINS: usize = 100;

pub(crate) const LISTENER: Object = object(
    "listener",
    "An address Envoy listens on (or a target proxyless gRPC clients dial) and its routes.",
    &[
        optional(
            "address",
            Kind::Address,
            "ip:port Envoy listens on (not for proxyless_grpc listeners).",
        ),
        optional(
            "routes",
            Kind::List(&Kind::Object(&route::ROUTE)),
            "Routes of the one host that answers every domain (or give `hosts`).",
        ),
        optional(
            "hosts",
            Kind::Map(&Kind::Object(&HOST)),
            "Virtual hosts by name.",
        ),
        optional(
            "proxyless_grpc",
            Kind::Bool,
            "A listener for proxyless gRPC clients (xds:///<listener name>).",
        )
        .defaults_to("false"),
        super::tcp::PROTOCOL,
        optional(
            "to",
            Kind::NonEmpty,
            "protocol: tcp: the cluster connections go to.",
        ),
        optional(
            "sni",
            Kind::Map(&Kind::NonEmpty),
            "protocol: tls_passthrough: server name → cluster.",
        ),
        optional(
            "access_log",
            Kind::AnyOf(&[Kind::NonEmpty, Kind::Object(&super::access_log::ACCESS_LOG)]),
            "`stdout`, an absolute file path, or { path, format }.",
        ),
        optional(
            "tls",
            Kind::Object(&super::tls::LISTENER_TLS),
            "Terminate TLS (HTTPS) with certificates served over SDS.",
        ),
        optional(
            "https_redirect",
            Kind::Bool,
            "Answer every request with a 301 to https://same-host/same-path (no routes).",
        )
        .defaults_to("false"),
        optional("auth", super::auth::AUTH_KIND, super::auth::AUTH_HELP),
        optional(
            "tracing",
            Kind::Object(&super::tracing::TRACING),
            "OpenTelemetry tracing by Envoy, over OTLP/gRPC to a collector cluster.",
        ),
    ],
);

const HOST: Object = object(
    "host",
    "A virtual host: the domains it answers and its routes.",
    &[
        required(
            "domains",
            Kind::List(&Kind::NonEmpty),
            "Domains (`*`, `*.example.com`, `example.*` or exact).",
        ),
        required(
            "routes",
            Kind::List(&Kind::Object(&route::ROUTE)),
            "Routes, tried in order.",
        ),
        optional(
            "headers",
            Kind::Object(&route_policy::HEADER_CHANGES),
            "Header edits for every route of the host.",
        ),
        optional("auth", super::auth::AUTH_KIND, super::auth::AUTH_HELP),
    ],
);

/// A cluster named somewhere other than `clusters`, checked once every file is read.
#[derive(Debug, Clone)]
pub(crate) struct ClusterRef {
    pub(crate) cluster: String,
    pub(crate) loc: Location,
    pub(crate) field: String,
    /// The proxyless gRPC listener whose route names the cluster, if it is one: gRPC clients
    /// then run the cluster, and it must be something they can run.
    pub(crate) grpc_listener: Option<String>,
    /// What needs the cluster to speak HTTP/2 (an OTLP collector, a gRPC authorization
    /// service), if anything does.
    pub(crate) needs_http2: Option<&'static str>,
}

pub(crate) fn listener(
    sink: &mut Sink,
    name: &str,
    node: &Node,
    defaults: &Defaults,
    refs: &mut Vec<ClusterRef>,
    secrets: &mut Secrets,
) -> Option<Listener> {
    let path = format!("listeners.{name}");
    let f = Fields::read(sink, node, &path, &LISTENER)?;
    let grpc = match f.get("proxyless_grpc") {
        Some(n) => reader::boolean(sink, n, &f.path("proxyless_grpc"))?,
        None => false,
    };
    let kind = kind(sink, name, node, &f, grpc);
    let tcp = super::tcp::forward(sink, node, &path, &f, grpc, refs);
    let access_log = access_log(sink, &f, grpc);
    let mut ctx = RouteContext {
        defaults,
        refs,
        grpc_listener: grpc.then(|| name.to_string()),
        secrets,
    };
    let redirect = match f.get("https_redirect") {
        Some(n) => reader::boolean(sink, n, &f.path("https_redirect")),
        None => Some(false),
    };
    let tls = match f.get("tls") {
        Some(n) if grpc || matches!(tcp, Some(Some(_))) || redirect == Some(true) => {
            sink.error(
                n,
                &f.path("tls"),
                "TLS is terminated on HTTP listeners with routes or hosts (not with proxyless_grpc, protocol tcp | tls_passthrough or https_redirect)",
            );
            None
        }
        Some(n) => super::tls::listener_tls(sink, n, &f.path("tls"), ctx.secrets).map(Some),
        None => Some(None),
    };
    let (auth, tracing) = edge(sink, name, &f, matches!(tcp, Some(Some(_))), &mut ctx);
    let hosts = match (f.get("routes"), f.get("hosts")) {
        // TCP listeners forward connections; `tcp::forward` refused any routes or hosts.
        _ if matches!(tcp, Some(Some(_))) => Some(Vec::new()),
        (None, None) if redirect == Some(true) && !grpc => Some(vec![https_redirect(name)]),
        (Some(n), _) | (_, Some(n)) if redirect == Some(true) => {
            sink.error(
                n,
                &path,
                "`https_redirect: true` redirects every request: give no `routes` or `hosts`",
            );
            None
        }
        (Some(n), None) => route::routes(sink, n, &f.path("routes"), &mut ctx).map(|routes| {
            vec![VirtualHost {
                name: name.to_string(),
                domains: vec!["*".to_string()],
                routes,
                headers: HeaderChanges::default(),
                auth: None,
            }]
        }),
        (None, Some(n)) => hosts(sink, n, &f.path("hosts"), &mut ctx),
        (Some(_), Some(_)) => {
            sink.error(
                node,
                &path,
                "give either `routes` (one host for every domain) or `hosts`, not both",
            );
            None
        }
        (None, None) => {
            sink.error(node, &path, "missing field `routes` (or `hosts`)");
            None
        }
    };
    let (hosts, tls) = (hosts?, tls?);
    if let (Some(t), Some(n)) = (&tls, f.get("tls")) {
        super::tls::check_coverage(sink, n, &f.path("tls"), t, &hosts, ctx.secrets);
    }
    Some(Listener {
        name: name.to_string(),
        kind: kind?,
        hosts,
        tcp: tcp?,
        tls,
        access_log: access_log?,
        auth: auth?,
        tracing: tracing?,
    })
}

/// The listener's `auth` and `tracing`: HTTP listeners only (a TCP listener has no requests).
fn edge(
    sink: &mut Sink,
    name: &str,
    f: &Fields<'_>,
    tcp: bool,
    ctx: &mut RouteContext<'_>,
) -> (Option<Option<Auth>>, Option<Option<Tracing>>) {
    for key in ["auth", "tracing"] {
        if let (true, Some(n)) = (tcp, f.get(key)) {
            sink.error(
                n,
                &f.path(key),
                format!("`{key}` applies to HTTP requests; a TCP listener forwards connections"),
            );
            return (None, None);
        }
    }
    let auth = match f.get("auth") {
        Some(n) => super::auth::auth(sink, n, &f.path("auth"), ctx, false).map(Some),
        None => Some(None),
    };
    let tracing = match f.get("tracing") {
        Some(n) => super::tracing::tracing(sink, n, &f.path("tracing"), name, ctx).map(Some),
        None => Some(None),
    };
    (auth, tracing)
}

/// `https_redirect: true`: one host for every domain whose one route answers every request
/// with a 301 to the same host and path over https.
fn https_redirect(name: &str) -> VirtualHost {
    VirtualHost {
        name: name.to_string(),
        domains: vec!["*".to_string()],
        routes: vec![Route {
            matcher: RouteMatch {
                path: PathMatch::Prefix("/".to_string()),
                headers: Vec::new(),
                query: Vec::new(),
                methods: Vec::new(),
            },
            action: RouteAction::Redirect(Redirect {
                scheme: Some("https".to_string()),
                host: None,
                port: None,
                path: None,
                code: 301,
            }),
            timeout: None,
            retries: None,
            rewrite: None,
            headers: HeaderChanges::default(),
            rate_limit: None,
            mirror: None,
            websocket: false,
            cors: None,
            auth: None,
            fault: None,
        }],
        headers: HeaderChanges::default(),
        auth: None,
    }
}

/// `Some(None)` when the listener has no access log, `None` after reporting an error.
fn access_log(sink: &mut Sink, f: &Fields<'_>, grpc: bool) -> Option<Option<AccessLog>> {
    let Some(n) = f.get("access_log") else {
        return Some(None);
    };
    let path = f.path("access_log");
    if grpc {
        sink.error(
            n,
            &path,
            "gRPC clients have no Envoy to write an access log: no `access_log` here",
        );
        return None;
    }
    let tcp = f
        .get("protocol")
        .and_then(Node::as_str)
        .is_some_and(|p| p != "http");
    super::access_log::access_log(sink, n, &path, tcp).map(Some)
}

fn kind(
    sink: &mut Sink,
    name: &str,
    node: &Node,
    f: &Fields<'_>,
    grpc: bool,
) -> Option<ListenerKind> {
    let path = format!("listeners.{name}");
    match (grpc, f.get("address")) {
        (true, None) => Some(ListenerKind::ProxylessGrpc),
        (true, Some(n)) => {
            sink.error(
                n,
                &f.path("address"),
                "a proxyless_grpc listener has no address: gRPC clients dial xds:///<listener name>",
            );
            None
        }
        (false, Some(n)) => {
            let address = reader::socket_address(sink, n, &f.path("address"));
            if name.contains(':') {
                sink.error(
                    node,
                    &path,
                    "only proxyless_grpc listeners may have `:port` in their name",
                );
                None
            } else {
                address.map(ListenerKind::Envoy)
            }
        }
        (false, None) => {
            sink.error(
                node,
                &path,
                "missing field `address` (or `proxyless_grpc: true` for gRPC clients)",
            );
            None
        }
    }
}

/// `hosts: { site: { domains: [...], routes: [...], headers: {...} } }`. A domain may appear
/// on one host only: Envoy would refuse the whole RouteConfiguration otherwise.
fn hosts(
    sink: &mut Sink,
    node: &Node,
    path: &str,
    ctx: &mut RouteContext<'_>,
) -> Option<Vec<VirtualHost>> {
    let entries = reader::named_entries(sink, node, path)?;
    if entries.is_empty() {
        sink.error(node, path, "a listener needs at least one host");
        return None;
    }
    let max = crate::config::limits::hosts_per_listener();
    if entries.len() > max {
        sink.error(
            node,
            path,
            format!(
                "{} hosts: at most {max} per listener (raise --max-hosts-per-listener)",
                entries.len()
            ),
        );
        return None;
    }
    let mut out: Vec<VirtualHost> = Vec::new();
    let mut owners: BTreeMap<String, (String, Location)> = BTreeMap::new();
    let mut ok = true;
    for (k, v) in entries {
        let Some(name) = reader::non_empty_string(sink, k, path) else {
            ok = false;
            continue;
        };
        let hpath = reader::join(path, &name);
        let Some(host) = host(sink, &name, v, &hpath, ctx, &mut owners) else {
            ok = false;
            continue;
        };
        out.push(host);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    ok.then_some(out)
}

fn host(
    sink: &mut Sink,
    name: &str,
    node: &Node,
    path: &str,
    ctx: &mut RouteContext<'_>,
    owners: &mut BTreeMap<String, (String, Location)>,
) -> Option<VirtualHost> {
    let f = Fields::read(sink, node, path, &HOST)?;
    let domains = match f.get("domains") {
        Some(n) => domains(sink, n, &f.path("domains"), name, ctx, owners),
        None => {
            sink.error(node, path, "missing field `domains` (use [\"*\"] for any)");
            None
        }
    };
    let routes = match f.get("routes") {
        Some(n) => route::routes(sink, n, &f.path("routes"), ctx),
        None => {
            sink.error(node, path, "missing field `routes`");
            None
        }
    };
    let headers = match f.get("headers") {
        Some(n) => route_policy::header_changes(sink, n, &f.path("headers"), ctx),
        None => Some(HeaderChanges::default()),
    };
    let auth = match f.get("auth") {
        Some(n) => super::auth::auth(sink, n, &f.path("auth"), ctx, true).map(Some),
        None => Some(None),
    };
    Some(VirtualHost {
        name: name.to_string(),
        domains: domains?,
        routes: routes?,
        headers: headers?,
        auth: auth?,
    })
}

fn domains(
    sink: &mut Sink,
    node: &Node,
    path: &str,
    host: &str,
    ctx: &RouteContext<'_>,
    owners: &mut BTreeMap<String, (String, Location)>,
) -> Option<Vec<String>> {
    let items = reader::list(sink, node, path)?;
    if items.is_empty() || items.len() > MAX_DOMAINS {
        sink.error(
            node,
            path,
            format!("a host needs 1 to {MAX_DOMAINS} domains"),
        );
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let ipath = format!("{path}[{i}]");
        let Some(domain) = reader::non_empty_string(sink, item, &ipath) else {
            ok = false;
            continue;
        };
        let domain = domain.to_ascii_lowercase();
        if let Err(e) = check_domain(&domain, ctx.grpc_listener.is_some()) {
            sink.error(item, &ipath, e);
            ok = false;
            continue;
        }
        if let Some((other, loc)) = owners.get(&domain) {
            let msg = if other == host {
                format!("`{domain}` is listed twice (first at {loc})")
            } else {
                format!(
                    "`{domain}` is already a domain of host `{other}` ({loc}): a domain belongs to one host"
                )
            };
            sink.error(item, &ipath, msg);
            ok = false;
            continue;
        }
        owners.insert(domain.clone(), (host.to_string(), item.loc.clone()));
        out.push(domain);
    }
    ok.then_some(out)
}

/// Envoy's domain forms: `*`, `*.example.com` / `*-suffix` (leading wildcard), `example.*`
/// (trailing wildcard) or an exact name. Envoy listeners match the Host without its port
/// (flotilla sets `strip_any_host_port`), so a port is refused there; gRPC clients match the
/// target they dial, which may carry one.
fn check_domain(domain: &str, grpc: bool) -> Result<(), String> {
    if domain == "*" {
        return Ok(());
    }
    let bare = domain
        .strip_prefix('*')
        .or_else(|| domain.strip_suffix('*'))
        .unwrap_or(domain);
    let (name, port) = match bare.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (bare, None),
    };
    if bare.is_empty()
        || name.contains('*')
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return Err(format!(
            "`{domain}` is not a domain: use a name, `*.suffix`, `prefix.*` or `*`"
        ));
    }
    match port {
        Some(_) if !grpc => Err(format!(
            "`{domain}`: Envoy listeners match the Host without its port; drop `:port`"
        )),
        Some(p) if p.parse::<u16>().map_or(true, |p| p == 0) => {
            Err(format!("`{domain}`: `{p}` is not a port"))
        }
        _ => Ok(()),
    }
}
