//! Make-before-break: what each type should look like on the client *now*, given the newest
//! snapshot and what the client has acknowledged so far.
//!
//! On an ADS stream flotilla controls the order in which Envoy applies changes:
//! 1. clusters are added or updated first (removed ones are kept, see 4);
//! 2. their endpoints follow as Envoy subscribes to them;
//! 3. listeners and routes change only once every cluster the new routes (and TCP listeners)
//!    use is known to the
//!    client *and* has acknowledged endpoints, i.e. is warm: no request meets a missing cluster.
//!    Only clusters the client subscribes to count: a client that has not subscribed to a
//!    cluster (yet) cannot warm it before it has the route naming it (proxyless gRPC asks for
//!    LDS, then RDS, then the clusters the routes name), so ordering never starves it;
//! 4. a cluster that left the config is removed only once no route or TCP listener the client
//!    holds (or is being sent) still points at it;
//! 5. secrets are sent as Envoy asks for them, never held back: Envoy asks only once it has
//!    the listener or cluster naming them, and warms that listener or cluster until they
//!    arrive (waiting for the secret before sending the listener would deadlock). A secret
//!    that left the config is kept while the client still subscribes to it: it unsubscribes
//!    when the last listener or cluster naming it is gone.
//!
//! Separate per-type streams cannot be ordered against each other, so they get the snapshot
//! as is.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::held::{HeldRef, UNKNOWN};
use super::subscription::{ClientState, TypeState};
use crate::cache::{Resource, ResourceMap, ResourceType, Snapshot};

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
        ResourceType::Secret => {
            let mut v = current();
            let now = &snapshot.get(t).resources;
            for (name, _) in own.known.iter() {
                if own.subscribed(name) && !now.contains_key(name) {
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
fn subscribed<'a>(own: &TypeState, resources: &'a ResourceMap) -> View<'a> {
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
    use ResourceType::{Cluster, Endpoint, Listener, Route, Secret};
    match (ordered, t) {
        (_, Secret) => &[Secret],
        (false, Cluster) => &[Cluster],
        (false, Endpoint) => &[Endpoint],
        (false, Listener) => &[Listener],
        (false, Route) => &[Route],
        // retained_clusters: the client's clusters, routes and listeners (held and in flight).
        (true, Cluster) => &[Cluster, Route, Listener],
        (true, Endpoint) => &[Endpoint, Cluster, Route, Listener],
        // clusters_warm: the client's clusters and endpoints.
        (true, Listener) => &[Listener, Cluster, Endpoint],
        (true, Route) => &[Route, Cluster, Endpoint],
    }
}

/// Whether every cluster the snapshot's routes use that the client can warm first is warm:
/// known to the client and, once it asks for endpoints at all, with endpoints. A cluster the
/// client does not subscribe to is not waited for (it subscribes once it has the route).
/// Endpoints are not waited for before a client's first EDS request: Envoy's own start-up
/// keeps listeners back until its first clusters are warm. Nor for a cluster the snapshot
/// has no endpoints for (`resolve: envoy`: STRICT_DNS or LOGICAL_DNS, its names inline):
/// Envoy never asks for them, so waiting for them would hold every listener back for good.
pub(crate) fn clusters_warm(snapshot: &Snapshot, client: &ClientState) -> bool {
    let cds = client.get(ResourceType::Cluster);
    let eds = client.get(ResourceType::Endpoint);
    let assignments = &snapshot.get(ResourceType::Endpoint).resources;
    // A client holding exactly this snapshot's clusters and endpoints holds every cluster its
    // routes use: snapshots are consistent.
    if cds.known.is(snapshot.set(ResourceType::Cluster))
        && eds.known.is(snapshot.set(ResourceType::Endpoint))
    {
        return true;
    }
    // What the held sets alone leave cold is computed once per snapshot and pair of sets;
    // this client can differ from them only where it records differences.
    let surely = |held: Option<HeldRef<'_>>| held.is_some_and(|h| h.version != UNKNOWN);
    let warm = |c: &str| {
        !cds.subscribed(c)
            || (surely(cds.known.get(c))
                && (!eds.requested || !assignments.contains_key(c) || surely(eds.known.get(c))))
    };
    let used = snapshot.used_clusters();
    let is_used = |c: &&str| used.binary_search_by(|u| u.as_str().cmp(c)).is_ok();
    snapshot
        .warm_gaps(cds.known.base(), eds.known.base())
        .iter()
        .all(|c| warm(c))
        && cds
            .known
            .differences()
            .chain(eds.known.differences())
            .filter(is_used)
            .all(warm)
}

/// Clusters the client holds that the snapshot dropped but a route or TCP listener the client
/// holds (or is being sent) still uses. A route or listener whose content flotilla does not
/// know (reported by a delta client after a restart) might use any of them, so it keeps them
/// all.
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
            .filter(|n| !in_snapshot.resources.contains_key(n))
            .collect(),
    };
    if held.is_empty() {
        return Vec::new();
    }
    let mut used: BTreeSet<&str> = BTreeSet::new();
    for t in [ResourceType::Route, ResourceType::Listener] {
        let state: &TypeState = client.get(t);
        for (_, known) in state.known.iter() {
            match known.resource {
                Some(r) => used.extend(r.clusters.iter().map(String::as_str)),
                None => return held,
            }
        }
        if let Some(flight) = &state.in_flight {
            used.extend(
                flight
                    .sent
                    .iter()
                    .flat_map(|r| r.clusters.iter().map(String::as_str)),
            );
        }
    }
    held.into_iter().filter(|c| used.contains(c)).collect()
}

#[cfg(test)]
mod walk_tests {
    use super::subscribed;
    use crate::cache::Resource;
    use crate::xds::subscription::TypeState;

    fn resources(n: usize) -> crate::cache::ResourceMap {
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

#[cfg(test)]
mod secret_tests {
    use super::{Entry, view};
    use crate::cache::{Resource, ResourceType, Snapshot};
    use crate::xds::subscription::ClientState;

    fn with_secrets(names: &[(&str, u8)]) -> Snapshot {
        let secrets = names.iter().map(|(n, b)| Resource::test(n, *b)).collect();
        Snapshot::of([Vec::new(), Vec::new(), Vec::new(), Vec::new(), secrets])
    }

    fn client_holding(names: &[&str], held: &Snapshot) -> ClientState {
        let mut client = ClientState::default();
        let sds = client.get_mut(ResourceType::Secret);
        sds.set_names(names.iter().map(|n| n.to_string()).collect());
        for r in held.get(ResourceType::Secret).resources.values() {
            sds.known.hold(r);
        }
        client
    }

    /// (rule, held, subscribed, snapshot, expected view: name → current body or kept)
    type Case = (
        &'static str,
        &'static [(&'static str, u8)],
        &'static [&'static str],
        &'static [(&'static str, u8)],
        &'static [(&'static str, Option<u8>)],
    );

    #[test]
    fn secrets_follow_the_snapshot_and_removals_wait_for_the_unsubscribe() {
        let cases: &[Case] = &[
            (
                "a new secret is sent as soon as it is asked for",
                &[],
                &["a"],
                &[("a", 1)],
                &[("a", Some(1))],
            ),
            (
                "a rotated secret is sent at once",
                &[("a", 1)],
                &["a"],
                &[("a", 2)],
                &[("a", Some(2))],
            ),
            (
                "a secret gone from the config is kept while subscribed",
                &[("a", 1)],
                &["a"],
                &[],
                &[("a", None)],
            ),
            ("and dropped once unsubscribed", &[("a", 1)], &[], &[], &[]),
            (
                "a secret nobody asked for is not sent",
                &[],
                &[],
                &[("b", 1)],
                &[],
            ),
        ];
        for (rule, held, subscribed, now, expected) in cases {
            let client = client_holding(subscribed, &with_secrets(held));
            let snapshot = with_secrets(now);
            let got: Vec<(&str, Option<u8>)> = view(ResourceType::Secret, &snapshot, &client, true)
                .into_iter()
                .map(|(n, e)| match e {
                    Entry::Current(r) => (n, Some(r.body.value[0])),
                    Entry::Keep => (n, None),
                })
                .collect();
            assert_eq!(got, *expected, "{rule}");
        }
    }
}
