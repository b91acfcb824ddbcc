//! `flotilla render`: the resources a fleet would receive, in Envoy's proto3 JSON.

use serde_json::{Map, Value};

use crate::cache::{EncodedSet, ResourceType, Snapshot};
use crate::config::Config;
use crate::envoy::json::{self, JsonError};
use crate::overlay::Overlay;
use crate::translate::{self, Transport};

/// The key each resource type is listed under in `render` output.
pub fn section(t: ResourceType) -> &'static str {
    match t {
        ResourceType::Cluster => "clusters",
        ResourceType::Endpoint => "endpoints",
        ResourceType::Listener => "listeners",
        ResourceType::Route => "routes",
    }
}

/// The snapshot `serve` would hand Envoys of `fleet` (every resource when `None` or when no
/// fleets are declared; nothing for an undeclared fleet among declared ones), with no health
/// verdicts yet.
pub fn snapshot(config: &Config, fleet: Option<&str>, transport: Transport) -> Snapshot {
    let translation = translate::translate(config, &Overlay::default(), transport);
    let selection = fleet.and_then(|f| translate::select_fleet(config, f));
    EncodedSet::encode(&translation, None).snapshot(selection.as_ref())
}

/// A snapshot as one JSON document: its version, then each type's resources with `@type`.
pub fn to_json(snapshot: &Snapshot, fleet: Option<&str>) -> Result<Value, JsonError> {
    let mut out = Map::new();
    out.insert("version_info".into(), snapshot.version.clone().into());
    out.insert(
        "fleet".into(),
        fleet.map_or(Value::Null, |f| Value::String(f.to_string())),
    );
    for t in ResourceType::ALL {
        let resources = snapshot
            .get(t)
            .resources
            .values()
            .map(|r| json::any_to_json(&r.body))
            .collect::<Result<Vec<_>, _>>()?;
        out.insert(section(t).into(), Value::Array(resources));
    }
    Ok(Value::Object(out))
}
