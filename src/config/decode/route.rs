//! One route: what it matches, exactly one action (`to`, `split`, `redirect` or
//! `direct_response`), and the policies that apply while forwarding.

use crate::config::diagnostic::Sink;
use crate::config::model::{HeaderChanges, PathMatch, Route, RouteAction, RouteMatch};
use crate::config::reader::{self, Fields};
use crate::config::shape::{Kind, Object, object, optional};
use crate::config::yaml::Node;

use super::defaults::{self, Defaults};
use super::listener::ClusterRef;
use super::{resilience, route_action, route_match, route_policy};

/// A host holds at most this many routes unless `--max-routes-per-host` says otherwise
/// (Envoy walks them in order for every request): see [`crate::config::limits`].
pub const MAX_ROUTES: usize = crate::config::limits::DEFAULT_ROUTES_PER_HOST;

/// What every route of one listener is decoded with.
pub(crate) struct RouteContext<'a> {
    pub(crate) defaults: &'a Defaults,
    pub(crate) refs: &'a mut Vec<ClusterRef>,
    /// The proxyless gRPC listener being decoded, if it is one.
    pub(crate) grpc_listener: Option<String>,
    /// The configuration's Secrets, which CA files named on the way (`jwks_ca`) join.
    pub(crate) secrets: &'a mut crate::config::model::Secrets,
}

impl RouteContext<'_> {
    pub(crate) fn cluster_ref(&mut self, cluster: &str, node: &Node, field: &str) {
        self.refs.push(ClusterRef {
            cluster: cluster.to_string(),
            loc: node.loc.clone(),
            field: field.to_string(),
            grpc_listener: self.grpc_listener.clone(),
            needs_http2: None,
        });
    }

    /// A cluster an authorization service or trace collector runs on: not routed to, so
    /// gRPC clients never run it; `needs_http2` says what requires it to speak HTTP/2.
    pub(crate) fn edge_cluster_ref(
        &mut self,
        cluster: &str,
        node: &Node,
        field: &str,
        needs_http2: Option<&'static str>,
    ) {
        self.refs.push(ClusterRef {
            cluster: cluster.to_string(),
            loc: node.loc.clone(),
            field: field.to_string(),
            grpc_listener: None,
            needs_http2,
        });
    }

    /// Reports a field gRPC clients do not run (gRFC A28 routes only forward, and match on
    /// path and headers).
    pub(crate) fn refuse_on_grpc(&self, sink: &mut Sink, node: &Node, path: &str, what: &str) {
        if let Some(l) = &self.grpc_listener {
            sink.error(
                node,
                path,
                format!(
                    "gRPC clients cannot run {what} (gRFC A28); `{l}` is a proxyless_grpc listener"
                ),
            );
        }
    }
}

pub(crate) const ROUTE: Object = object(
    "route",
    "What a request matches and what happens to it: one of to, split, redirect or direct_response.",
    &[
        optional(
            "match",
            Kind::Object(&route_match::MATCH),
            "What the route matches (default: every path).",
        )
        .defaults_to("{ prefix: / }"),
        optional("to", Kind::NonEmpty, "The cluster requests go to."),
        optional(
            "split",
            Kind::Map(&Kind::Integer {
                min: 1,
                max: u32::MAX as u64,
            }),
            "Weighted traffic split: cluster → weight.",
        ),
        optional(
            "redirect",
            Kind::Object(&route_action::REDIRECT),
            "Answer with a redirect.",
        ),
        optional(
            "direct_response",
            Kind::Object(&route_action::DIRECT_RESPONSE),
            "Answer with a fixed status and body.",
        ),
        defaults::ROUTE_TIMEOUT,
        defaults::RETRIES,
        optional(
            "rewrite",
            Kind::Object(&route_action::REWRITE),
            "Rewrite the path or host before forwarding.",
        ),
        optional(
            "headers",
            Kind::Object(&route_policy::HEADER_CHANGES),
            "Request and response header edits.",
        ),
        optional(
            "rate_limit",
            Kind::Object(&route_policy::RATE_LIMIT),
            "A token bucket per Envoy.",
        ),
        optional(
            "mirror",
            Kind::Object(&route_policy::MIRROR),
            "Copy requests to another cluster.",
        ),
        optional("websocket", Kind::Bool, "Allow WebSocket upgrades.").defaults_to("false"),
        optional(
            "cors",
            Kind::Object(&route_policy::CORS),
            "Cross-origin resource sharing, answered by Envoy.",
        ),
        optional("auth", super::auth::AUTH_KIND, super::auth::AUTH_HELP),
        optional(
            "fault",
            Kind::Object(&super::fault::FAULT),
            "Delays and aborts injected for resilience testing.",
        ),
    ],
);

const ACTIONS: &[&str] = &["to", "split", "redirect", "direct_response"];

/// Only forwarding routes take these: an answered request never reaches a cluster.
const FORWARDING_ONLY: &[&str] = &[
    "timeout",
    "retries",
    "rewrite",
    "mirror",
    "websocket",
    "fault",
];

pub(crate) fn routes(
    sink: &mut Sink,
    node: &Node,
    path: &str,
    ctx: &mut RouteContext<'_>,
) -> Option<Vec<Route>> {
    let items = reader::list(sink, node, path)?;
    if items.is_empty() {
        sink.error(node, path, "a listener needs at least one route");
        return None;
    }
    let max = crate::config::limits::routes_per_host();
    if items.len() > max {
        sink.error(
            node,
            path,
            format!(
                "{} routes: at most {max} per host (spread them over `hosts`, or raise --max-routes-per-host)",
                items.len()
            ),
        );
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match route(sink, item, &format!("{path}[{i}]"), ctx) {
            Some(r) => out.push(r),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn route(sink: &mut Sink, node: &Node, path: &str, ctx: &mut RouteContext<'_>) -> Option<Route> {
    let f = Fields::read(sink, node, path, &ROUTE)?;
    let matcher = match f.get("match") {
        Some(n) => route_match::route_match(sink, n, &f.path("match"), ctx),
        None => Some(RouteMatch {
            path: PathMatch::Prefix("/".to_string()),
            headers: Vec::new(),
            query: Vec::new(),
            methods: Vec::new(),
        }),
    };
    let action = action(sink, node, path, &f, ctx);
    let forwards = action.as_ref().is_none_or(RouteAction::forwards);
    if !forwards {
        for key in FORWARDING_ONLY {
            if let Some(n) = f.key_node(key) {
                sink.error(
                    n,
                    &f.path(key),
                    format!("`{key}` applies to forwarded requests; this route answers itself"),
                );
            }
        }
    }
    let defaults = ctx.defaults;
    let timeout = match defaults
        .layer("timeout", f.get("timeout"))
        .filter(|_| forwards)
    {
        Some(n) => f.duration(sink, &n, "timeout").map(Some),
        None => Some(None),
    };
    // `defaults.retries` speaks Envoy's conditions; gRPC routes get gRPC's own default.
    let retries = match (&ctx.grpc_listener, f.get("retries")) {
        _ if !forwards => Some(None),
        (Some(_), Some(n)) => resilience::retries(sink, n, &f.path("retries"), true),
        (Some(_), None) => Some(Some(resilience::grpc_default())),
        (None, own) => match defaults.layer("retries", own) {
            Some(n) => resilience::retries(sink, &n, &f.path("retries"), false),
            None => Some(None),
        },
    };
    let policies = route_policy::route_policies(sink, &f, ctx);
    let rewrite = match f.get("rewrite") {
        Some(n) => {
            ctx.refuse_on_grpc(sink, n, &f.path("rewrite"), "`rewrite`");
            route_action::rewrite(sink, n, &f.path("rewrite")).map(Some)
        }
        None => Some(None),
    };
    let headers = match f.get("headers") {
        Some(n) => route_policy::header_changes(sink, n, &f.path("headers"), ctx),
        None => Some(HeaderChanges::default()),
    };
    let auth = match f.get("auth") {
        Some(n) => super::auth::auth(sink, n, &f.path("auth"), ctx, true).map(Some),
        None => Some(None),
    };
    let fault = match f.get("fault").filter(|_| forwards) {
        Some(n) => super::fault::fault(sink, n, &f.path("fault")).map(Some),
        None => Some(None),
    };
    let policies = policies?;
    Some(Route {
        matcher: matcher?,
        action: action?,
        timeout: timeout?,
        retries: retries?,
        rewrite: rewrite?,
        headers: headers?,
        rate_limit: policies.rate_limit,
        mirror: policies.mirror,
        websocket: policies.websocket,
        cors: policies.cors,
        auth: auth?,
        fault: fault?,
    })
}

fn action(
    sink: &mut Sink,
    node: &Node,
    path: &str,
    f: &Fields<'_>,
    ctx: &mut RouteContext<'_>,
) -> Option<RouteAction> {
    let given: Vec<&str> = ACTIONS
        .iter()
        .copied()
        .filter(|a| f.get(a).is_some())
        .collect();
    let kind = match given.as_slice() {
        [one] => *one,
        [] => {
            sink.error(
                node,
                path,
                "a route needs one of `to: <cluster>`, `split: {...}`, `redirect: {...}` or `direct_response: {...}`",
            );
            return None;
        }
        [first, rest @ ..] => {
            for other in rest {
                sink.error(
                    f.key_node(other).unwrap_or(node),
                    &f.path(other),
                    format!("a route has one action: `{other}` cannot go with `{first}`"),
                );
            }
            return None;
        }
    };
    let value = f.get(kind)?;
    let vpath = f.path(kind);
    match kind {
        "to" => {
            let cluster = reader::non_empty_string(sink, value, &vpath)?;
            ctx.cluster_ref(&cluster, value, &vpath);
            Some(RouteAction::To(cluster))
        }
        "split" => weighted_split(sink, value, &vpath, ctx),
        "redirect" => {
            ctx.refuse_on_grpc(sink, value, &vpath, "`redirect`");
            route_action::redirect(sink, value, &vpath).map(RouteAction::Redirect)
        }
        _ => {
            ctx.refuse_on_grpc(sink, value, &vpath, "`direct_response`");
            route_action::direct_response(sink, value, &vpath)
        }
    }
}

fn weighted_split(
    sink: &mut Sink,
    node: &Node,
    path: &str,
    ctx: &mut RouteContext<'_>,
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
        ctx.cluster_ref(&cluster, k, &wpath);
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
