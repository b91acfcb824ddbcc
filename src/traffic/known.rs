//! Which names an Envoy's reports may use: the clusters, and their endpoints, of the snapshot
//! its fleet was sent. An Envoy reporting on a cluster flotilla never sent it is noise (or an
//! attempt to fill the traffic view and hide real failures), so such reports are dropped.
//!
//! Each reporting stream follows its fleet's snapshot channel; the names of a snapshot are
//! worked out once and shared by every stream holding it.
//!
//! Envoy's stats do not carry a cluster's name as sent: stat names are sanitized (every `:`
//! becomes `_`, Envoy's `Stats::Utility::sanitizeStatsName`), so the mesh's
//! `mesh-call:orders:payments` is reported as `mesh-call_orders_payments`. Each snapshot's
//! names therefore also map the stat form of a name back to the name (load reports carry the
//! name itself).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use tokio::sync::watch;

use crate::cache::{ResourceType, Snapshot, SnapshotCache};
use crate::translate::Transport;

/// The clusters and endpoints in one snapshot.
#[derive(Debug, Default)]
pub(super) struct Names {
    clusters: HashSet<String>,
    /// The stat form of each cluster name that sanitizing changes, and the name (None when
    /// two names, or a name and another's stat form, read the same in stats: ambiguous
    /// reports are dropped rather than credited to the wrong cluster).
    stat_names: HashMap<String, Option<String>>,
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
            stat_names: stat_names(&clusters),
            clusters,
            endpoints,
        }
    }

    /// The cluster a stats report on `reported` is about: the name itself, or the name whose
    /// stat form it is; None for a name flotilla never sent (or an ambiguous stat form).
    pub(super) fn cluster(&self, reported: &str) -> Option<&str> {
        if let Some(name) = self.clusters.get(reported) {
            return Some(name);
        }
        self.stat_names.get(reported)?.as_deref()
    }

    pub(super) fn endpoint(&self, cluster: &str, endpoint: &str) -> bool {
        self.endpoints
            .get(cluster)
            .is_some_and(|e| e.contains(endpoint))
    }
}

/// How Envoy writes `name` in a stat name (`Stats::Utility::sanitizeStatsName`): `://`, `:/`
/// and `:` become `_`, as does NUL; a leading or trailing `.` is dropped.
pub(super) fn stat_name(name: &str) -> String {
    let name = name.strip_suffix('.').unwrap_or(name);
    let name = name.strip_prefix('.').unwrap_or(name);
    name.replace("://", "_")
        .replace(":/", "_")
        .replace([':', '\0'], "_")
}

fn stat_names(clusters: &HashSet<String>) -> HashMap<String, Option<String>> {
    let mut out: HashMap<String, Option<String>> = HashMap::new();
    for name in clusters {
        let stat = stat_name(name);
        if stat == *name {
            continue;
        }
        out.entry(stat)
            .and_modify(|n| *n = None)
            .or_insert_with(|| Some(name.clone()));
    }
    // A stat form that is also a real name is that name's (and so ambiguous for the other).
    out.retain(|stat, _| !clusters.contains(stat));
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    fn names(clusters: &[&str]) -> Names {
        let clusters: HashSet<String> = clusters.iter().map(|c| c.to_string()).collect();
        Names {
            stat_names: stat_names(&clusters),
            clusters,
            endpoints: HashMap::new(),
        }
    }

    #[test]
    fn a_stat_name_is_the_name_envoy_sanitized() {
        assert_eq!(
            stat_name("mesh-call:orders:payments"),
            "mesh-call_orders_payments"
        );
        assert_eq!(stat_name("web"), "web");
        assert_eq!(stat_name("a://b:/c:d."), "a_b_c_d");
    }

    #[test]
    fn a_report_on_a_stat_name_is_about_the_cluster_it_names() {
        let n = names(&["web", "mesh-call:orders:payments", "mesh-local:orders"]);
        assert_eq!(n.cluster("web"), Some("web"));
        assert_eq!(
            n.cluster("mesh-call_orders_payments"),
            Some("mesh-call:orders:payments")
        );
        assert_eq!(
            n.cluster("mesh-call:orders:payments"),
            Some("mesh-call:orders:payments")
        );
        assert_eq!(n.cluster("mesh-call_orders_ledger"), None);
        assert_eq!(n.cluster("other"), None);
    }

    #[test]
    fn an_ambiguous_stat_name_is_nobodys() {
        // `a_b` calling `c` and `a` calling `b_c` read the same in Envoy's stats.
        let n = names(&["mesh-call:a_b:c", "mesh-call:a:b_c", "x:y", "x_y"]);
        assert_eq!(n.cluster("mesh-call_a_b_c"), None);
        // A real name is always itself.
        assert_eq!(n.cluster("x_y"), Some("x_y"));
    }
}
