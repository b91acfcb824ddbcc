//! The JSON Schema (draft 2020-12) of flotilla's YAML, for editors: `flotilla schema`.
//!
//! It is generated from the tables in [`super::shape`] that the decoder itself checks keys and
//! bounds against, so it accepts the keys the decoder accepts and no others. The decoder remains
//! the judge: rules that span fields (one action per route, a probe needs endpoints) and
//! references (a route's cluster exists) are only checked by `flotilla validate`.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::decode::ROOT;
use super::duration;
use super::shape::{Kind, Object};

/// `500ms`, `1s`, `1.5s`, `2m30s`, `1h`: what [`duration::parse`] reads.
const DURATION_PATTERN: &str = r"^\s*([0-9]+(\.[0-9]+)?(ms|s|m|h))+\s*$";
/// `ip:port` or `[ipv6]:port`; the decoder checks the numbers.
const ADDRESS_PATTERN: &str = r"^(\[[0-9A-Fa-f:.]+\]|[0-9.]+):[0-9]{1,5}$";
/// An address or a DNS name (letters, digits, hyphens, dots), then a port.
const HOST_ADDRESS_PATTERN: &str =
    r"^(\[[0-9A-Fa-f:.]+\]|[0-9.]+|[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9.])?):[0-9]{1,5}$";

/// The schema as a JSON value.
pub fn json_schema() -> Value {
    let mut defs = objects();
    let mut root = object_schema(&ROOT);
    let root_map = root.as_object_mut().expect("an object schema");
    let mut head = Map::new();
    head.insert(
        "$schema".into(),
        json!("https://json-schema.org/draft/2020-12/schema"),
    );
    head.insert("title".into(), json!("flotilla configuration (version 1)"));
    head.append(root_map);
    defs.remove(ROOT.name);
    head.insert(
        "$defs".into(),
        Value::Object(
            defs.values()
                .map(|o| (o.name.to_string(), object_schema(o)))
                .collect(),
        ),
    );
    Value::Object(head)
}

/// Every table the schema is made of, by name (the root included).
pub(crate) fn objects() -> BTreeMap<&'static str, &'static Object> {
    let mut defs = BTreeMap::new();
    collect(&ROOT, &mut defs);
    defs
}

fn collect(object: &'static Object, defs: &mut BTreeMap<&'static str, &'static Object>) {
    if let Some(seen) = defs.insert(object.name, object) {
        let same: Vec<&str> = seen.names().collect();
        let this: Vec<&str> = object.names().collect();
        assert_eq!(same, this, "two tables are named `{}`", object.name);
        return;
    }
    for field in object.fields {
        collect_kind(&field.kind, defs);
    }
}

fn collect_kind(kind: &'static Kind, defs: &mut BTreeMap<&'static str, &'static Object>) {
    match kind {
        Kind::Object(o) => collect(o, defs),
        Kind::List(k) | Kind::Map(k) => collect_kind(k, defs),
        Kind::AnyOf(kinds) => kinds.iter().for_each(|k| collect_kind(k, defs)),
        _ => {}
    }
}

fn object_schema(object: &Object) -> Value {
    let properties: Map<String, Value> = object
        .fields
        .iter()
        .map(|f| {
            let mut schema = kind_schema(&f.kind);
            if let Some(map) = schema.as_object_mut() {
                // A kind's own description (a duration's range) follows the field's.
                let description = match map.get("description").and_then(Value::as_str) {
                    Some(own) => format!("{} {own}", f.description),
                    None => f.description.to_string(),
                };
                map.insert("description".into(), json!(description.trim()));
            }
            (f.name.to_string(), schema)
        })
        .collect();
    let required: Vec<&str> = object
        .fields
        .iter()
        .filter(|f| f.required)
        .map(|f| f.name)
        .collect();
    let mut schema = json!({
        "type": "object",
        "description": object.description,
        "properties": properties,
        "additionalProperties": false,
    });
    let map = schema.as_object_mut().expect("an object");
    if !required.is_empty() {
        map.insert("required".into(), json!(required));
    }
    if object.choose_one {
        map.insert("minProperties".into(), json!(1));
        map.insert("maxProperties".into(), json!(1));
    }
    schema
}

fn kind_schema(kind: &Kind) -> Value {
    match kind {
        Kind::Bool => json!({ "type": "boolean" }),
        Kind::Integer { min, max } => json!({ "type": "integer", "minimum": min, "maximum": max }),
        Kind::Percent => json!({ "type": "number", "minimum": 0, "maximum": 100 }),
        Kind::String => json!({ "type": "string" }),
        Kind::NonEmpty => json!({ "type": "string", "minLength": 1 }),
        Kind::Scalar => json!({ "type": ["string", "number", "boolean"] }),
        Kind::Duration { min, max } => json!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": format!(
                "A duration such as 500ms, 1s or 1h ({}..={}).",
                duration::format(*min),
                duration::format(*max)
            ),
        }),
        Kind::Address => json!({ "type": "string", "pattern": ADDRESS_PATTERN }),
        Kind::HostAddress => json!({ "type": "string", "pattern": HOST_ADDRESS_PATTERN }),
        Kind::Enum(values) => json!({ "type": "string", "enum": values }),
        Kind::IntEnum(values) => json!({ "type": "integer", "enum": values }),
        Kind::Switch => json!({ "enum": [true, false, "on", "off"] }),
        Kind::Null => json!({ "type": "null" }),
        Kind::List(item) => json!({ "type": ["array", "null"], "items": kind_schema(item) }),
        Kind::Map(value) => json!({
            "type": ["object", "null"],
            "additionalProperties": kind_schema(value),
        }),
        Kind::Object(o) => json!({ "$ref": format!("#/$defs/{}", o.name) }),
        Kind::AnyOf(kinds) => json!({ "anyOf": kinds.iter().map(kind_schema).collect::<Vec<_>>() }),
    }
}

#[cfg(test)]
#[path = "schema_tests.rs"]
mod tests;
