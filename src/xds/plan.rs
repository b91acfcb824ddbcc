//! Make-before-break: what each type should look like on the client *now*, given the newest
//! snapshot and what the client has acknowledged so far.
//!
//! On an ADS stream flotilla controls the order in which Envoy applies changes:
//! 1. clusters are added or updated first (removed ones are kept, see 4);
//! 2. their endpoints follow as Envoy subscribes to them;
//! 3. listeners and routes change only once every cluster the new routes use is known to the
//!    client *and* has acknowledged endpoints, i.e. is warm: no request meets a missing cluster;
//! 4. a cluster that left the config is removed only once no route the client holds (or is
//!    being sent) still points at it.
//!
//! Separate per-type streams cannot be ordered against each other, so they get the snapshot
//! as is.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::client::{ClientState, TypeState};
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
                if own.subscribed(name) && own.known.contains_key(name) {
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
                    .keys()
                    .filter(|n| own.subscribed(n))
                    .map(|n| (n.as_str(), Entry::Keep))
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

/// The keys of `keys` that `from` lacks, in order; walked or looked up as in [`subscribed`].
fn missing<'a, V, W>(keys: &'a BTreeMap<String, V>, from: &BTreeMap<String, W>) -> Vec<&'a String> {
    if keys.len() * 8 < from.len() {
        return keys.keys().filter(|k| !from.contains_key(*k)).collect();
    }
    let mut other = from.keys().peekable();
    keys.keys()
        .filter(|k| {
            while other.next_if(|o| o < k).is_some() {}
            other.peek() != Some(k)
        })
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

/// Whether every cluster the snapshot's routes use is known to the client with endpoints.
pub(crate) fn clusters_warm(snapshot: &Snapshot, client: &ClientState) -> bool {
    let clusters = &client.get(ResourceType::Cluster).known;
    let endpoints = &client.get(ResourceType::Endpoint).known;
    snapshot
        .get(ResourceType::Route)
        .resources
        .values()
        .all(|r| all_known(&r.clusters, clusters) && all_known(&r.clusters, endpoints))
}

/// Whether every name of `sorted` (sorted, as a route's clusters are) is a key of `known`.
/// A route that uses a large share of the clusters is checked by walking both in order (one
/// comparison per step), a small one by looking its names up.
fn all_known<V>(sorted: &[String], known: &BTreeMap<String, V>) -> bool {
    if sorted.len() * 8 < known.len() {
        return sorted.iter().all(|c| known.contains_key(c));
    }
    let mut keys = known.keys();
    sorted
        .iter()
        .all(|c| keys.by_ref().find(|k| *k >= c).is_some_and(|k| k == c))
}

/// Clusters the client holds that the snapshot dropped but a route the client holds (or is
/// being sent) still uses. A route whose content flotilla does not know (reported by a delta
/// client after a restart) might use any of them, so it keeps them all.
fn retained_clusters<'a>(snapshot: &Snapshot, client: &'a ClientState) -> Vec<&'a str> {
    let in_snapshot = &snapshot.get(ResourceType::Cluster).resources;
    let held = missing(&client.get(ResourceType::Cluster).known, in_snapshot);
    if held.is_empty() {
        return Vec::new();
    }
    let routes: &TypeState = client.get(ResourceType::Route);
    let mut used: BTreeSet<&str> = BTreeSet::new();
    for known in routes.known.values() {
        match &known.resource {
            Some(r) => used.extend(r.clusters.iter().map(String::as_str)),
            None => return held.into_iter().map(String::as_str).collect(),
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
    held.into_iter()
        .map(String::as_str)
        .filter(|c| used.contains(c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::all_known;
    use std::collections::BTreeMap;

    fn known(names: &[&str]) -> BTreeMap<String, ()> {
        names.iter().map(|n| (n.to_string(), ())).collect()
    }

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn all_known_walks_and_looks_up_alike() {
        let many: Vec<String> = (0..100).map(|i| format!("c{i:03}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let all = known(&refs);
        // Walked (a large share of the keys) and looked up (a few of them).
        assert!(all_known(&many, &all));
        assert!(all_known(&names(&["c005", "c050"]), &all));
        let mut missing = many.clone();
        missing.insert(50, "c049x".to_string());
        assert!(!all_known(&missing, &all));
        assert!(!all_known(&names(&["c005", "zzz"]), &all));
        assert!(!all_known(&names(&["a", "b"]), &known(&["a"])));
        assert!(all_known(&[], &known(&[])));
    }
}

#[cfg(test)]
mod walk_tests {
    use super::{missing, subscribed};
    use crate::cache::Resource;
    use crate::xds::client::TypeState;
    use envoy_types::pb::google::protobuf::Any;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn resources(n: usize) -> BTreeMap<String, Arc<Resource>> {
        (0..n)
            .map(|i| {
                let name = format!("r{i:03}");
                let body = Any {
                    type_url: "t".into(),
                    value: vec![i as u8],
                };
                (
                    name.clone(),
                    Arc::new(Resource::new(name, body, Vec::new())),
                )
            })
            .collect()
    }

    #[test]
    fn subscribed_walks_and_looks_up_alike() {
        let all = resources(100);
        let few: Vec<String> = ["r001", "r050", "zzz"].map(String::from).into();
        let many: Vec<String> = (0..60).map(|i| format!("r{:03}", i * 2)).collect();
        for wanted in [few, many] {
            let own = TypeState {
                names: wanted.into_iter().collect(),
                ..TypeState::default()
            };
            let view = subscribed(&own, &all);
            let expected: Vec<&String> = all.keys().filter(|k| own.names.contains(*k)).collect();
            assert_eq!(view.keys().collect::<Vec<_>>(), expected);
        }
    }

    #[test]
    fn missing_walks_and_looks_up_alike() {
        let all = resources(100);
        let mut held: BTreeMap<String, ()> = all.keys().map(|k| (k.clone(), ())).collect();
        held.insert("gone".into(), ());
        held.insert("r050x".into(), ());
        assert_eq!(missing(&held, &all), vec!["gone", "r050x"]);
        let few: BTreeMap<String, ()> = [("r001".to_string(), ()), ("x".to_string(), ())].into();
        assert_eq!(missing(&few, &all), vec!["x"]);
    }
}
