//! `listeners.<name>.access_log`: `stdout`, or `{ path: stdout | /abs/file, format: {...} }`
//! where `format` maps JSON field names to Envoy command operator strings.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::config::diagnostic::Sink;
use crate::config::model::{AccessLog, AccessLogSink};
use crate::config::reader::{self, Fields};
use crate::config::shape::{Kind, Object, object, optional, required};
use crate::config::yaml::Node;

use super::access_log_format::{self, MAX_FIELD_NAME, MAX_FORMAT_FIELDS, MAX_FORMAT_VALUE};

/// Bytes in a file path (Linux's PATH_MAX).
pub const MAX_PATH: usize = 4096;

pub(crate) const ACCESS_LOG: Object = object(
    "access_log",
    "Where Envoy writes the listener's access log, and in what JSON format.",
    &[
        required(
            "path",
            Kind::NonEmpty,
            "`stdout` or an absolute file path on Envoy's host.",
        ),
        optional(
            "format",
            Kind::Map(&Kind::NonEmpty),
            "JSON field name → Envoy command operator string (%RESPONSE_CODE%, ...).",
        ),
    ],
);

/// `tcp`: the listener forwards connections (no HTTP operators in its format).
pub(crate) fn access_log(sink: &mut Sink, node: &Node, path: &str, tcp: bool) -> Option<AccessLog> {
    if node.as_str().is_some() {
        return destination(sink, node, path).map(|dest| AccessLog {
            sink: dest,
            format: None,
        });
    }
    let f = Fields::read(sink, node, path, &ACCESS_LOG)?;
    let dest = match f.get("path") {
        Some(n) => destination(sink, n, &f.path("path")),
        None => {
            sink.error(
                node,
                path,
                "missing field `path` (`stdout` or an absolute file path)",
            );
            None
        }
    };
    let format = match f.get("format") {
        Some(n) => format(sink, n, &f.path("format"), tcp).map(Some),
        None => Some(None),
    };
    Some(AccessLog {
        sink: dest?,
        format: format?,
    })
}

fn destination(sink: &mut Sink, node: &Node, path: &str) -> Option<AccessLogSink> {
    let text = reader::non_empty_string(sink, node, path)?;
    if text == "stdout" {
        return Some(AccessLogSink::Stdout);
    }
    let why = if !text.starts_with('/') {
        "expected `stdout` or an absolute file path (Envoy opens it on its own host)"
    } else if text.len() > MAX_PATH {
        "a path is at most 4096 bytes"
    } else if text.ends_with('/') || text.contains('\0') {
        "expected a file, not a directory"
    } else {
        // Envoy opens the file on its own host and appends to whatever it names: only under
        // the directories the operator allows (`--access-log-dir`, /dev/stdout, /dev/stderr).
        match sink.policy().access_log(&text) {
            Ok(()) => return Some(AccessLogSink::File(PathBuf::from(text))),
            Err(why) => {
                let shown = crate::config::escape_controls(&crate::util::clip(&text));
                sink.error(node, path, format!("`{shown}`: {why}"));
                return None;
            }
        }
    };
    let shown = crate::config::escape_controls(&crate::util::clip(&text));
    sink.error(node, path, format!("`{shown}`: {why}"));
    None
}

fn format(sink: &mut Sink, node: &Node, path: &str, tcp: bool) -> Option<BTreeMap<String, String>> {
    let entries = reader::named_entries(sink, node, path)?;
    if entries.is_empty() || entries.len() > MAX_FORMAT_FIELDS {
        sink.error(
            node,
            path,
            format!(
                "{} fields: a format has 1 to {MAX_FORMAT_FIELDS}",
                entries.len()
            ),
        );
        return None;
    }
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (k, v) in entries {
        let Some(name) = reader::non_empty_string(sink, k, path) else {
            ok = false;
            continue;
        };
        let fpath = reader::join(path, &name);
        if name.len() > MAX_FIELD_NAME {
            sink.error(
                k,
                &fpath,
                format!("a field name is at most {MAX_FIELD_NAME} bytes"),
            );
            ok = false;
            continue;
        }
        let Some(value) = reader::non_empty_string(sink, v, &fpath) else {
            ok = false;
            continue;
        };
        let checked = if value.len() > MAX_FORMAT_VALUE {
            Err(format!("a value is at most {MAX_FORMAT_VALUE} bytes"))
        } else {
            access_log_format::check(&value, tcp)
        };
        match checked {
            Ok(()) => {
                out.insert(name, value);
            }
            Err(why) => {
                sink.error(v, &fpath, why);
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

#[cfg(test)]
#[path = "access_log_tests.rs"]
mod tests;
