//! `match:` — path (prefix, exact or regex), headers, query parameters and methods; a request
//! must satisfy all of them.
//!
//! Regexes are Envoy's RE2 syntax. flotilla checks them with the `regex` crate, whose syntax
//! is RE2's: like RE2 it has no look-around (`(?=`, `(?!`, `(?<=`) and no back-references
//! (`\1`), and rejects them, so a regex flotilla accepts is one Envoy compiles. Envoy also caps
//! a regex's compiled size (RE2 program size 100 by default); [`MAX_REGEX_LEN`] keeps
//! patterns short, and a regex too complex for that cap is NACKed by Envoy, which keeps its
//! last good configuration.

use crate::config::diagnostic::Sink;
use crate::config::model::{HeaderMatch, HeaderRule, PathMatch, QueryMatch, RouteMatch};
use crate::config::reader::{self, Fields};
use crate::config::shape::{Kind, Object, object, optional};
use crate::config::yaml::Node;

use super::route::RouteContext;

/// Longest regex accepted, in bytes.
pub const MAX_REGEX_LEN: usize = 1_000;

/// Methods a route may match on.
const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];
/// [`METHODS`] as they may be written (the decoder reads them case-insensitively; editors
/// suggest these).
const METHOD_SPELLINGS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "get", "head",
    "post", "put", "delete", "connect", "options", "trace", "patch",
];

/// Header and query parameter matches: name → exact value, or one rule.
const RULES: Kind = Kind::Map(&Kind::AnyOf(&[Kind::Scalar, Kind::Object(&RULE)]));

pub(crate) const MATCH: Object = object(
    "match",
    "What a request must look like: one of prefix, path or regex, plus headers, query, methods.",
    &[
        optional("prefix", Kind::NonEmpty, "Path prefix (starts with /)."),
        optional("path", Kind::NonEmpty, "Exact path (starts with /)."),
        optional("regex", Kind::NonEmpty, "RE2 regex over the whole path."),
        optional("headers", RULES, "Header name → value or rule."),
        optional("query", RULES, "Query parameter name → value or rule."),
        optional(
            "methods",
            Kind::List(&Kind::Enum(METHOD_SPELLINGS)),
            "HTTP methods.",
        ),
    ],
);

const RULE: Object = Object {
    name: "match_rule",
    description: "One way to match a header or query parameter.",
    fields: &[
        optional("exact", Kind::Scalar, "Equal to."),
        optional("prefix", Kind::NonEmpty, "Starts with."),
        optional("suffix", Kind::NonEmpty, "Ends with."),
        optional("contains", Kind::NonEmpty, "Contains."),
        optional("regex", Kind::NonEmpty, "Matches this RE2 regex."),
        optional(
            "present",
            Kind::Bool,
            "Is present (true) or absent (false).",
        ),
        optional("absent", Kind::Bool, "Is absent (true) or present (false)."),
    ],
    choose_one: true,
};

pub(crate) fn route_match(
    sink: &mut Sink,
    node: &Node,
    path: &str,
    ctx: &RouteContext<'_>,
) -> Option<RouteMatch> {
    let f = Fields::read(sink, node, path, &MATCH)?;
    let given: Vec<&str> = ["prefix", "path", "regex"]
        .into_iter()
        .filter(|k| f.get(k).is_some())
        .collect();
    let path_match = match given.as_slice() {
        [] => Some(PathMatch::Prefix("/".to_string())),
        ["prefix"] => {
            slash_string(sink, f.get("prefix")?, &f.path("prefix")).map(PathMatch::Prefix)
        }
        ["path"] => slash_string(sink, f.get("path")?, &f.path("path")).map(PathMatch::Exact),
        ["regex"] => regex(sink, f.get("regex")?, &f.path("regex")).map(PathMatch::Regex),
        _ => {
            sink.error(node, path, "give one of `prefix`, `path` or `regex`");
            None
        }
    };
    let headers = match f.get("headers") {
        Some(n) => rules(sink, n, &f.path("headers"), true).map(|rules| {
            rules
                .into_iter()
                .map(|(name, rule)| HeaderMatch { name, rule })
                .collect()
        }),
        None => Some(Vec::new()),
    };
    let query = match f.get("query") {
        Some(n) => {
            ctx.refuse_on_grpc(sink, n, &f.path("query"), "query parameter matches");
            rules(sink, n, &f.path("query"), false).map(|rules| {
                rules
                    .into_iter()
                    .map(|(name, rule)| QueryMatch { name, rule })
                    .collect()
            })
        }
        None => Some(Vec::new()),
    };
    let methods = match f.get("methods") {
        Some(n) => {
            ctx.refuse_on_grpc(
                sink,
                n,
                &f.path("methods"),
                "method matches (every call is a POST)",
            );
            methods(sink, n, &f.path("methods"))
        }
        None => Some(Vec::new()),
    };
    Some(RouteMatch {
        path: path_match?,
        headers: headers?,
        query: query?,
        methods: methods?,
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

/// A regex in RE2 syntax (see the module doc for why the `regex` crate's check is RE2's).
pub(crate) fn regex(sink: &mut Sink, node: &Node, path: &str) -> Option<String> {
    let s = reader::non_empty_string(sink, node, path)?;
    if s.len() > MAX_REGEX_LEN {
        sink.error(
            node,
            path,
            format!("regex of {} bytes: at most {MAX_REGEX_LEN}", s.len()),
        );
        return None;
    }
    if let Err(e) = regex_syntax::Parser::new().parse(&s) {
        let reason = e.to_string();
        let last = reason.lines().last().unwrap_or("invalid").trim();
        let hint = if s.contains("(?=") || s.contains("(?!") || s.contains("(?<") {
            " (RE2 has no look-around)"
        } else {
            ""
        };
        sink.error(
            node,
            path,
            format!("`{s}` is not an RE2 regex: {last}{hint}"),
        );
        return None;
    }
    Some(s)
}

fn methods(sink: &mut Sink, node: &Node, path: &str) -> Option<Vec<String>> {
    let items = reader::list(sink, node, path)?;
    if items.is_empty() {
        sink.error(
            node,
            path,
            "list at least one method (or leave `methods` out)",
        );
        return None;
    }
    let mut out: Vec<String> = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let ipath = format!("{path}[{i}]");
        let Some(m) = reader::non_empty_string(sink, item, &ipath) else {
            ok = false;
            continue;
        };
        let upper = m.to_ascii_uppercase();
        if !METHODS.contains(&upper.as_str()) {
            sink.error(
                item,
                &ipath,
                format!(
                    "`{m}` is not an HTTP method (one of {})",
                    METHODS.join(", ")
                ),
            );
            ok = false;
        } else if !out.contains(&upper) {
            out.push(upper);
        }
    }
    ok.then_some(out)
}

/// `headers:` / `query:` — `{ name: "value", name: { prefix | suffix | contains | regex |
/// present | absent } }`. Header names are lower-cased (HTTP/2 and Envoy compare them so);
/// query parameter names are case-sensitive.
fn rules(
    sink: &mut Sink,
    node: &Node,
    path: &str,
    header: bool,
) -> Option<Vec<(String, HeaderRule)>> {
    let entries = reader::named_entries(sink, node, path)?;
    let mut out = Vec::new();
    let mut ok = true;
    for (k, v) in entries {
        let Some(name) = reader::non_empty_string(sink, k, path) else {
            ok = false;
            continue;
        };
        let hpath = reader::join(path, &name);
        if header
            && http::HeaderName::from_bytes(name.as_bytes()).is_err()
            && !name.starts_with(':')
        {
            sink.error(k, &hpath, format!("`{name}` is not a valid header name"));
            ok = false;
            continue;
        }
        let rule = if v.as_str().is_some() {
            reader::string(sink, v, &hpath).map(HeaderRule::Exact)
        } else {
            rule(sink, v, &hpath)
        };
        match rule {
            Some(HeaderRule::Present(false)) if !header => {
                sink.error(
                    v,
                    &hpath,
                    "Envoy matches query parameters that are present, not absent ones",
                );
                ok = false;
            }
            Some(rule) if header => out.push((name.to_ascii_lowercase(), rule)),
            Some(rule) => out.push((name, rule)),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn rule(sink: &mut Sink, node: &Node, path: &str) -> Option<HeaderRule> {
    let f = Fields::read(sink, node, path, &RULE)?;
    let kinds: Vec<&str> = f.keys().collect();
    let [kind] = kinds.as_slice() else {
        sink.error(
            node,
            path,
            format!(
                "give exactly one of {}",
                RULE.names().collect::<Vec<_>>().join(", ")
            ),
        );
        return None;
    };
    let value = f.get(kind)?;
    let vpath = f.path(kind);
    Some(match *kind {
        "present" => HeaderRule::Present(reader::boolean(sink, value, &vpath)?),
        "absent" => HeaderRule::Present(!reader::boolean(sink, value, &vpath)?),
        "exact" => HeaderRule::Exact(reader::string(sink, value, &vpath)?),
        "prefix" => HeaderRule::Prefix(reader::non_empty_string(sink, value, &vpath)?),
        "suffix" => HeaderRule::Suffix(reader::non_empty_string(sink, value, &vpath)?),
        "regex" => HeaderRule::Regex(regex(sink, value, &vpath)?),
        _ => HeaderRule::Contains(reader::non_empty_string(sink, value, &vpath)?),
    })
}
