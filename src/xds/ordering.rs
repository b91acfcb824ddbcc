//! Make-before-break: what each type should look like on the client *now*, given the newest
//! snapshot and what the client has acknowledged so far.
//!
//! On an ADS stream flotilla controls the order in which Envoy applies changes:
//! 1. clusters are added or updated first (removed ones are kept, see 4);
//! 2. their endpoints follow as Envoy subscribes to them;
//! 3. listeners and routes change only once every cluster the new routes use is known to the
//!    client *and* has acknowledged endpoints, i.e. is warm: no request meets a missing cluster.
//!    Only clusters the client subscribes to count: a client that has not subscribed to a
//!    cluster (yet) cannot warm it before it has the route naming it (proxyless gRPC asks for
//!    LDS, then RDS, then the clusters the routes name), so ordering never starves it;
//! 4. a cluster that left the config is removed only once no route the client holds (or is
//!    being sent) still points at it.
//!
//! Separate per-type streams cannot be ordered against each other, so they get the snapshot
//! as is.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::subscription::{ClientState, TypeState};
use crate::cache::{Resource, ResourceType, Snapshot};

/// One resource in a view.
#[derive(Debug, Clone)]
pub(crate) enum Entry<'a> {
    /// The client should hold this resource.
    Current(&'a Arc<Resource>),
    /// The client should keep whatever it holds for this name (a cluster waiting for removal,
    /// a listener waiting for its clusters).
    Keep,
}

/// Borrows names and resources from the snapshot and the client state: building a view
/// copies no string and touches no reference count.
pub(crate) type View<'a> = BTreeMap<&'a str, Entry<'a>>;

/// The view of type `t` for a client subscribed as `state` says. `ordered` is true on ADS.
pub(crate) fn view<'a>(
    t: ResourceType,
    snapshot: &'a Snapshot,
    client: &'a ClientState,
    ordered: bool,
) -> View<'a> {
    let own = client.get(t);
    let current = || subscribed(own, &snapshot.get(t).resources);
    if !ordered {
        return current();
    }
    match t {
        ResourceType::Cluster => {
            let mut v = current();
            for name in retained_clusters(snapshot, client) {
                v.insert(name, Entry::Keep);
            }
            v
        }
        ResourceType::Endpoint => {
            let mut v = current();
            for name in retained_clusters(snapshot, client) {
                if own.subscribed(name) && own.known.contains(name) {
                    v.insert(name, Entry::Keep);
                }
            }
            v
        }
        ResourceType::Listener | ResourceType::Route => {
            if clusters_warm(snapshot, client) {
                current()
            } else {
                own.known
                    .iter()
                    .filter(|(n, _)| own.subscribed(n))
                    .map(|(n, _)| (n, Entry::Keep))
                    .collect()
            }
        }
    }
}

/// The resources the client subscribes to, as current entries. Both sides are sorted, so a
/// subscription to a large share of them is matched by walking both in order (one comparison
/// per step); a small one by looking its names up.
fn subscribed<'a>(own: &TypeState, resources: &'a BTreeMap<String, Arc<Resource>>) -> View<'a> {
    let entry = |(name, r): (&'a String, &'a Arc<Resource>)| (name.as_str(), Entry::Current(r));
    if own.wildcard {
        return resources.iter().map(entry).collect();
    }
    if own.names.len() * 8 < resources.len() {
        return own
            .names
            .iter()
            .filter_map(|n| resources.get_key_value(n))
            .map(entry)
            .collect();
    }
    let mut names = own.names.iter().peekable();
    resources
        .iter()
        .filter(|(name, _)| {
            while names.next_if(|n| n < name).is_some() {}
            names.peek() == Some(name)
        })
        .map(entry)
        .collect()
}

/// The types whose client state [`view`] of `t` reads (besides the snapshot): if none of
/// them changed, neither did the view. Must follow `view` and the helpers below.
pub(crate) fn inputs(t: ResourceType, ordered: bool) -> &'static [ResourceType] {
    use ResourceType::{Cluster, Endpoint, Listener, Route};
    match (ordered, t) {
        (false, Cluster) => &[Cluster],
        (false, Endpoint) => &[Endpoint],
        (false, Listener) => &[Listener],
        (false, Route) => &[Route],
        // retained_clusters: the client's clusters and its routes (held and in flight).
        (true, Cluster) => &[Cluster, Route],
        (true, Endpoint) => &[Endpoint, Cluster, Route],
        // clusters_warm: the client's clusters and endpoints.
        (true, Listener) => &[Listener, Cluster, Endpoint],
        (true, Route) => &[Route, Cluster, Endpoint],
    }
}

/// Whether every cluster the snapshot's routes use that the client can warm first is warm:
/// known to the client and, once it asks for endpoints at all, with endpoints. A cluster the
/// client does not subscribe to is not waited for (it subscribes once it has the route).
/// Endpoints are not waited for before a client's first EDS request: Envoy's own start-up
/// keeps listeners back until its first clusters are warm.
pub(crate) fn clusters_warm(snapshot: &Snapshot, client: &ClientState) -> bool {
    let cds = client.get(ResourceType::Cluster);
    let eds = client.get(ResourceType::Endpoint);
    // A client holding exactly this snapshot's clusters and endpoints holds every cluster its
    // routes use: snapshots are consistent.
    if cds.known.is(snapshot.set(ResourceType::Cluster))
        && eds.known.is(snapshot.set(ResourceType::Endpoint))
    {
        return true;
    }
    snapshot
        .get(ResourceType::Route)
        .resources
        .values()
        .flat_map(|r| r.clusters.iter())
        .all(|c| {
            !cds.subscribed(c)
                || (cds.known.surely_contains(c)
                    && (!eds.requested || eds.known.surely_contains(c)))
        })
}

/// Clusters the client holds that the snapshot dropped but a route the client holds (or is
/// being sent) still uses. A route whose content flotilla does not know (reported by a delta
/// client after a restart) might use any of them, so it keeps them all.
fn retained_clusters<'a>(snapshot: &'a Snapshot, client: &'a ClientState) -> Vec<&'a str> {
    let held_clusters = &client.get(ResourceType::Cluster).known;
    let in_snapshot = snapshot.set(ResourceType::Cluster);
    if held_clusters.is(in_snapshot) {
        return Vec::new();
    }
    let held: Vec<&str> = match snapshot.changes(ResourceType::Cluster) {
        // Holding exactly the previous clusters: only the ones removed since can be extra.
        Some(c) if held_clusters.is(&c.from) => c.removed.iter().map(String::as_str).collect(),
        _ => held_clusters
            .iter()
            .map(|(n, _)| n)
            .filter(|n| !in_snapshot.resources.contains_key(*n))
            .collect(),
    };
    if held.is_empty() {
        return Vec::new();
    }
    let routes: &TypeState = client.get(ResourceType::Route);
    let mut used: BTreeSet<&str> = BTreeSet::new();
    for (_, known) in routes.known.iter() {
        match known.resource {
            Some(r) => used.extend(r.clusters.iter().map(String::as_str)),
            None => return held,
        }
    }
    if let Some(flight) = &routes.in_flight {
        used.extend(
            flight
                .sent
                .iter()
                .flat_map(|r| r.clusters.iter().map(String::as_str)),
        );
    }
    held.into_iter().filter(|c| used.contains(c)).collect()
}

#[cfg(test)]
mod walk_tests {
    use super::subscribed;
    use crate::cache::Resource;
    use crate::xds::subscription::TypeState;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn resources(n: usize) -> BTreeMap<String, Arc<Resource>> {
        (0..n)
            .map(|i| {
                let name = format!("r{i:03}");
                let resource = Resource::test(&name, i as u8);
                (name, resource)
            })
            .collect()
    }

    #[test]
    fn subscribed_walks_and_looks_up_alike() {
        let all = resources(100);
        let few: Vec<String> = ["r001", "r050", "zzz"].map(String::from).into();
        let many: Vec<String> = (0..60).map(|i| format!("r{:03}", i * 2)).collect();
        for wanted in [few, many] {
            let mut own = TypeState::default();
            own.set_names(wanted.into_iter().collect());
            let view = subscribed(&own, &all);
            let expected: Vec<&String> = all.keys().filter(|k| own.names.contains(*k)).collect();
            assert_eq!(view.keys().collect::<Vec<_>>(), expected);
        }
    }
}
