//! What every stream should hold after each config change, computed with flotilla's own
//! translation: a stream has "received a change" when what it has acknowledged equals this.
//!
//! SotW responses carry a `version_info` that is a content hash of everything the client
//! holds of that type, so a SotW stream compares four strings. Delta responses carry one
//! version per resource, so a delta stream keeps a vector of versions (indexed by name, see
//! [`Names`]) and compares it with the target's.

use std::collections::{BTreeSet, HashMap};

use anyhow::Result;
use flotilla::cache::{EncodedSet, ResourceType};
use flotilla::overlay::Overlay;
use flotilla::translate::{self, Transport};

/// Every resource name that appears in any state of the scenario, per type, numbered.
#[derive(Debug, Default, Clone)]
pub(crate) struct Names {
    pub(crate) names: [Vec<String>; ResourceType::COUNT],
    index: [HashMap<String, u32>; ResourceType::COUNT],
}

impl Names {
    pub(crate) fn index(&self, t: ResourceType, name: &str) -> Option<u32> {
        self.index[t.index()].get(name).copied()
    }

    pub(crate) fn len(&self, t: ResourceType) -> usize {
        self.names[t.index()].len()
    }

    pub(crate) fn name(&self, t: ResourceType, i: u32) -> &str {
        &self.names[t.index()][i as usize]
    }
}

/// The state one fleet's streams should reach.
#[derive(Debug, Clone)]
pub(crate) struct FleetTarget {
    /// SotW `version_info` per type.
    pub(crate) sotw: [String; ResourceType::COUNT],
    /// Delta: per type, resource version (as a number; 0 = absent) per name index.
    pub(crate) delta: [Vec<u64>; ResourceType::COUNT],
}

/// The target of every fleet for one state of the config.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) fleets: Vec<FleetTarget>,
}

/// flotilla's resource versions are 16 hex digits; a stream keeps them as numbers.
pub(crate) fn version_number(v: &str) -> u64 {
    u64::from_str_radix(v, 16).unwrap_or(u64::MAX).max(1)
}

/// One fleet in one state: SotW versions per type, and (name, version) per type.
type FleetState = (
    [String; ResourceType::COUNT],
    [Vec<(String, u64)>; ResourceType::COUNT],
);

/// Computes the targets of every state, in order, for `fleets` fleets.
pub(crate) fn targets(yamls: &[String], fleets: &[String]) -> Result<(Names, Vec<Target>)> {
    let none = Overlay::default();
    let states: Vec<(&str, &Overlay)> = yamls.iter().map(|y| (y.as_str(), &none)).collect();
    targets_with(&states, fleets)
}

/// As [`targets`], each state a config and the runtime changes over it (drains, weights).
pub(crate) fn targets_with(
    inputs: &[(&str, &Overlay)],
    fleets: &[String],
) -> Result<(Names, Vec<Target>)> {
    let mut states: Vec<Vec<FleetState>> = Vec::new();
    let mut all: [BTreeSet<String>; ResourceType::COUNT] = Default::default();
    for (i, (yaml, overlay)) in inputs.iter().enumerate() {
        let config = flotilla::config::parse_str("loadgen.yaml", yaml)
            .map_err(|d| anyhow::anyhow!("generated config {i} is invalid:\n{d}"))?;
        let translation = translate::translate(&config, overlay, Transport::Ads);
        let encoded = EncodedSet::encode(&translation, None);
        let mut per_fleet = Vec::new();
        for fleet in fleets {
            let selection = translate::select_fleet(&config, fleet);
            let snapshot = encoded.snapshot(selection.as_ref(), flotilla::cache::ClientKind::Other);
            let sotw = ResourceType::ALL.map(|t| match t {
                // The generated configs have no TLS: streams never ask for secrets.
                ResourceType::Secret => String::new(),
                _ => snapshot.get(t).version.clone(),
            });
            let delta = ResourceType::ALL.map(|t| {
                snapshot
                    .get(t)
                    .resources
                    .values()
                    .map(|r| {
                        all[t.index()].insert(r.name.clone());
                        (r.name.clone(), version_number(&r.version))
                    })
                    .collect::<Vec<_>>()
            });
            per_fleet.push((sotw, delta));
        }
        states.push(per_fleet);
    }
    let mut names = Names::default();
    for t in ResourceType::ALL {
        names.names[t.index()] = all[t.index()].iter().cloned().collect();
        names.index[t.index()] = names.names[t.index()]
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i as u32))
            .collect();
    }
    let targets = states
        .into_iter()
        .map(|per_fleet| Target {
            fleets: per_fleet
                .into_iter()
                .map(|(sotw, delta)| FleetTarget {
                    sotw,
                    delta: ResourceType::ALL.map(|t| {
                        let mut v = vec![0; names.len(t)];
                        for (name, version) in &delta[t.index()] {
                            let i = names.index(t, name).expect("every name is indexed above");
                            v[i as usize] = *version;
                        }
                        v
                    }),
                })
                .collect(),
        })
        .collect();
    Ok((names, targets))
}
