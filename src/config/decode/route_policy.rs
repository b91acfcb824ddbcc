//! Header edits (per route and per host) and per-route traffic policy: `rate_limit`, `mirror`,
//! `websocket` and `cors`.

use std::collections::BTreeMap;

use crate::config::diagnostic::Sink;
use crate::config::model::{Cors, HeaderChanges, HeaderEdit, Mirror, RateLimit};
use crate::config::reader::{self, Fields};
use crate::config::shape::{Kind, Object, object, optional, required, secs};
use crate::config::yaml::Node;

use super::route::RouteContext;

/// Header names (or values) one edit may list.
pub const MAX_HEADER_EDITS: usize = 64;
/// Longest header value accepted, in bytes (Envoy's default request header limit is 60 KiB).
pub const MAX_HEADER_VALUE: usize = 8_192;
/// The highest `requests_per_second` and `burst` a rate limit takes.
pub const MAX_RATE: u32 = 1_000_000;

const RATE: Kind = Kind::Integer {
    min: 1,
    max: MAX_RATE as u64,
};
const STRINGS: Kind = Kind::List(&Kind::NonEmpty);

pub(crate) const HEADER_CHANGES: Object = object(
    "header_changes",
    "Header edits on the request (before forwarding) and the response.",
    &[
        optional(
            "request",
            Kind::Object(&HEADER_EDIT),
            "Request header edits.",
        ),
        optional(
            "response",
            Kind::Object(&HEADER_EDIT),
            "Response header edits.",
        ),
    ],
);

const HEADER_EDIT: Object = object(
    "header_edit",
    "Headers to add, set (replace) and remove.",
    &[
        optional(
            "add",
            Kind::Map(&Kind::Scalar),
            "Header name → value, appended.",
        ),
        optional(
            "set",
            Kind::Map(&Kind::Scalar),
            "Header name → value, replacing any.",
        ),
        optional("remove", STRINGS, "Header names to remove."),
    ],
);

pub(crate) const RATE_LIMIT: Object = object(
    "rate_limit",
    "A token bucket per Envoy.",
    &[
        required("requests_per_second", RATE, "Sustained rate."),
        optional(
            "burst",
            RATE,
            "Bucket size, at least requests_per_second (default requests_per_second).",
        )
        .defaults_to("requests_per_second"),
    ],
);

pub(crate) const MIRROR: Object = object(
    "mirror",
    "Copies of requests sent to another cluster (answers ignored).",
    &[
        required("to", Kind::NonEmpty, "The cluster that gets the copies."),
        optional(
            "percent",
            Kind::Integer { min: 1, max: 100 },
            "Share of requests copied (default 100).",
        )
        .defaults_to("100"),
    ],
);

pub(crate) const CORS: Object = object(
    "cors",
    "Cross-origin resource sharing, answered by Envoy.",
    &[
        required("allow_origins", STRINGS, "Origins, or [\"*\"]."),
        optional("allow_methods", STRINGS, "Allowed methods."),
        optional("allow_headers", STRINGS, "Allowed request headers."),
        optional(
            "expose_headers",
            STRINGS,
            "Response headers exposed to scripts.",
        ),
        optional(
            "max_age",
            Kind::Duration {
                min: secs(1),
                max: secs(24 * 3600),
            },
            "How long browsers cache a preflight answer.",
        ),
        optional(
            "allow_credentials",
            Kind::Bool,
            "Allow cookies and credentials.",
        )
        .defaults_to("false"),
    ],
);

pub(crate) struct Policies {
    pub(crate) rate_limit: Option<RateLimit>,
    pub(crate) mirror: Option<Mirror>,
    pub(crate) websocket: bool,
    pub(crate) cors: Option<Cors>,
}

pub(crate) fn route_policies(
    sink: &mut Sink,
    f: &Fields<'_>,
    ctx: &mut RouteContext<'_>,
) -> Option<Policies> {
    for (key, what) in [
        ("rate_limit", "`rate_limit`"),
        ("mirror", "`mirror`"),
        ("websocket", "WebSocket upgrades"),
        ("cors", "`cors`"),
    ] {
        if let Some(n) = f.get(key) {
            ctx.refuse_on_grpc(sink, n, &f.path(key), what);
        }
    }
    let rate_limit = match f.get("rate_limit") {
        Some(n) => rate_limit(sink, n, &f.path("rate_limit")).map(Some),
        None => Some(None),
    };
    let mirror = match f.get("mirror") {
        Some(n) => mirror(sink, n, &f.path("mirror"), ctx).map(Some),
        None => Some(None),
    };
    let websocket = match f.get("websocket") {
        Some(n) => reader::boolean(sink, n, &f.path("websocket")),
        None => Some(false),
    };
    let cors = match f.get("cors") {
        Some(n) => cors(sink, n, &f.path("cors")).map(Some),
        None => Some(None),
    };
    Some(Policies {
        rate_limit: rate_limit?,
        mirror: mirror?,
        websocket: websocket?,
        cors: cors?,
    })
}

/// `headers: { request: { add, set, remove }, response: { add, set, remove } }`.
pub(crate) fn header_changes(
    sink: &mut Sink,
    node: &Node,
    path: &str,
    ctx: &RouteContext<'_>,
) -> Option<HeaderChanges> {
    ctx.refuse_on_grpc(sink, node, path, "header changes");
    let f = Fields::read(sink, node, path, &HEADER_CHANGES)?;
    let edit = |sink: &mut Sink, key: &str| match f.get(key) {
        Some(n) => header_edit(sink, n, &f.path(key)),
        None => Some(HeaderEdit::default()),
    };
    let request = edit(sink, "request");
    let response = edit(sink, "response");
    Some(HeaderChanges {
        request: request?,
        response: response?,
    })
}

fn header_edit(sink: &mut Sink, node: &Node, path: &str) -> Option<HeaderEdit> {
    let f = Fields::read(sink, node, path, &HEADER_EDIT)?;
    let add = match f.get("add") {
        Some(n) => header_values(sink, n, &f.path("add")),
        None => Some(BTreeMap::new()),
    };
    let set = match f.get("set") {
        Some(n) => header_values(sink, n, &f.path("set")),
        None => Some(BTreeMap::new()),
    };
    let remove = match f.get("remove") {
        Some(n) => header_names(sink, n, &f.path("remove")),
        None => Some(Vec::new()),
    };
    Some(HeaderEdit {
        add: add?,
        set: set?,
        remove: remove?,
    })
}

fn header_values(sink: &mut Sink, node: &Node, path: &str) -> Option<BTreeMap<String, String>> {
    let entries = reader::named_entries(sink, node, path)?;
    if entries.len() > MAX_HEADER_EDITS {
        sink.error(node, path, format!("at most {MAX_HEADER_EDITS} headers"));
        return None;
    }
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (k, v) in entries {
        let name = header_name(sink, k, path);
        let vpath = reader::join(path, name.as_deref().unwrap_or("?"));
        let value = reader::string(sink, v, &vpath).filter(|value| {
            let good =
                value.len() <= MAX_HEADER_VALUE && http::HeaderValue::from_str(value).is_ok();
            if !good {
                sink.error(
                    v,
                    &vpath,
                    format!("not a header value (printable, at most {MAX_HEADER_VALUE} bytes)"),
                );
            }
            good
        });
        match (name, value) {
            (Some(n), Some(v)) => {
                out.insert(n, v);
            }
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

fn header_names(sink: &mut Sink, node: &Node, path: &str) -> Option<Vec<String>> {
    let items = reader::list(sink, node, path)?;
    if items.len() > MAX_HEADER_EDITS {
        sink.error(node, path, format!("at most {MAX_HEADER_EDITS} headers"));
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match header_name(sink, item, &format!("{path}[{i}]")) {
            Some(n) if !out.contains(&n) => out.push(n),
            Some(_) => {}
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// A header name an edit may touch: not a pseudo-header and not `host` (Envoy refuses both;
/// `rewrite.host` changes the host).
fn header_name(sink: &mut Sink, node: &Node, path: &str) -> Option<String> {
    let name = reader::non_empty_string(sink, node, path)?.to_ascii_lowercase();
    if name.starts_with(':') || name == "host" {
        sink.error(
            node,
            path,
            format!("`{name}` cannot be edited (use `rewrite` for the host and path)"),
        );
        return None;
    }
    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        sink.error(node, path, format!("`{name}` is not a valid header name"));
        return None;
    }
    Some(name)
}

/// `rate_limit: { requests_per_second, burst }`; `burst` defaults to `requests_per_second`.
fn rate_limit(sink: &mut Sink, node: &Node, path: &str) -> Option<RateLimit> {
    let f = Fields::read(sink, node, path, &RATE_LIMIT)?;
    let rps = match f.get("requests_per_second") {
        Some(n) => f.u32(sink, n, "requests_per_second"),
        None => {
            sink.error(node, path, "missing field `requests_per_second`");
            None
        }
    }?;
    let burst = match f.get("burst") {
        Some(n) => {
            let b = f.u32(sink, n, "burst")?;
            if b < rps {
                sink.error(
                    n,
                    &f.path("burst"),
                    format!("burst {b} is below requests_per_second {rps}: the bucket holds at least one second of requests"),
                );
                return None;
            }
            b
        }
        None => rps,
    };
    Some(RateLimit {
        requests_per_second: rps,
        burst,
    })
}

/// `mirror: { to: <cluster>, percent: 1-100 }` (percent defaults to 100).
fn mirror(sink: &mut Sink, node: &Node, path: &str, ctx: &mut RouteContext<'_>) -> Option<Mirror> {
    let f = Fields::read(sink, node, path, &MIRROR)?;
    let cluster = match f.get("to") {
        Some(n) => {
            let c = reader::non_empty_string(sink, n, &f.path("to"));
            if let Some(c) = &c {
                ctx.cluster_ref(c, n, &f.path("to"));
            }
            c
        }
        None => {
            sink.error(
                node,
                path,
                "missing field `to` (the cluster that gets the copies)",
            );
            None
        }
    };
    let percent = match f.get("percent") {
        Some(n) => f.u32(sink, n, "percent"),
        None => Some(100),
    };
    Some(Mirror {
        cluster: cluster?,
        percent: percent?,
    })
}

/// `cors: { allow_origins, allow_methods, allow_headers, expose_headers, max_age,
/// allow_credentials }`.
fn cors(sink: &mut Sink, node: &Node, path: &str) -> Option<Cors> {
    let f = Fields::read(sink, node, path, &CORS)?;
    let list = |sink: &mut Sink, key: &str| match f.get(key) {
        Some(n) => strings(sink, n, &f.path(key)),
        None => Some(Vec::new()),
    };
    let origins = list(sink, "allow_origins");
    let methods = list(sink, "allow_methods");
    let headers = list(sink, "allow_headers");
    let expose = list(sink, "expose_headers");
    let max_age = match f.get("max_age") {
        Some(n) => f.duration(sink, n, "max_age").map(Some),
        None => Some(None),
    };
    let credentials = match f.get("allow_credentials") {
        Some(n) => reader::boolean(sink, n, &f.path("allow_credentials")),
        None => Some(false),
    };
    if origins.as_ref().is_some_and(Vec::is_empty) {
        sink.error(
            node,
            path,
            "missing field `allow_origins` (origins, or [\"*\"])",
        );
        return None;
    }
    Some(Cors {
        allow_origins: origins?,
        allow_methods: methods?,
        allow_headers: headers?,
        expose_headers: expose?,
        max_age: max_age?,
        allow_credentials: credentials?,
    })
}

fn strings(sink: &mut Sink, node: &Node, path: &str) -> Option<Vec<String>> {
    let items = reader::list(sink, node, path)?;
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match reader::non_empty_string(sink, item, &format!("{path}[{i}]")) {
            Some(s) => out.push(s),
            None => ok = false,
        }
    }
    ok.then_some(out)
}
