//! Health facts: what the checkers of every replica found, as the store holds them, served in
//! the overlay for the endpoints that have a health check. Data flows one way: a checker's
//! finding goes to the store, and the store's facts go to every replica's overlay. This
//! replica's own findings are served at once (before, and while the store does not answer,
//! instead of, the store's copy coming back) and written to the store, retried until it
//! takes them; the copy the watch brings back changes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::warn;

use super::{Runtime, State};
use crate::health::ownership::{Checked, FactUpdate, HealthFact};
use crate::overlay::EndpointKey;

/// How long publishing waits before trying the store again.
const RETRY: Duration = Duration::from_millis(500);

/// Most health facts sent to the store at once.
const FACTS_PER_BATCH: usize = 100;

/// The runtime's view of health facts.
#[derive(Default)]
pub(super) struct HealthFacts {
    /// Every fact: the store's, with this replica's own not yet written on top.
    facts: BTreeMap<EndpointKey, HealthFact>,
    /// This replica's findings the store has not taken yet (`None`: a deletion).
    unpublished: BTreeMap<EndpointKey, Option<HealthFact>>,
    /// The endpoints with a health check: the only ones whose facts are served.
    checked: Checked,
}

impl HealthFacts {
    fn set(&mut self, key: EndpointKey, fact: Option<HealthFact>) {
        match fact {
            Some(f) => self.facts.insert(key, f),
            None => self.facts.remove(&key),
        };
    }

    /// Replaces everything with a listing of the store (own unwritten findings kept on top).
    pub(super) fn listed(&mut self, facts: BTreeMap<EndpointKey, HealthFact>) {
        self.facts = facts;
        let own: Vec<FactUpdate> = self
            .unpublished
            .iter()
            .map(|(k, f)| (k.clone(), *f))
            .collect();
        for (k, f) in own {
            self.set(k, f);
        }
    }

    /// A change the store's watch brought; a finding of this replica not yet written is
    /// newer than anything the store holds for its endpoint.
    pub(super) fn changed(&mut self, key: EndpointKey, fact: Option<HealthFact>) {
        if !self.unpublished.contains_key(&key) {
            self.set(key, fact);
        }
    }

    /// The verdicts and measured weights the overlay serves.
    fn served(
        &self,
    ) -> (
        BTreeMap<EndpointKey, crate::overlay::Verdict>,
        BTreeMap<EndpointKey, u32>,
    ) {
        let mut verdicts = BTreeMap::new();
        let mut weights = BTreeMap::new();
        for (key, measured) in self.checked.iter() {
            let Some(fact) = self.facts.get(key) else {
                continue;
            };
            if let Some(v) = fact.verdict {
                verdicts.insert(key.clone(), v);
            }
            if let Some(w) = fact.weight.filter(|_| *measured) {
                weights.insert(key.clone(), w);
            }
        }
        (verdicts, weights)
    }
}

impl Runtime {
    /// Serves the facts of the endpoints with a health check in the overlay, if they differ
    /// from what it holds.
    pub(super) fn apply_health(&self, state: &State) {
        let (verdicts, weights) = state.health.served();
        let overlay = self.controller.overlay();
        if overlay.verdicts == verdicts && overlay.measured_weights == weights {
            return;
        }
        self.controller.update_overlay(|o| {
            o.verdicts = verdicts;
            o.measured_weights = weights;
        });
    }

    /// Findings of this replica's checker: served at once, written to the store later.
    fn own_facts(&self, facts: Vec<FactUpdate>) {
        let mut state = self.lock();
        for (key, fact) in facts {
            state.health.unpublished.insert(key.clone(), fact);
            state.health.set(key, fact);
        }
        self.apply_health(&state);
    }

    /// Follows which endpoints the checker checks.
    pub(super) async fn follow_checked(self: Arc<Self>, mut checked: watch::Receiver<Checked>) {
        loop {
            {
                let current = checked.borrow_and_update().clone();
                let mut state = self.lock();
                state.health.checked = current;
                self.apply_health(&state);
            }
            if checked.changed().await.is_err() {
                return;
            }
        }
    }

    /// Takes this replica's findings from its checker, serves them and writes them to the
    /// store, the newest per endpoint, retrying while the store does not answer.
    pub(super) async fn publish_health(
        self: Arc<Self>,
        mut found: mpsc::UnboundedReceiver<FactUpdate>,
    ) {
        loop {
            let pending = !self.lock().health.unpublished.is_empty();
            let mut batch = Vec::new();
            if !pending {
                match found.recv().await {
                    Some(f) => batch.push(f),
                    None => return,
                }
            }
            while let Ok(f) = found.try_recv() {
                batch.push(f);
            }
            if !batch.is_empty() {
                self.own_facts(batch);
            }
            let chunk: BTreeMap<EndpointKey, Option<HealthFact>> = self
                .lock()
                .health
                .unpublished
                .iter()
                .take(FACTS_PER_BATCH)
                .map(|(k, f)| (k.clone(), *f))
                .collect();
            if chunk.is_empty() {
                continue;
            }
            match self.store.publish_health(&chunk).await {
                Ok(()) => {
                    let mut state = self.lock();
                    for (k, f) in chunk {
                        // Unless a newer finding came meanwhile.
                        if state.health.unpublished.get(&k) == Some(&f) {
                            state.health.unpublished.remove(&k);
                        }
                    }
                }
                Err(e) => {
                    warn!(error = %e, "could not publish health facts; retrying");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overlay::Verdict;

    fn key(port: u16) -> EndpointKey {
        EndpointKey::new("web", format!("127.0.0.1:{port}").parse().unwrap())
    }

    fn fact(verdict: Verdict, weight: Option<u32>) -> HealthFact {
        HealthFact {
            verdict: Some(verdict),
            weight,
        }
    }

    fn checked(keys: &[(u16, bool)]) -> Checked {
        Arc::new(keys.iter().map(|(p, m)| (key(*p), *m)).collect())
    }

    #[test]
    fn only_checked_endpoints_are_served_and_weights_only_when_measured() {
        let mut h = HealthFacts {
            checked: checked(&[(1, false), (2, true)]),
            ..HealthFacts::default()
        };
        h.listed(
            [
                (key(1), fact(Verdict::Unhealthy, Some(9))),
                (key(2), fact(Verdict::Healthy, Some(40))),
                (key(3), fact(Verdict::Unhealthy, None)),
            ]
            .into(),
        );
        let (verdicts, weights) = h.served();
        assert_eq!(
            verdicts,
            [(key(1), Verdict::Unhealthy), (key(2), Verdict::Healthy)].into()
        );
        assert_eq!(weights, [(key(2), 40)].into());
    }

    #[test]
    fn an_unwritten_own_finding_outranks_the_store() {
        let mut h = HealthFacts {
            checked: checked(&[(1, false), (2, false)]),
            ..HealthFacts::default()
        };
        h.unpublished
            .insert(key(1), Some(fact(Verdict::Unhealthy, None)));
        h.unpublished.insert(key(2), None);
        // A listing made meanwhile: the store still has the old facts.
        h.listed(
            [
                (key(1), fact(Verdict::Healthy, None)),
                (key(2), fact(Verdict::Healthy, None)),
            ]
            .into(),
        );
        assert_eq!(h.served().0, [(key(1), Verdict::Unhealthy)].into());
        // A watch event of an older write changes nothing either.
        h.changed(key(1), Some(fact(Verdict::Healthy, None)));
        assert_eq!(h.served().0, [(key(1), Verdict::Unhealthy)].into());
        // Once written, the store's facts apply again.
        h.unpublished.clear();
        h.changed(key(1), None);
        assert!(h.served().0.is_empty());
    }
}
