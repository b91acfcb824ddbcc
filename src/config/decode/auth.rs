//! `auth` on a listener, a host or a route: JWT verification by Envoy (`jwt`) or an external
//! authorization service Envoy asks (`external`); `auth: none` exempts a host or route from
//! what its listener requires.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::diagnostic::Sink;
use crate::config::model::{Auth, AuthProtocol, ExternalAuth, Jwks, Jwt, TrustedCa};
use crate::config::reader::{self, Fields};
use crate::config::shape::{Kind, Object, ms, object, optional, required, secs};
use crate::config::yaml::Node;

use super::route::RouteContext;

/// Audiences, claims mapped to headers, and headers sent to an authorization service: at
/// most this many each.
pub const MAX_AUTH_ITEMS: usize = 32;
/// The longest issuer or audience.
pub const MAX_AUTH_STRING: usize = 1_024;
/// How long Envoy keeps keys fetched from a JWKS URL unless `jwks_cache` says otherwise.
pub const DEFAULT_JWKS_CACHE: Duration = secs(300);
/// The longest `jwks_cache`: a day (a key the issuer revoked must not stay trusted longer).
pub const MAX_JWKS_CACHE: Duration = secs(86_400);
/// An authorization service answers within 1 s unless `timeout` says otherwise.
pub const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(1);

/// The `auth` key, for listeners, hosts and routes alike.
pub(crate) const AUTH_KIND: Kind = Kind::AnyOf(&[Kind::Enum(&["none"]), Kind::Object(&AUTH)]);
pub(crate) const AUTH_HELP: &str =
    "Who may pass: { jwt: {...} } or { external: {...} }; `none` exempts a host or route.";

const AUTH: Object = Object {
    name: "auth",
    description: "Authentication (JWT) or authorization by an external service.",
    fields: &[
        optional(
            "jwt",
            Kind::Object(&JWT),
            "Require a JWT bearer token verified by Envoy.",
        ),
        optional(
            "external",
            Kind::Object(&EXTERNAL),
            "Ask an authorization service (Envoy's ext_authz) about every request.",
        ),
    ],
    choose_one: true,
};

const JWT: Object = object(
    "jwt",
    "A bearer token (Authorization: Bearer ...) signed by a key of the JWKS.",
    &[
        required("issuer", Kind::NonEmpty, "The `iss` tokens must carry."),
        optional(
            "audiences",
            Kind::List(&Kind::NonEmpty),
            "Tokens must carry one of these in `aud` (default: any).",
        ),
        required(
            "jwks",
            Kind::NonEmpty,
            "A JWKS file relative to the YAML (watched), or an https URL Envoy fetches.",
        ),
        optional(
            "claims_to_headers",
            Kind::Map(&Kind::NonEmpty),
            "Claim name → request header the backend receives it in.",
        ),
        optional(
            "jwks_ca",
            Kind::NonEmpty,
            "With a JWKS URL: the CA file (PEM, relative to the YAML) the JWKS server's certificate must chain to, or `system` (default) for the OS roots.",
        )
        .defaults_to("system"),
        optional(
            "jwks_cache",
            Kind::Duration {
                min: secs(1),
                max: MAX_JWKS_CACHE,
            },
            "With a JWKS URL: how long Envoy keeps fetched keys before fetching them again (default 5m).",
        )
        .defaults_to("5m"),
    ],
);

const EXTERNAL: Object = object(
    "external_auth",
    "An authorization service Envoy asks before forwarding each request.",
    &[
        required(
            "cluster",
            Kind::NonEmpty,
            "The cluster of the authorization service.",
        ),
        optional(
            "protocol",
            Kind::Enum(&["http", "grpc"]),
            "http (default: a copy of the request's headers, 200 allows) or grpc (envoy.service.auth.v3).",
        ),
        optional(
            "timeout",
            Kind::Duration {
                min: ms(1),
                max: secs(60),
            },
            "How long Envoy waits for an answer (default 1s).",
        ),
        optional(
            "failure",
            Kind::Enum(&["deny", "allow"]),
            "When the service cannot answer: deny (403, default) or allow.",
        ),
        optional(
            "headers",
            Kind::List(&Kind::NonEmpty),
            "Request headers sent to the service besides Host, Method, Path and Authorization.",
        ),
    ],
);

/// Reads `auth`; `exempt_ok` says whether `none` is meaningful here (on a host or route).
pub(crate) fn auth(
    sink: &mut Sink,
    node: &Node,
    path: &str,
    ctx: &mut RouteContext<'_>,
    exempt_ok: bool,
) -> Option<Auth> {
    if let Some(l) = &ctx.grpc_listener {
        sink.error(
            node,
            path,
            format!(
                "gRPC clients do not run Envoy's JWT or ext_authz filters; `{l}` is a proxyless_grpc listener"
            ),
        );
        return None;
    }
    if let Some(text) = node.as_str() {
        return match text {
            "none" if exempt_ok => Some(Auth::None),
            "none" => {
                sink.error(
                    node,
                    path,
                    "`auth: none` exempts a host or route; on a listener, leave `auth` out",
                );
                None
            }
            other => {
                sink.error(
                    node,
                    path,
                    format!(
                        "`{other}`: expected `none` or {{ jwt: {{...}} }} / {{ external: {{...}} }}"
                    ),
                );
                None
            }
        };
    }
    let f = Fields::read(sink, node, path, &AUTH)?;
    match (f.get("jwt"), f.get("external")) {
        (Some(n), None) => jwt(sink, n, &f.path("jwt"), ctx).map(Auth::Jwt),
        (None, Some(n)) => external(sink, n, &f.path("external"), ctx).map(Auth::External),
        (Some(_), Some(_)) => {
            sink.error(node, path, "give either `jwt` or `external`, not both");
            None
        }
        (None, None) => {
            sink.error(node, path, "`auth` needs `jwt: {...}` or `external: {...}`");
            None
        }
    }
}

fn jwt(sink: &mut Sink, node: &Node, path: &str, ctx: &mut RouteContext<'_>) -> Option<Jwt> {
    let f = Fields::read(sink, node, path, &JWT)?;
    let issuer = match f.get("issuer") {
        Some(n) => bounded_string(sink, n, &f.path("issuer")),
        None => {
            sink.error(node, path, "missing field `issuer`");
            None
        }
    };
    let audiences = match f.get("audiences") {
        Some(n) => strings(sink, n, &f.path("audiences")),
        None => Some(Vec::new()),
    };
    let jwks = match f.get("jwks") {
        Some(n) => super::jwks::jwks(sink, n, &f.path("jwks")),
        None => {
            sink.error(node, path, "missing field `jwks`");
            None
        }
    };
    let jwks = jwks.and_then(|j| remote_settings(sink, &f, j, ctx));
    let claims_to_headers = match f.get("claims_to_headers") {
        Some(n) => claims(sink, n, &f.path("claims_to_headers")),
        None => Some(BTreeMap::new()),
    };
    Some(Jwt {
        issuer: issuer?,
        audiences: audiences?,
        jwks: jwks?,
        claims_to_headers: claims_to_headers?,
    })
}

/// `jwks_ca` and `jwks_cache`: how a JWKS URL is fetched; refused with a JWKS file (flotilla
/// reads it, Envoy fetches nothing).
fn remote_settings(
    sink: &mut Sink,
    f: &Fields<'_>,
    jwks: Jwks,
    ctx: &mut RouteContext<'_>,
) -> Option<Jwks> {
    let Jwks::Remote(mut remote) = jwks else {
        let mut ok = true;
        for key in ["jwks_ca", "jwks_cache"] {
            if let Some(n) = f.get(key) {
                sink.error(
                    n,
                    &f.path(key),
                    format!("`{key}` applies to a JWKS URL (https://...); `jwks` is a file"),
                );
                ok = false;
            }
        }
        return ok.then_some(jwks);
    };
    let ca = match f.get("jwks_ca") {
        None => Some(TrustedCa::System),
        Some(n) if n.as_str() == Some("system") => Some(TrustedCa::System),
        Some(n) => super::tls::ca(sink, n, &f.path("jwks_ca"), ctx.secrets).map(TrustedCa::Secret),
    };
    let cache = match f.get("jwks_cache") {
        Some(n) => f.duration(sink, n, "jwks_cache"),
        None => Some(DEFAULT_JWKS_CACHE),
    };
    remote.ca = ca?;
    remote.cache = cache?;
    Some(Jwks::Remote(remote))
}

fn external(
    sink: &mut Sink,
    node: &Node,
    path: &str,
    ctx: &mut RouteContext<'_>,
) -> Option<ExternalAuth> {
    let f = Fields::read(sink, node, path, &EXTERNAL)?;
    let protocol = match f.get("protocol").map(|n| (n, n.as_str())) {
        None => Some(AuthProtocol::Http),
        Some((_, Some("http"))) => Some(AuthProtocol::Http),
        Some((_, Some("grpc"))) => Some(AuthProtocol::Grpc),
        Some((n, _)) => {
            sink.error(n, &f.path("protocol"), "expected `http` or `grpc`");
            None
        }
    };
    let cluster = match f.get("cluster") {
        Some(n) => {
            let cluster = reader::non_empty_string(sink, n, &f.path("cluster"));
            if let Some(c) = &cluster {
                let needs = (protocol == Some(AuthProtocol::Grpc))
                    .then_some("a gRPC authorization service");
                ctx.edge_cluster_ref(c, n, &f.path("cluster"), needs);
            }
            cluster
        }
        None => {
            sink.error(node, path, "missing field `cluster`");
            None
        }
    };
    let timeout = match f.get("timeout") {
        Some(n) => f.duration(sink, n, "timeout"),
        None => Some(DEFAULT_AUTH_TIMEOUT),
    };
    let failure_allow = match f.get("failure").map(|n| (n, n.as_str())) {
        None | Some((_, Some("deny"))) => Some(false),
        Some((_, Some("allow"))) => Some(true),
        Some((n, _)) => {
            sink.error(n, &f.path("failure"), "expected `deny` or `allow`");
            None
        }
    };
    let headers = match f.get("headers") {
        Some(n) => strings(sink, n, &f.path("headers")).and_then(|names| {
            let lower: Vec<String> = names.iter().map(|h| h.to_ascii_lowercase()).collect();
            match lower
                .iter()
                .find(|h| http::HeaderName::from_bytes(h.as_bytes()).is_err())
            {
                Some(bad) => {
                    sink.error(
                        n,
                        &f.path("headers"),
                        format!("`{bad}` is not a header name"),
                    );
                    None
                }
                None => Some(lower),
            }
        }),
        None => Some(Vec::new()),
    };
    Some(ExternalAuth {
        cluster: cluster?,
        protocol: protocol?,
        timeout: timeout?,
        failure_allow: failure_allow?,
        headers: headers?,
    })
}

fn bounded_string(sink: &mut Sink, node: &Node, path: &str) -> Option<String> {
    let s = reader::non_empty_string(sink, node, path)?;
    if s.len() > MAX_AUTH_STRING {
        sink.error(node, path, format!("at most {MAX_AUTH_STRING} bytes"));
        return None;
    }
    Some(s)
}

fn strings(sink: &mut Sink, node: &Node, path: &str) -> Option<Vec<String>> {
    let items = reader::list(sink, node, path)?;
    if items.len() > MAX_AUTH_ITEMS {
        sink.error(node, path, format!("at most {MAX_AUTH_ITEMS} entries"));
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match bounded_string(sink, item, &format!("{path}[{i}]")) {
            Some(s) if !out.contains(&s) => out.push(s),
            Some(_) => {}
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// `claims_to_headers: { sub: x-user }`: each header a valid, non-pseudo name.
fn claims(sink: &mut Sink, node: &Node, path: &str) -> Option<BTreeMap<String, String>> {
    let entries = reader::named_entries(sink, node, path)?;
    if entries.len() > MAX_AUTH_ITEMS {
        sink.error(node, path, format!("at most {MAX_AUTH_ITEMS} claims"));
        return None;
    }
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (k, v) in entries {
        let Some(claim) = reader::non_empty_string(sink, k, path) else {
            ok = false;
            continue;
        };
        let vpath = reader::join(path, &claim);
        let Some(header) = reader::non_empty_string(sink, v, &vpath) else {
            ok = false;
            continue;
        };
        let header = header.to_ascii_lowercase();
        if header == "host" || http::HeaderName::from_bytes(header.as_bytes()).is_err() {
            sink.error(
                v,
                &vpath,
                format!("`{header}` is not a header a claim can go in"),
            );
            ok = false;
            continue;
        }
        out.insert(claim, header);
    }
    ok.then_some(out)
}
