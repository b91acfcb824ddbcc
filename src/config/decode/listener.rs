//! `listeners.<name>`: an address Envoy listens on (or, with `proxyless_grpc: true`, a target
//! gRPC clients dial as `xds:///<name>`) and the routes that pick a cluster.

use crate::config::diagnostic::Sink;
use crate::config::model::{
    HeaderMatch, HeaderRule, Listener, ListenerKind, PathMatch, Route, RouteAction, RouteMatch,
};
use crate::config::reader::{self, Fields};
use crate::config::yaml::{Location, Node};

use super::defaults::{Defaults, ROUTE_TIMEOUT};
use super::resilience;

/// A cluster named somewhere other than `clusters`, checked once every file is read.
#[derive(Debug, Clone)]
pub(crate) struct ClusterRef {
    pub(crate) cluster: String,
    pub(crate) loc: Location,
    pub(crate) field: String,
    /// The proxyless gRPC listener whose route names the cluster, if it is one: gRPC clients
    /// then run the cluster, and it must be something they can run.
    pub(crate) grpc_listener: Option<String>,
}

pub(crate) fn listener(
    sink: &mut Sink,
    name: &str,
    node: &Node,
    defaults: &Defaults,
    refs: &mut Vec<ClusterRef>,
) -> Option<Listener> {
    let path = format!("listeners.{name}");
    let f = Fields::read(sink, node, &path, &["address", "routes", "proxyless_grpc"])?;
    let grpc = match f.get("proxyless_grpc") {
        Some(n) => reader::boolean(sink, n, &f.path("proxyless_grpc"))?,
        None => false,
    };
    let kind = match (grpc, f.get("address")) {
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
    };
    let grpc_listener = grpc.then(|| name.to_string());
    let routes = match f.get("routes") {
        Some(n) => routes(sink, n, &f.path("routes"), defaults, refs, &grpc_listener),
        None => {
            sink.error(node, &path, "missing field `routes`");
            None
        }
    };
    Some(Listener {
        name: name.to_string(),
        kind: kind?,
        routes: routes?,
    })
}

fn routes(
    sink: &mut Sink,
    node: &Node,
    path: &str,
    defaults: &Defaults,
    refs: &mut Vec<ClusterRef>,
    grpc_listener: &Option<String>,
) -> Option<Vec<Route>> {
    let items = reader::list(sink, node, path)?;
    if items.is_empty() {
        sink.error(node, path, "a listener needs at least one route");
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match route(
            sink,
            item,
            &format!("{path}[{i}]"),
            defaults,
            refs,
            grpc_listener,
        ) {
            Some(r) => out.push(r),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn route(
    sink: &mut Sink,
    node: &Node,
    path: &str,
    defaults: &Defaults,
    refs: &mut Vec<ClusterRef>,
    grpc_listener: &Option<String>,
) -> Option<Route> {
    let f = Fields::read(
        sink,
        node,
        path,
        &["match", "to", "split", "timeout", "retries"],
    )?;
    let matcher = match f.get("match") {
        Some(n) => route_match(sink, n, &f.path("match")),
        None => Some(RouteMatch {
            path: PathMatch::Prefix("/".to_string()),
            headers: Vec::new(),
        }),
    };
    let action = match (f.get("to"), f.get("split")) {
        (Some(to), None) => {
            let cluster = reader::non_empty_string(sink, to, &f.path("to"));
            if let Some(c) = &cluster {
                refs.push(ClusterRef {
                    cluster: c.clone(),
                    loc: to.loc.clone(),
                    field: f.path("to"),
                    grpc_listener: grpc_listener.clone(),
                });
            }
            cluster.map(RouteAction::To)
        }
        (None, Some(split)) => weighted_split(sink, split, &f.path("split"), refs, grpc_listener),
        (Some(_), Some(_)) => {
            sink.error(node, path, "give either `to` or `split`, not both");
            None
        }
        (None, None) => {
            sink.error(
                node,
                path,
                "a route needs `to: <cluster>` or `split: {...}`",
            );
            None
        }
    };
    let timeout = match defaults.layer("timeout", f.get("timeout")) {
        Some(n) => reader::duration_in(
            sink,
            &n,
            &f.path("timeout"),
            ROUTE_TIMEOUT.0,
            ROUTE_TIMEOUT.1,
        )
        .map(Some),
        None => Some(None),
    };
    // `defaults.retries` speaks Envoy's conditions; gRPC routes get gRPC's own default.
    let retries = match (grpc_listener, f.get("retries")) {
        (Some(_), Some(n)) => resilience::retries(sink, n, &f.path("retries"), true),
        (Some(_), None) => Some(Some(resilience::grpc_default())),
        (None, own) => match defaults.layer("retries", own) {
            Some(n) => resilience::retries(sink, &n, &f.path("retries"), false),
            None => Some(None),
        },
    };
    Some(Route {
        matcher: matcher?,
        action: action?,
        timeout: timeout?,
        retries: retries?,
    })
}

fn weighted_split(
    sink: &mut Sink,
    node: &Node,
    path: &str,
    refs: &mut Vec<ClusterRef>,
    grpc_listener: &Option<String>,
) -> Option<RouteAction> {
    let entries = reader::named_entries(sink, node, path)?;
    if entries.is_empty() {
        sink.error(node, path, "a split needs at least one cluster");
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (k, v) in entries {
        let Some(cluster) = reader::non_empty_string(sink, k, path) else {
            ok = false;
            continue;
        };
        let wpath = reader::join(path, &cluster);
        refs.push(ClusterRef {
            cluster: cluster.clone(),
            loc: k.loc.clone(),
            field: wpath.clone(),
            grpc_listener: grpc_listener.clone(),
        });
        let Some(weight) = reader::integer(sink, v, &wpath, 0, u64::from(u32::MAX)) else {
            ok = false;
            continue;
        };
        if weight == 0 {
            sink.error(
                v,
                &wpath,
                "weight 0: remove the entry to send this cluster no traffic",
            );
            ok = false;
            continue;
        }
        out.push((cluster, weight as u32));
    }
    let total: u64 = out.iter().map(|(_, w)| u64::from(*w)).sum();
    if total > u64::from(u32::MAX) {
        sink.error(
            node,
            path,
            format!("weights sum to {total}, more than Envoy accepts (4294967295)"),
        );
        ok = false;
    }
    ok.then_some(RouteAction::Split(out))
}

fn route_match(sink: &mut Sink, node: &Node, path: &str) -> Option<RouteMatch> {
    let f = Fields::read(sink, node, path, &["prefix", "path", "headers"])?;
    let path_match = match (f.get("prefix"), f.get("path")) {
        (Some(n), None) => slash_string(sink, n, &f.path("prefix")).map(PathMatch::Prefix),
        (None, Some(n)) => slash_string(sink, n, &f.path("path")).map(PathMatch::Exact),
        (None, None) => Some(PathMatch::Prefix("/".to_string())),
        (Some(_), Some(_)) => {
            sink.error(node, path, "give either `prefix` or `path`, not both");
            None
        }
    };
    let headers = match f.get("headers") {
        Some(n) => headers(sink, n, &f.path("headers")),
        None => Some(Vec::new()),
    };
    Some(RouteMatch {
        path: path_match?,
        headers: headers?,
    })
}

fn slash_string(sink: &mut Sink, node: &Node, path: &str) -> Option<String> {
    let s = reader::non_empty_string(sink, node, path)?;
    if !s.starts_with('/') {
        sink.error(node, path, format!("`{s}` must start with /"));
        return None;
    }
    Some(s)
}

/// `headers: { x-canary: "true", x-user: { prefix: "beta-" }, x-debug: { present: true } }`
fn headers(sink: &mut Sink, node: &Node, path: &str) -> Option<Vec<HeaderMatch>> {
    let entries = reader::named_entries(sink, node, path)?;
    let mut out = Vec::new();
    let mut ok = true;
    for (k, v) in entries {
        let Some(name) = reader::non_empty_string(sink, k, path) else {
            ok = false;
            continue;
        };
        let hpath = reader::join(path, &name);
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() && !name.starts_with(':') {
            sink.error(k, &hpath, format!("`{name}` is not a valid header name"));
            ok = false;
            continue;
        }
        let rule = if v.as_str().is_some() {
            reader::string(sink, v, &hpath).map(HeaderRule::Exact)
        } else {
            header_rule(sink, v, &hpath)
        };
        match rule {
            Some(rule) => out.push(HeaderMatch {
                name: name.to_ascii_lowercase(),
                rule,
            }),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn header_rule(sink: &mut Sink, node: &Node, path: &str) -> Option<HeaderRule> {
    let f = Fields::read(
        sink,
        node,
        path,
        &["exact", "prefix", "suffix", "contains", "present"],
    )?;
    let kinds: Vec<&str> = f.keys().collect();
    let [kind] = kinds.as_slice() else {
        sink.error(
            node,
            path,
            "give exactly one of exact, prefix, suffix, contains, present",
        );
        return None;
    };
    let value = f.get(kind)?;
    let vpath = f.path(kind);
    Some(match *kind {
        "present" => HeaderRule::Present(reader::boolean(sink, value, &vpath)?),
        "exact" => HeaderRule::Exact(reader::string(sink, value, &vpath)?),
        "prefix" => HeaderRule::Prefix(reader::non_empty_string(sink, value, &vpath)?),
        "suffix" => HeaderRule::Suffix(reader::non_empty_string(sink, value, &vpath)?),
        _ => HeaderRule::Contains(reader::non_empty_string(sink, value, &vpath)?),
    })
}
