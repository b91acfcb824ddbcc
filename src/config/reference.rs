//! The YAML reference (docs/reference/yaml.md), generated from the same tables as the JSON
//! Schema ([`super::shape`]): every key with its type, limit, default and description, so the
//! page cannot drift from what the decoder accepts (a golden test keeps the file current).

use std::collections::{BTreeSet, VecDeque};
use std::fmt::Write;

use super::decode::ROOT;
use super::duration;
use super::shape::{Field, Kind, Object};

/// The whole page, as Markdown.
pub fn markdown() -> String {
    let mut out = String::from(
        "# YAML reference\n\n\
         <!-- Generated from src/config/shape.rs by `flotilla::config::reference::markdown`. \
         Do not edit: change the tables, then run `UPDATE_GOLDEN=1 cargo test --test docs`. -->\n\n\
         Every key flotilla's configuration accepts, generated from the tables the decoder \
         checks keys, enum values and bounds against (the same tables as \
         [`flotilla schema`](../../schema/flotilla.schema.json)). A key not listed is an error \
         (\"unknown field … did you mean …\"). Rules between keys (one action per route, a \
         probe needs endpoints) and references (a route's cluster exists) are checked by \
         `flotilla validate`; the guides explain them. Sizes and counts that are not a single \
         key's bound are in [limits](limits.md).\n\n\
         Durations are written `500ms`, `1s`, `1.5s`, `2m30s`, `1h`; addresses `ip:port` \
         (`[::1]:8080`). \"Default\" is what leaving the key out means; a cluster or route \
         inherits from `defaults` first, and a block whose default is `on` applies the \
         defaults of its own keys.\n",
    );
    for (object, at) in in_document_order() {
        write_object(&mut out, object, &at);
    }
    out
}

/// Every table once, breadth-first from the root, with the first path that reaches it.
fn in_document_order() -> Vec<(&'static Object, String)> {
    let mut seen = BTreeSet::new();
    let mut queue = VecDeque::from([(&ROOT, String::new())]);
    let mut out = Vec::new();
    while let Some((object, at)) = queue.pop_front() {
        if !seen.insert(object.name) {
            continue;
        }
        for field in object.fields {
            let path = if at.is_empty() {
                field.name.to_string()
            } else {
                format!("{at}.{}", field.name)
            };
            push_objects(&field.kind, &path, &mut queue);
        }
        out.push((object, at));
    }
    out
}

fn push_objects(kind: &'static Kind, path: &str, queue: &mut VecDeque<(&'static Object, String)>) {
    match kind {
        Kind::Object(o) => queue.push_back((o, path.to_string())),
        Kind::List(k) => push_objects(k, &format!("{path}[]"), queue),
        Kind::Map(k) => push_objects(k, &format!("{path}.<name>"), queue),
        Kind::AnyOf(kinds) => kinds.iter().for_each(|k| push_objects(k, path, queue)),
        _ => {}
    }
}

fn write_object(out: &mut String, object: &Object, at: &str) {
    let _ = write!(out, "\n## {}\n\n", object.name);
    if at.is_empty() {
        out.push_str("The top of a file.");
    } else {
        let _ = write!(out, "At `{at}`.");
    }
    let _ = writeln!(out, " {}", object.description);
    if object.choose_one {
        out.push_str("\nExactly one of these keys.\n");
    }
    out.push_str("\n| key | value | default | description |\n| --- | --- | --- | --- |\n");
    for field in object.fields {
        let _ = writeln!(
            out,
            "| `{}`{} | {} | {} | {} |",
            field.name,
            if field.required { " (required)" } else { "" },
            kind_text(&field.kind),
            default_text(field),
            cell(field.description),
        );
    }
}

fn default_text(field: &Field) -> String {
    match field.default {
        Some(value) => format!("`{value}`"),
        None if field.required => "—".into(),
        None => "none".into(),
    }
}

fn kind_text(kind: &Kind) -> String {
    match kind {
        Kind::Bool => "`true` or `false`".into(),
        Kind::Integer { min, max } => format!("integer, {} to {}", number(*min), number(*max)),
        Kind::String => "text".into(),
        Kind::NonEmpty => "text, not empty".into(),
        Kind::Scalar => "text, number or boolean (read as text)".into(),
        Kind::Duration { min, max } => format!(
            "duration, {} to {}",
            duration::format(*min),
            duration::format(*max)
        ),
        Kind::Address => "`ip:port`".into(),
        Kind::HostAddress => "`ip:port` or `hostname:port`".into(),
        Kind::Percent => "number, 0 to 100 (decimals allowed)".into(),
        Kind::Enum(values) => one_of(values.iter().map(|v| v.to_string())),
        Kind::IntEnum(values) => one_of(values.iter().map(|v| v.to_string())),
        Kind::Switch => "`true`/`on` (inherit) or `false`/`off` (switch off)".into(),
        Kind::Null => "nothing (the key alone)".into(),
        Kind::List(item) => format!("list of {}", kind_text(item)),
        Kind::Map(value) => format!("map of name → {}", kind_text(value)),
        Kind::Object(o) => format!("[{}](#{})", o.name, anchor(o.name)),
        Kind::AnyOf(kinds) => kinds.iter().map(kind_text).collect::<Vec<_>>().join(" or "),
    }
}

fn one_of(values: impl Iterator<Item = String>) -> String {
    let values: Vec<String> = values.map(|v| format!("`{v}`")).collect();
    match values.as_slice() {
        [one] => one.clone(),
        _ => format!("one of {}", values.join(", ")),
    }
}

/// `1000000` as `1,000,000`; `u64::MAX` as "unbounded".
fn number(n: u64) -> String {
    if n == u64::MAX {
        return "unbounded".into();
    }
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// GitHub's heading anchor for a table's name.
fn anchor(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| {
            if c == ' ' {
                '-'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// A description inside a table cell: no line breaks, no column separators.
fn cell(text: &str) -> String {
    text.replace('\n', " ").replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_has_a_section_and_every_key_a_row() {
        let page = markdown();
        for object in super::super::schema::objects().values() {
            assert!(
                page.contains(&format!("\n## {}\n", object.name)),
                "{}",
                object.name
            );
            for field in object.fields {
                assert!(
                    page.contains(&format!("| `{}`", field.name)),
                    "{}.{}",
                    object.name,
                    field.name
                );
            }
        }
    }

    #[test]
    fn numbers_get_thousands_separators() {
        assert_eq!(number(1_000_000), "1,000,000");
        assert_eq!(number(100), "100");
        assert_eq!(number(u64::MAX), "unbounded");
    }
}
