//! The checker of one replica among others (or alone): what it publishes for the endpoints
//! it probes, and the facts it deletes.

use super::Aggregator;
use crate::health::ownership::HealthFact;
use crate::overlay::EndpointKey;
use std::collections::BTreeMap;

impl Aggregator {
    /// Deletes the facts of endpoints that had a health check in `previous` and have none
    /// now (every replica that sees one go deletes it: deleting twice is harmless).
    pub(super) fn forget(&mut self, previous: std::collections::HashMap<EndpointKey, bool>) {
        let publish = &self.publish;
        for key in previous.into_keys() {
            if !self.desired.contains_key(&key) {
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
            // A measured endpoint's fact always carries its weight (its level as last
            // computed), also when only its verdict changed: the fact replaces the last one.
            let measured = (target.measured && target.smoothed.get().is_some()).then(|| {
                target
                    .configured_weight
                    .saturating_mul(crate::health::latency::level_weight(target.level))
                    .max(1)
            });
            let fact = HealthFact {
                verdict: target.tracker.verdict(),
                weight: weights.get(key).copied().or(measured),
            };
            let _ = publish.send((key.clone(), Some(fact)));
        }
    }
}
