//! In unit tests, every plan `protocol::delta_from_changes` makes is checked against the
//! general path's for the same state (`protocol::next` calls [`answers_as_general`]): the
//! protocol tests and the model-based property test (`spec_model`) drive both through every
//! state they reach.

use std::sync::Arc;

use super::{Mode, Plan, general, view};
use crate::cache::{Resource, ResourceType, Snapshot};
use crate::xds::subscription::ClientState;

/// Panics when `plan` (from the changes) differs from the general path's plan.
pub(super) fn answers_as_general(
    t: ResourceType,
    snapshot: &Snapshot,
    client: &ClientState,
    ordered: bool,
    plan: Option<&Plan>,
) {
    let view = view(t, snapshot, client, ordered);
    let state = client.get(t);
    let general = general(Mode::Delta, t, &view, snapshot.set(t), state);
    // What is sent and removed, and what the client holds once it applies it (whether the
    // plan names that as a set or leaves it to be recorded name by name).
    let shape = |p: Option<&Plan>| {
        p.map(|p| {
            let pair = |r: &Arc<Resource>| (r.name.clone(), r.version.clone());
            let mut sent: Vec<(String, String)> = p.resources.iter().map(pair).collect();
            sent.sort();
            let mut removed = p.removed.clone();
            removed.sort();
            let holds: Vec<(String, String)> = match &p.reaches {
                Some(set) => set.resources.values().map(pair).collect(),
                None => {
                    let mut held: std::collections::BTreeMap<String, String> = state
                        .known
                        .iter()
                        .map(|(n, h)| (n.to_string(), h.version.to_string()))
                        .collect();
                    held.extend(p.resources.iter().map(pair));
                    for name in &p.removed {
                        held.remove(name);
                    }
                    held.into_iter().collect()
                }
            };
            (sent, removed, p.complete, holds)
        })
    };
    assert_eq!(
        shape(plan),
        shape(general.as_ref()),
        "{t:?}: the plan from changes differs from the general path's"
    );
}
