//! Which YAML item each Envoy resource comes from: the side table of translation.
//!
//! Translation itself stays a pure function of (config, overlay); this table is another pure
//! function of the config, computed only when someone needs to point at the YAML (a NACK, a
//! diff). Resource names are the YAML names (see [`super::Translation`]), so the table is a
//! lookup per section rather than bookkeeping threaded through every translator.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::config::yaml::Location;

/// Where one Envoy resource was written: the key of the item it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceSource {
    /// `file:line:col` of the item's key.
    pub location: String,
    /// The item's dotted path: `listeners.public`, `clusters.web`.
    pub field: String,
}

impl std::fmt::Display for ResourceSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.location, self.field)
    }
}

/// `render` section (`clusters`, `endpoints`, `listeners`, `routes`, `secrets`) and resource
/// name → where it was written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources(BTreeMap<(&'static str, String), ResourceSource>);

impl Sources {
    /// Where resource `name` of `section` (a `render` section name) was written.
    pub fn get(&self, section: &str, name: &str) -> Option<&ResourceSource> {
        let section = SECTIONS.iter().find(|s| **s == section)?;
        self.0.get(&(*section, name.to_string()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

const SECTIONS: [&str; 5] = ["clusters", "endpoints", "listeners", "routes", "secrets"];

fn source(loc: &Location, section: &str, name: &str) -> ResourceSource {
    ResourceSource {
        location: crate::config::escape_controls(&loc.to_string()),
        field: crate::config::escape_controls(&format!("{section}.{name}")),
    }
}

/// Every resource's source: cluster `web` is Cluster and ClusterLoadAssignment `web`
/// (`clusters.web`), listener `public` is Listener and RouteConfiguration `public`
/// (`listeners.public`), and a Secret points at the first listener or cluster that names it.
pub fn sources(config: &Config) -> Sources {
    let mut out = BTreeMap::new();
    for (name, loc) in &config.sources.clusters {
        let s = source(loc, "clusters", name);
        out.insert(("clusters", name.clone()), s.clone());
        out.insert(("endpoints", name.clone()), s);
    }
    for (name, loc) in &config.sources.listeners {
        let s = source(loc, "listeners", name);
        out.insert(("listeners", name.clone()), s.clone());
        out.insert(("routes", name.clone()), s);
    }
    for (name, l) in &config.listeners {
        for secret in l.secrets() {
            if let Some(loc) = config.sources.listeners.get(name) {
                out.entry(("secrets", secret.to_string()))
                    .or_insert_with(|| source(loc, "listeners", name));
            }
        }
    }
    for (name, c) in &config.clusters {
        for secret in c.secrets() {
            if let Some(loc) = config.sources.clusters.get(name) {
                out.entry(("secrets", secret.to_string()))
                    .or_insert_with(|| source(loc, "clusters", name));
            }
        }
    }
    Sources(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_resource_points_at_the_key_that_named_it() {
        let yaml = "version: 1\nclusters:\n  web: { endpoints: [127.0.0.1:8080] }\nlisteners:\n  public:\n    address: 127.0.0.1:10080\n    routes: [{ to: web }]\n";
        let config = crate::config::parse_str("web.yaml", yaml).unwrap();
        let s = sources(&config);
        assert_eq!(
            s.get("clusters", "web").unwrap().to_string(),
            "web.yaml:3:3 clusters.web"
        );
        assert_eq!(s.get("endpoints", "web").unwrap().location, "web.yaml:3:3");
        assert_eq!(
            s.get("listeners", "public").unwrap().to_string(),
            "web.yaml:5:3 listeners.public"
        );
        assert_eq!(s.get("routes", "public").unwrap().field, "listeners.public");
        assert!(s.get("listeners", "nope").is_none());
        assert!(s.get("bogus", "web").is_none());
    }

    #[test]
    fn moving_an_item_does_not_change_the_config() {
        let a = "version: 1\nclusters:\n  web: { endpoints: [127.0.0.1:8080] }\n";
        let b = "version: 1\n\n\nclusters:\n  web: { endpoints: [127.0.0.1:8080] }\n";
        let (a, b) = (
            crate::config::parse_str("t.yaml", a).unwrap(),
            crate::config::parse_str("t.yaml", b).unwrap(),
        );
        assert_eq!(a, b);
        assert_ne!(
            sources(&a).get("clusters", "web"),
            sources(&b).get("clusters", "web")
        );
    }
}
