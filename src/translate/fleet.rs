//! Which resources a fleet of Envoys receives.
//!
//! A fleet is named by the `node.cluster` Envoys report. A fleet listed under `fleets` gets its
//! listeners, their routes, and exactly the clusters (and endpoints) those routes use, so an
//! edge proxy does not carry every internal cluster. Without any `fleets:` every Envoy gets
//! everything; once fleets are declared, an Envoy claiming an undeclared fleet gets nothing
//! (failing closed: a typo or a hostile `node.cluster` must not receive every listener).

use std::collections::BTreeSet;

use crate::config::Config;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FleetSelection {
    pub listeners: BTreeSet<String>,
    pub clusters: BTreeSet<String>,
    /// The Secrets those listeners and clusters name: no Envoy receives a certificate its
    /// fleet does not serve.
    pub secrets: BTreeSet<String>,
}

/// The resources for Envoys whose `node.cluster` is `fleet`. `None` means "everything": no
/// fleets are declared. An undeclared fleet among declared ones gets an empty selection.
pub fn select_fleet(config: &Config, fleet: &str) -> Option<FleetSelection> {
    if config.fleets.is_empty() {
        return None;
    }
    let Some(declared) = config.fleets.get(fleet) else {
        return Some(FleetSelection::default());
    };
    let listeners: BTreeSet<String> = declared.listeners.iter().cloned().collect();
    let clusters: BTreeSet<String> = listeners
        .iter()
        .filter_map(|l| config.listeners.get(l))
        .flat_map(|l| l.clusters().map(str::to_string).chain(l.jwks_clusters()))
        .collect();
    let secrets = listeners
        .iter()
        .filter_map(|l| config.listeners.get(l))
        .flat_map(|l| l.secrets())
        .chain(
            clusters
                .iter()
                .filter_map(|c| config.clusters.get(c))
                .flat_map(|c| c.secrets()),
        )
        .map(str::to_string)
        .collect();
    Some(FleetSelection {
        listeners,
        clusters,
        secrets,
    })
}

/// Whether Envoys of `fleet` are refused every resource: fleets are declared, this one is not.
pub fn fleet_unknown(config: &Config, fleet: &str) -> bool {
    !config.fleets.is_empty() && !config.fleets.contains_key(fleet)
}
