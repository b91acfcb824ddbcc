//! Which names an Envoy's reports may use: the clusters, and their endpoints, of the snapshot
//! its fleet was sent. An Envoy reporting on a cluster flotilla never sent it is noise (or an
//! attempt to fill the traffic view and hide real failures), so such reports are dropped.
//!
//! Each reporting stream follows its fleet's snapshot channel; the names of a snapshot are
//! worked out once and shared by every stream holding it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use tokio::sync::watch;

use crate::cache::{ResourceType, Snapshot, SnapshotCache};
use crate::translate::Transport;

/// The clusters and endpoints in one snapshot.
#[derive(Debug, Default)]
pub(super) struct Names {
    clusters: HashSet<String>,
    /// Per cluster, its endpoints as `ip:port`.
    endpoints: HashMap<String, HashSet<String>>,
}

impl Names {
    fn of(snapshot: &Snapshot) -> Names {
        let clusters = snapshot
            .get(ResourceType::Cluster)
            .resources
            .keys()
            .cloned()
            .collect();
        // Translation recorded each ClusterLoadAssignment's addresses beside its bytes.
        let endpoints = snapshot
            .get(ResourceType::Endpoint)
            .resources
            .values()
            .map(|r| {
                let addresses = r.addresses.iter().map(|a| a.to_string()).collect();
                (r.name.clone(), addresses)
            })
            .collect();
        Names {
            clusters,
            endpoints,
        }
    }

    pub(super) fn cluster(&self, cluster: &str) -> bool {
        self.clusters.contains(cluster)
    }

    pub(super) fn endpoint(&self, cluster: &str, endpoint: &str) -> bool {
        self.endpoints
            .get(cluster)
            .is_some_and(|e| e.contains(endpoint))
    }
}

/// Where reporting streams learn their fleet's names. Until it follows a cache (unit tests of
/// the aggregate alone) every name is accepted.
#[derive(Default)]
pub(super) struct KnownNames {
    cache: OnceLock<Arc<SnapshotCache>>,
    /// Names by snapshot version, shared while any stream holds them.
    memo: Mutex<HashMap<String, Weak<Names>>>,
}

impl KnownNames {
    pub(super) fn follow(&self, cache: Arc<SnapshotCache>) {
        let _ = self.cache.set(cache);
    }

    /// The names Envoys of `fleet` may report on; `None` when not following a cache.
    pub(super) fn for_fleet(&self, fleet: &str) -> Option<Known> {
        let mut snapshots =
            self.cache
                .get()?
                .watch(fleet, Transport::Ads, crate::cache::ClientKind::Other);
        let snapshot = snapshots.borrow_and_update().clone();
        Some(Known {
            names: self.names(&snapshot),
            snapshots,
        })
    }

    fn names(&self, snapshot: &Snapshot) -> Arc<Names> {
        let mut memo = self.memo.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(names) = memo.get(&snapshot.version).and_then(Weak::upgrade) {
            return names;
        }
        memo.retain(|_, w| w.strong_count() > 0);
        let names = Arc::new(Names::of(snapshot));
        memo.insert(snapshot.version.clone(), Arc::downgrade(&names));
        names
    }
}

/// One reporting stream's view of its fleet's names, brought up to date as snapshots change.
pub(super) struct Known {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    names: Arc<Names>,
}

impl Known {
    pub(super) fn current(&mut self, registry: &KnownNames) -> &Names {
        if self.snapshots.has_changed().unwrap_or(false) {
            let snapshot = self.snapshots.borrow_and_update().clone();
            self.names = registry.names(&snapshot);
        }
        &self.names
    }
}
