//! The checker of one replica among others (or alone): what it serves for the endpoints
//! other replicas probe, and what it publishes for those it probes.

use super::Aggregator;
use crate::health::ownership::HealthFact;
use crate::overlay::EndpointKey;
use std::collections::BTreeMap;

impl Aggregator {
    /// With replicas: the overlay holds, for every endpoint with a health check, what its
    /// owner published (this replica's own findings for those it probes and has judged), and
    /// nothing for endpoints without one. Until a new owner judges an endpoint, the last
    /// published verdict stays: a replica taking over pushes nothing unchanged.
    pub(super) fn serve_remote(&mut self) {
        let overlay = self.controller.overlay();
        let mut verdicts = overlay.verdicts.clone();
        let mut weights = overlay.measured_weights.clone();
        verdicts.retain(|k, _| self.desired.contains_key(k));
        weights.retain(|k, _| self.desired.contains_key(k));
        for (key, measured) in &self.desired {
            let judged = self
                .targets
                .get(key)
                .is_some_and(|t| t.tracker.verdict().is_some());
            if judged {
                continue;
            }
            let Some(fact) = self.remote.get(key) else {
                // Nobody judged it yet (or it is probed afresh): unknown.
                verdicts.remove(key);
                weights.remove(key);
                continue;
            };
            match fact.verdict {
                Some(v) => verdicts.insert(key.clone(), v),
                None => verdicts.remove(key),
            };
            match fact.weight.filter(|_| *measured) {
                Some(w) => weights.insert(key.clone(), w),
                None => weights.remove(key),
            };
        }
        if verdicts != overlay.verdicts || weights != overlay.measured_weights {
            self.controller.update_overlay(|o| {
                o.verdicts = verdicts;
                o.measured_weights = weights;
            });
        }
    }

    /// Deletes the facts of endpoints that had a health check in `previous` and have none
    /// now (every replica that sees one go deletes it: deleting twice is harmless).
    pub(super) fn forget(&mut self, previous: std::collections::HashMap<EndpointKey, bool>) {
        let publish = &self.publish;
        for key in previous.into_keys() {
            if !self.desired.contains_key(&key) {
                self.remote.remove(&key);
                let _ = publish.send((key, None));
            }
        }
    }

    /// Sends what this replica found about `keys` (those it probes) to the other replicas.
    pub(super) fn publish_facts<'a>(
        &self,
        keys: impl Iterator<Item = &'a EndpointKey>,
        weights: &BTreeMap<EndpointKey, u32>,
    ) {
        let publish = &self.publish;
        for key in keys {
            let Some(target) = self.targets.get(key) else {
                continue;
            };
            let fact = HealthFact {
                verdict: target.tracker.verdict(),
                weight: weights.get(key).copied(),
            };
            let _ = publish.send((key.clone(), Some(fact)));
        }
    }
}
