//! The clusters a snapshot's routes use that a client holding two given sets would still
//! lack, computed once per snapshot and pair of sets instead of once per stream.
//!
//! Before a client may take new listeners or routes, every cluster they use must be warm on
//! it (known, with endpoints: make-before-break). At 10,000 streams and 1,000 clusters,
//! walking every used cluster per stream and per event was the largest share of flotilla's
//! CPU when a cluster was added. But streams record what they hold as a shared set from a
//! snapshot plus a few differences, and all streams of a fleet are at one of a handful of
//! such sets. For each pair of sets (clusters held, endpoints held) the clusters that the
//! sets alone leave cold — the gaps — are computed once; a stream then checks the gaps and
//! its own few differences.

use std::sync::{Arc, Mutex};

use super::resource::ResourceType;
use super::snapshot::{Snapshot, TypeSet};

/// How many pairs of sets are remembered per snapshot: streams are spread over a few
/// (the previous and the current snapshot's, mid-update); a rare one beyond is recomputed.
const REMEMBERED: usize = 8;

/// Gaps of one snapshot, per pair of held sets.
#[derive(Debug, Default)]
pub(super) struct WarmGaps {
    pairs: Mutex<Vec<Pair>>,
}

#[derive(Debug)]
struct Pair {
    /// Kept alive (not just their addresses) so that a freed set's address can never be
    /// mistaken for a new set's.
    clusters: Arc<TypeSet>,
    endpoints: Arc<TypeSet>,
    gaps: Arc<Vec<String>>,
}

impl WarmGaps {
    /// The used clusters of `snapshot` that a client holding exactly `clusters` and
    /// `endpoints` would lack: not in `clusters`, or with endpoints in the snapshot and not in
    /// `endpoints`. Sorted by name.
    pub(super) fn of(
        &self,
        snapshot: &Snapshot,
        clusters: &Arc<TypeSet>,
        endpoints: &Arc<TypeSet>,
    ) -> Arc<Vec<String>> {
        let same =
            |p: &Pair| Arc::ptr_eq(&p.clusters, clusters) && Arc::ptr_eq(&p.endpoints, endpoints);
        if let Some(p) = self.lock().iter().find(|p| same(p)) {
            return p.gaps.clone();
        }
        let assignments = &snapshot.get(ResourceType::Endpoint).resources;
        let gaps: Arc<Vec<String>> = Arc::new(
            snapshot
                .used_clusters()
                .iter()
                .filter(|c| {
                    !clusters.resources.contains_key(c.as_str())
                        || (assignments.contains_key(c.as_str())
                            && !endpoints.resources.contains_key(c.as_str()))
                })
                .cloned()
                .collect(),
        );
        let mut pairs = self.lock();
        if !pairs.iter().any(same) {
            if pairs.len() == REMEMBERED {
                pairs.remove(0);
            }
            pairs.push(Pair {
                clusters: clusters.clone(),
                endpoints: endpoints.clone(),
                gaps: gaps.clone(),
            });
        }
        gaps
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Pair>> {
        self.pairs.lock().unwrap_or_else(|e| e.into_inner())
    }
}
