//! `flotilla diff`: what a change does to each fleet, resource by resource and field by
//! field, on the Envoy resources exactly as `render` prints them, with the YAML locations
//! they come from.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Config;
use crate::translate::{ResourceSource, Transport};

/// Field changes listed per resource; the rest is counted.
pub const MAX_FIELDS: usize = 200;
/// Resources read from one served document.
pub const MAX_RESOURCES: usize = 200_000;

/// The resources one fleet receives, as `render` prints them, by (section, name).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetResources {
    pub resources: BTreeMap<String, BTreeMap<String, Value>>,
    /// section → name → where it was written.
    #[serde(default)]
    pub sources: BTreeMap<String, BTreeMap<String, ResourceSource>>,
}

/// What the admin API serves for `diff --against`: the served config's fleets, each as
/// `render` prints it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Served {
    pub revision: Option<String>,
    /// Fleet name (`*` when no fleets are declared) → its resources.
    pub fleets: BTreeMap<String, FleetResources>,
}

#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("render: {0}")]
    Render(#[from] crate::envoy::json::JsonError),
    #[error("{0}")]
    Format(String),
}

/// The fleet name used when a config declares no fleets (every Envoy receives everything).
pub const EVERY_FLEET: &str = "*";

/// The fleets of a config, as diff and `/api/v1/resources` name them.
pub fn fleet_names(config: &Config) -> Vec<String> {
    if config.fleets.is_empty() {
        vec![EVERY_FLEET.to_string()]
    } else {
        config.fleets.keys().cloned().collect()
    }
}

/// The resources `fleet` receives from `config`, as `render --fleet` prints them.
pub fn fleet_resources(config: &Config, fleet: &str) -> Result<FleetResources, DiffError> {
    let selected = (fleet != EVERY_FLEET).then_some(fleet);
    let snapshot = crate::render::snapshot(config, selected, Transport::Ads);
    let json = crate::render::to_json(&snapshot, selected, &config.secrets)?;
    let sources = crate::translate::sources(config);
    let mut out = from_render(&json)?;
    for (section, names) in &out.resources {
        for name in names.keys() {
            if let Some(s) = sources.get(section, name) {
                out.sources
                    .entry(section.clone())
                    .or_default()
                    .insert(name.clone(), s.clone());
            }
        }
    }
    Ok(out)
}

/// Every fleet of `config`.
pub fn served(config: &Config, revision: Option<String>) -> Result<Served, DiffError> {
    let mut fleets = BTreeMap::new();
    for f in fleet_names(config) {
        let r = fleet_resources(config, &f)?;
        fleets.insert(f, r);
    }
    Ok(Served { revision, fleets })
}

/// A `render` document's resources by section and name.
pub fn from_render(json: &Value) -> Result<FleetResources, DiffError> {
    let mut out = FleetResources::default();
    let mut count = 0;
    for section in ["clusters", "endpoints", "listeners", "routes", "secrets"] {
        let Some(items) = json.get(section).and_then(Value::as_array) else {
            continue;
        };
        let by_name = out.resources.entry(section.to_string()).or_default();
        for item in items {
            count += 1;
            if count > MAX_RESOURCES {
                return Err(DiffError::Format(format!(
                    "more than {MAX_RESOURCES} resources"
                )));
            }
            let name = item
                .get("name")
                .or_else(|| item.get("cluster_name"))
                .and_then(Value::as_str)
                .ok_or_else(|| DiffError::Format(format!("a resource in {section} has no name")))?;
            by_name.insert(name.to_string(), item.clone());
        }
    }
    Ok(out)
}

/// Reads what `GET /api/v1/resources` returned.
pub fn parse_served(bytes: &[u8]) -> Result<Served, DiffError> {
    let served: Served = serde_json::from_slice(bytes)
        .map_err(|e| DiffError::Format(format!("not a flotilla resources document: {e}")))?;
    let total: usize = served
        .fleets
        .values()
        .flat_map(|f| f.resources.values())
        .map(BTreeMap::len)
        .sum();
    if total > MAX_RESOURCES {
        return Err(DiffError::Format(format!(
            "more than {MAX_RESOURCES} resources"
        )));
    }
    Ok(served)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Added,
    Removed,
    Changed,
}

/// One field that differs (`old`/`new` null: absent on that side).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    /// `filter_chains[0].filters[0].typed_config.stat_prefix`.
    pub path: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub kind: ChangeKind,
    pub section: String,
    pub name: String,
    /// Where the resource is written in NEW (for a removed one: where it was in OLD).
    pub source: Option<ResourceSource>,
    pub fields: Vec<FieldChange>,
    /// Field changes beyond [`MAX_FIELDS`], not listed.
    #[serde(skip_serializing_if = "is_zero")]
    pub more_fields: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetDiff {
    pub fleet: String,
    pub added: usize,
    pub removed: usize,
    pub changed: usize,
    pub changes: Vec<Change>,
}

/// What turns `old` into `new` for one fleet.
pub fn diff_fleet(fleet: &str, old: &FleetResources, new: &FleetResources) -> FleetDiff {
    let empty = BTreeMap::new();
    let sections: BTreeSet<&String> = old.resources.keys().chain(new.resources.keys()).collect();
    let mut changes = Vec::new();
    for section in sections {
        let a = old.resources.get(section).unwrap_or(&empty);
        let b = new.resources.get(section).unwrap_or(&empty);
        let source = |side: &FleetResources, name: &str| {
            side.sources.get(section).and_then(|s| s.get(name)).cloned()
        };
        let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for name in names {
            let (kind, fields) = match (a.get(name), b.get(name)) {
                (None, Some(_)) => (ChangeKind::Added, Vec::new()),
                (Some(_), None) => (ChangeKind::Removed, Vec::new()),
                (Some(x), Some(y)) if x != y => {
                    let mut fields = Vec::new();
                    fields_of(String::new(), Some(x), Some(y), &mut fields);
                    (ChangeKind::Changed, fields)
                }
                _ => continue,
            };
            let more_fields = fields.len().saturating_sub(MAX_FIELDS);
            changes.push(Change {
                kind,
                section: section.clone(),
                name: name.clone(),
                source: source(new, name).or_else(|| source(old, name)),
                fields: fields.into_iter().take(MAX_FIELDS).collect(),
                more_fields,
            });
        }
    }
    let count = |k| changes.iter().filter(|c: &&Change| c.kind == k).count();
    FleetDiff {
        fleet: fleet.to_string(),
        added: count(ChangeKind::Added),
        removed: count(ChangeKind::Removed),
        changed: count(ChangeKind::Changed),
        changes,
    }
}

/// Every leaf that differs between `a` and `b`, by path (objects by key, arrays by index).
fn fields_of(path: String, a: Option<&Value>, b: Option<&Value>, out: &mut Vec<FieldChange>) {
    if out.len() > MAX_FIELDS {
        return;
    }
    match (a, b) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                fields_of(p, x.get(k), y.get(k), out);
            }
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) => {
            for i in 0..x.len().max(y.len()) {
                fields_of(format!("{path}[{i}]"), x.get(i), y.get(i), out);
            }
        }
        (x, y) if x != y => out.push(FieldChange {
            path,
            old: x.cloned(),
            new: y.cloned(),
        }),
        _ => {}
    }
}

/// Every fleet of either side (or just `only`).
pub fn diff(old: &Served, new: &Served, only: Option<&str>) -> Vec<FleetDiff> {
    let empty = FleetResources::default();
    let fleets: BTreeSet<&String> = old.fleets.keys().chain(new.fleets.keys()).collect();
    fleets
        .into_iter()
        .filter(|f| only.is_none_or(|o| o == f.as_str()))
        .map(|f| {
            diff_fleet(
                f,
                old.fleets.get(f).unwrap_or(&empty),
                new.fleets.get(f).unwrap_or(&empty),
            )
        })
        .collect()
}

/// The diff as people read it: per fleet, `+`/`-`/`~` resources with their YAML location and
/// changed fields.
pub fn to_text(diffs: &[FleetDiff]) -> String {
    let mut out = String::new();
    // Names and values come from the YAML: control characters are escaped line by line.
    let mut line = |text: String| {
        out.push_str(&crate::config::escape_controls(&text));
        out.push('\n');
    };
    for d in diffs {
        if d.changes.is_empty() {
            line(format!("fleet {}: no change", d.fleet));
            continue;
        }
        line(format!(
            "fleet {}: {} added, {} removed, {} changed",
            d.fleet, d.added, d.removed, d.changed
        ));
        for c in &d.changes {
            let mark = match c.kind {
                ChangeKind::Added => '+',
                ChangeKind::Removed => '-',
                ChangeKind::Changed => '~',
            };
            let at = c
                .source
                .as_ref()
                .map_or_else(String::new, |s| format!("  ({s})"));
            line(format!("  {mark} {}/{}{at}", c.section, c.name));
            let show = |v: &Option<Value>| {
                v.as_ref()
                    .map_or_else(|| "(none)".to_string(), Value::to_string)
            };
            for f in &c.fields {
                line(format!(
                    "      {}: {} -> {}",
                    f.path,
                    show(&f.old),
                    show(&f.new)
                ));
            }
            if c.more_fields > 0 {
                line(format!("      ... {} more fields", c.more_fields));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
