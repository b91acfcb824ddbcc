//! Answers that do not forward (`redirect`, `direct_response`) and what a forwarded request is
//! rewritten to (`rewrite`).

use crate::config::diagnostic::Sink;
use crate::config::model::{
    HostRewrite, PathRewrite, Redirect, RedirectPath, Rewrite, RouteAction,
};
use crate::config::reader::{self, Fields};
use crate::config::shape::{Kind, Object, object, optional, required};
use crate::config::yaml::Node;

use super::route_match;

/// Envoy refuses a RouteConfiguration whose direct-response body is larger than this (its
/// `max_direct_response_body_size_bytes` default), so flotilla refuses it first.
pub const MAX_BODY_BYTES: usize = 4_096;

const REDIRECT_CODES: &[u64] = &[301, 302, 303, 307, 308];
const SCHEMES: &[&str] = &["http", "https"];

pub(crate) const REDIRECT: Object = object(
    "redirect",
    "A redirect: changes at least one of scheme, host, port, path or prefix.",
    &[
        optional("scheme", Kind::Enum(SCHEMES), "New scheme."),
        optional("host", Kind::NonEmpty, "New host name (no port)."),
        optional("port", Kind::Integer { min: 1, max: 65535 }, "New port."),
        optional("path", Kind::NonEmpty, "New path (starts with /)."),
        optional(
            "prefix",
            Kind::NonEmpty,
            "Replaces the matched prefix (starts with /).",
        ),
        optional(
            "code",
            Kind::IntEnum(REDIRECT_CODES),
            "Redirect status (default 301).",
        )
        .defaults_to("301"),
    ],
);

pub(crate) const DIRECT_RESPONSE: Object = object(
    "direct_response",
    "A fixed answer from Envoy.",
    &[
        required(
            "status",
            Kind::Integer { min: 200, max: 599 },
            "HTTP status.",
        ),
        optional("body", Kind::Scalar, "Response body (at most 4096 bytes)."),
    ],
);

pub(crate) const REWRITE: Object = object(
    "rewrite",
    "Changes to the request before it is forwarded.",
    &[
        optional(
            "prefix",
            Kind::NonEmpty,
            "Replaces the matched prefix (starts with /).",
        ),
        optional(
            "regex",
            Kind::Object(&REGEX_REWRITE),
            "Rewrites the path with an RE2 regex.",
        ),
        optional("host", Kind::NonEmpty, "New Host header."),
        optional(
            "auto_host",
            Kind::Bool,
            "Set the Host header to the endpoint's address.",
        )
        .defaults_to("false"),
    ],
);

const REGEX_REWRITE: Object = object(
    "regex_rewrite",
    "A regex path rewrite.",
    &[
        required("pattern", Kind::NonEmpty, "RE2 regex."),
        required(
            "substitution",
            Kind::Scalar,
            "Replacement (\\1 for groups).",
        ),
    ],
);

/// `redirect: { scheme, host, port, path | prefix, code }`; `code` defaults to 301.
pub(crate) fn redirect(sink: &mut Sink, node: &Node, path: &str) -> Option<Redirect> {
    let f = Fields::read(sink, node, path, &REDIRECT)?;
    let mut ok = true;
    let scheme = match f.get("scheme") {
        Some(n) => match reader::string(sink, n, &f.path("scheme")).as_deref() {
            Some(s) if SCHEMES.contains(&s) => Some(s.to_string()),
            Some(s) => {
                sink.error(
                    n,
                    &f.path("scheme"),
                    format!("`{s}`: expected http or https"),
                );
                ok = false;
                None
            }
            None => {
                ok = false;
                None
            }
        },
        None => None,
    };
    let host = optional_read(sink, &f, "host", &mut ok, |sink, n, p| {
        let h = reader::non_empty_string(sink, n, p)?;
        if h.contains(['/', ':', ' ']) {
            sink.error(
                n,
                p,
                format!("`{h}`: a host name only (use `port` for the port)"),
            );
            return None;
        }
        Some(h)
    });
    let port = optional_read(sink, &f, "port", &mut ok, |sink, n, _| {
        f.integer(sink, n, "port").map(|p| p as u16)
    });
    let redirect_path = match (f.get("path"), f.get("prefix")) {
        (Some(_), Some(_)) => {
            sink.error(node, path, "give either `path` or `prefix`, not both");
            ok = false;
            None
        }
        (Some(n), None) => slash(sink, n, &f.path("path"), &mut ok).map(RedirectPath::Path),
        (None, Some(n)) => slash(sink, n, &f.path("prefix"), &mut ok).map(RedirectPath::Prefix),
        (None, None) => None,
    };
    let code = match f.get("code") {
        Some(n) => match reader::integer(sink, n, &f.path("code"), 0, 999) {
            Some(c) if REDIRECT_CODES.contains(&c) => c as u16,
            Some(c) => {
                sink.error(
                    n,
                    &f.path("code"),
                    format!("{c} is not a redirect code (301, 302, 303, 307 or 308)"),
                );
                ok = false;
                0
            }
            None => {
                ok = false;
                0
            }
        },
        None => 301,
    };
    if ok && scheme.is_none() && host.is_none() && port.is_none() && redirect_path.is_none() {
        sink.error(
            node,
            path,
            "a redirect changes at least one of scheme, host, port, path or prefix",
        );
        ok = false;
    }
    ok.then_some(Redirect {
        scheme,
        host,
        port,
        path: redirect_path,
        code,
    })
}

/// `direct_response: { status, body }`.
pub(crate) fn direct_response(sink: &mut Sink, node: &Node, path: &str) -> Option<RouteAction> {
    let f = Fields::read(sink, node, path, &DIRECT_RESPONSE)?;
    let status = match f.get("status") {
        Some(n) => f.integer(sink, n, "status").map(|s| s as u16),
        None => {
            sink.error(node, path, "missing field `status`");
            None
        }
    };
    let body = match f.get("body") {
        Some(n) => match reader::string(sink, n, &f.path("body")) {
            Some(b) if b.len() > MAX_BODY_BYTES => {
                sink.error(
                    n,
                    &f.path("body"),
                    format!(
                        "body of {} bytes: Envoy sends at most {MAX_BODY_BYTES}",
                        b.len()
                    ),
                );
                None
            }
            Some(b) => Some(Some(b)),
            None => None,
        },
        None => Some(None),
    };
    Some(RouteAction::DirectResponse {
        status: status?,
        body: body?,
    })
}

/// `rewrite: { prefix | regex: { pattern, substitution }, host | auto_host: true }`.
pub(crate) fn rewrite(sink: &mut Sink, node: &Node, path: &str) -> Option<Rewrite> {
    let f = Fields::read(sink, node, path, &REWRITE)?;
    let mut ok = true;
    let path_rewrite = match (f.get("prefix"), f.get("regex")) {
        (Some(_), Some(_)) => {
            sink.error(node, path, "give either `prefix` or `regex`, not both");
            ok = false;
            None
        }
        (Some(n), None) => slash(sink, n, &f.path("prefix"), &mut ok).map(PathRewrite::Prefix),
        (None, Some(n)) => {
            let r = regex_rewrite(sink, n, &f.path("regex"));
            ok &= r.is_some();
            r
        }
        (None, None) => None,
    };
    let auto = optional_read(sink, &f, "auto_host", &mut ok, reader::boolean).unwrap_or(false);
    let host = match (f.get("host"), auto) {
        (Some(_), true) => {
            sink.error(
                node,
                path,
                "give either `host` or `auto_host: true`, not both",
            );
            ok = false;
            None
        }
        (Some(n), false) => {
            let h = reader::non_empty_string(sink, n, &f.path("host"));
            ok &= h.is_some();
            h.map(HostRewrite::Literal)
        }
        (None, true) => Some(HostRewrite::Auto),
        (None, false) => None,
    };
    if ok && path_rewrite.is_none() && host.is_none() {
        sink.error(
            node,
            path,
            "a rewrite needs `prefix`, `regex`, `host` or `auto_host: true`",
        );
        ok = false;
    }
    ok.then_some(Rewrite {
        path: path_rewrite,
        host,
    })
}

fn regex_rewrite(sink: &mut Sink, node: &Node, path: &str) -> Option<PathRewrite> {
    let f = Fields::read(sink, node, path, &REGEX_REWRITE)?;
    let pattern = match f.get("pattern") {
        Some(n) => route_match::regex(sink, n, &f.path("pattern")),
        None => {
            sink.error(node, path, "missing field `pattern`");
            None
        }
    };
    let substitution = match f.get("substitution") {
        Some(n) => reader::string(sink, n, &f.path("substitution")),
        None => {
            sink.error(node, path, "missing field `substitution`");
            None
        }
    };
    Some(PathRewrite::Regex {
        pattern: pattern?,
        substitution: substitution?,
    })
}

fn slash(sink: &mut Sink, node: &Node, path: &str, ok: &mut bool) -> Option<String> {
    let s = reader::non_empty_string(sink, node, path).filter(|s| {
        let good = s.starts_with('/');
        if !good {
            sink.error(node, path, format!("`{s}` must start with /"));
        }
        good
    });
    *ok &= s.is_some();
    s
}

/// Reads an optional field; a present but invalid one clears `ok`.
fn optional_read<T>(
    sink: &mut Sink,
    f: &Fields<'_>,
    key: &str,
    ok: &mut bool,
    read: impl FnOnce(&mut Sink, &Node, &str) -> Option<T>,
) -> Option<T> {
    let n = f.get(key)?;
    let v = read(sink, n, &f.path(key));
    *ok &= v.is_some();
    v
}
