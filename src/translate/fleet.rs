//! Which resources a fleet of Envoys receives.
//!
//! A fleet is named by the `node.cluster` Envoys report. A fleet listed under `fleets` gets its
//! listeners, their routes, and exactly the clusters (and endpoints) those routes use, so an
//! edge proxy does not carry every internal cluster. Any other fleet gets everything.

use std::collections::BTreeSet;

use crate::config::Config;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FleetSelection {
    pub listeners: BTreeSet<String>,
    pub clusters: BTreeSet<String>,
}

/// The resources for Envoys whose `node.cluster` is `fleet`. `None` when the fleet is not
/// declared, meaning "everything".
pub fn select_fleet(config: &Config, fleet: &str) -> Option<FleetSelection> {
    let declared = config.fleets.get(fleet)?;
    let listeners: BTreeSet<String> = declared.listeners.iter().cloned().collect();
    let clusters = listeners
        .iter()
        .filter_map(|l| config.listeners.get(l))
        .flat_map(|l| l.routes.iter())
        .flat_map(|r| r.action.clusters())
        .map(str::to_string)
        .collect();
    Some(FleetSelection {
        listeners,
        clusters,
    })
}
