//! `clusters.<name>.affinity`: session affinity, performed by Envoy (consistent hash on a
//! cookie, a header or the client IP, or strict stickiness with a cookie).

use std::time::Duration;

use crate::config::diagnostic::Sink;
use crate::config::model::{Affinity, CookieSpec};
use crate::config::reader::{self, Fields};
use crate::config::shape::{Field, Kind, Object, object, optional, secs};
use crate::config::yaml::Node;

pub(crate) const AFFINITY: Object = Object {
    name: "affinity",
    description: "Session affinity: one of cookie, header, source_ip or sticky_cookie.",
    fields: &[
        optional(
            "cookie",
            Kind::AnyOf(&[Kind::Null, Kind::Object(&COOKIE)]),
            "Consistent hash on a cookie Envoy sets.",
        ),
        optional(
            "header",
            Kind::NonEmpty,
            "Consistent hash on a request header (its name).",
        ),
        optional("source_ip", Kind::Bool, "Consistent hash on the client IP."),
        optional(
            "sticky_cookie",
            Kind::AnyOf(&[Kind::Null, Kind::Object(&STICKY_COOKIE)]),
            "Strict stickiness (stateful session) with a cookie.",
        ),
    ],
    choose_one: true,
};

const COOKIE_NAME: Field = optional(
    "name",
    Kind::NonEmpty,
    "Cookie name (letters, digits, - _ .).",
);
const COOKIE_TTL: Field = optional(
    "ttl",
    Kind::Duration {
        min: secs(0),
        max: secs(400 * 24 * 3600),
    },
    "Cookie lifetime (default 0s: a session cookie).",
)
.defaults_to("0s");
const COOKIE_PATH: Field = optional(
    "path",
    Kind::NonEmpty,
    "Cookie path, starting with / (default /).",
)
.defaults_to("/");

const COOKIE: Object = object(
    "cookie",
    "The cookie a consistent-hash affinity uses.",
    &[COOKIE_NAME, COOKIE_TTL, COOKIE_PATH],
);

const STICKY_COOKIE: Object = object(
    "sticky_cookie",
    "The cookie of strict stickiness.",
    &[
        COOKIE_NAME,
        COOKIE_TTL,
        COOKIE_PATH,
        optional(
            "strict",
            Kind::Bool,
            "Fail requests whose endpoint is gone instead of picking another.",
        )
        .defaults_to("false"),
    ],
);

pub(crate) fn affinity_kind(a: &Affinity) -> &'static str {
    match a {
        Affinity::Cookie(_) => "cookie",
        Affinity::Header(_) => "header",
        Affinity::SourceIp => "source_ip",
        Affinity::StickyCookie { .. } => "sticky_cookie",
    }
}

pub(crate) fn affinity(sink: &mut Sink, node: &Node, path: &str) -> Option<Option<Affinity>> {
    let f = Fields::read(sink, node, path, &AFFINITY)?;
    let kinds: Vec<&str> = f.keys().collect();
    let [kind] = kinds.as_slice() else {
        sink.error(
            node,
            path,
            if kinds.is_empty() {
                "choose one of cookie, header, source_ip or sticky_cookie".to_string()
            } else {
                format!("choose one kind of affinity, not {}", kinds.join(" and "))
            },
        );
        return None;
    };
    let value = f.get(kind)?;
    let kpath = f.path(kind);
    Some(Some(match *kind {
        "cookie" => Affinity::Cookie(cookie(sink, value, &kpath, "fl-session", &COOKIE)?.0),
        "header" => {
            let name = reader::non_empty_string(sink, value, &kpath)?;
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                sink.error(
                    value,
                    &kpath,
                    format!("`{name}` is not a valid header name"),
                );
                return None;
            }
            Affinity::Header(name.to_ascii_lowercase())
        }
        "source_ip" => {
            if !reader::boolean(sink, value, &kpath)? {
                return Some(None);
            }
            Affinity::SourceIp
        }
        _ => {
            let (cookie, strict) = cookie(sink, value, &kpath, "fl-sticky", &STICKY_COOKIE)?;
            Affinity::StickyCookie { cookie, strict }
        }
    }))
}

fn cookie(
    sink: &mut Sink,
    node: &Node,
    path: &str,
    default_name: &str,
    table: &'static Object,
) -> Option<(CookieSpec, bool)> {
    if node.is_null() {
        return Some((
            CookieSpec {
                name: default_name.to_string(),
                ttl: Duration::ZERO,
                path: "/".to_string(),
            },
            false,
        ));
    }
    let f = Fields::read(sink, node, path, table)?;
    let name = match f.get("name") {
        Some(n) => {
            let name = reader::non_empty_string(sink, n, &f.path("name"))?;
            if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                sink.error(
                    n,
                    &f.path("name"),
                    format!("`{name}` is not a valid cookie name (letters, digits, - _ .)"),
                );
                return None;
            }
            name
        }
        None => default_name.to_string(),
    };
    let ttl = match f.get("ttl") {
        Some(n) => f.duration(sink, n, "ttl")?,
        None => Duration::ZERO,
    };
    let cookie_path = match f.get("path") {
        Some(n) => {
            let p = reader::non_empty_string(sink, n, &f.path("path"))?;
            if !p.starts_with('/') {
                sink.error(n, &f.path("path"), "must start with /");
                return None;
            }
            p
        }
        None => "/".to_string(),
    };
    let strict = match f.get("strict") {
        Some(n) => reader::boolean(sink, n, &f.path("strict"))?,
        None => false,
    };
    Some((
        CookieSpec {
            name,
            ttl,
            path: cookie_path,
        },
        strict,
    ))
}
