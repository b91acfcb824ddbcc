//! Immutable snapshots: for each resource type, name → encoded resource, plus versions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use super::client_kind::ClientKind;
use super::resource::{Resource, ResourceType, content_hash, digest_version, entry_digest};
use super::resource_map::ResourceMap;
use super::warm_gaps::WarmGaps;
use crate::envoy::pack_resource as any;
use crate::translate::{FleetSelection, Translation};

/// The resources of one type in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TypeSet {
    pub resources: ResourceMap,
    /// Hash over every (name, version): the SotW `version_info` when all of them are sent.
    pub version: String,
    /// The sum of the entries' digests that `version` writes out (see [`entry_digest`]).
    digest: u64,
}

impl TypeSet {
    pub fn new(resources: ResourceMap) -> TypeSet {
        let digest = resources
            .values()
            .fold(0u64, |sum, r| sum.wrapping_add(r.digest));
        TypeSet {
            resources,
            version: digest_version(digest),
            digest,
        }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Resource>> {
        self.resources.get(name)
    }

    /// This set with `updated` in place of the resources of the same names that it holds
    /// (others are ignored: the set is a fleet's subset), and the ones that changed.
    /// O(k log n) for k updates, sharing every other entry with `self`.
    fn replace(&self, updated: &[Arc<Resource>]) -> (TypeSet, Vec<Arc<Resource>>) {
        let mut set = self.clone();
        let mut changed = Vec::new();
        for r in updated {
            let Some(old) = self.resources.get(&r.name) else {
                continue;
            };
            if Arc::ptr_eq(old, r) || old.version == r.version {
                continue;
            }
            set.digest = set.digest.wrapping_sub(old.digest).wrapping_add(r.digest);
            set.resources.insert(r.clone());
            changed.push(r.clone());
        }
        set.version = digest_version(set.digest);
        (set, changed)
    }
}

/// Version over a set of (name, version) pairs. Equal sets have equal versions on any
/// replica, which lets a reconnecting SotW client be recognised as up to date.
pub fn version_of<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    digest_version(
        entries
            .into_iter()
            .fold(0u64, |sum, (n, v)| sum.wrapping_add(entry_digest(n, v))),
    )
}

/// [`version_of`] for entries that may come with their resource: a resource at the version
/// named already carries its digest, so only entries without one are hashed. Planning a
/// response for 1,000 held clusters at 10,000 streams hashed 10 million pairs per change
/// before this.
pub fn version_of_held<'a>(
    entries: impl IntoIterator<Item = (&'a str, &'a str, Option<&'a Arc<Resource>>)>,
) -> String {
    digest_version(entries.into_iter().fold(0u64, |sum, (n, v, r)| {
        let digest = match r {
            Some(r) if r.version == v && r.name == n => r.digest,
            _ => entry_digest(n, v),
        };
        sum.wrapping_add(digest)
    }))
}

/// What changed in one type between the previous snapshot of a fleet and this one, computed
/// once per fleet and update: a stream that holds exactly `from` needs just this.
#[derive(Debug, Clone)]
pub struct Changes {
    pub from: Arc<TypeSet>,
    /// New or changed resources, in name order.
    pub changed: Vec<Arc<Resource>>,
    /// Names in `from` that are gone, in order.
    pub removed: Vec<String>,
}

impl Changes {
    /// Both sets have the same names (only contents changed).
    pub fn same_names(&self) -> bool {
        self.removed.is_empty()
            && self
                .changed
                .iter()
                .all(|r| self.from.resources.contains_key(&r.name))
    }
}

/// What one fleet of Envoys should run. Cheap to share: each type's set is an `Arc` shared
/// with the snapshots before and after it as long as it does not change, and resources sit
/// behind `Arc`s shared with every other snapshot that holds the same bytes.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub version: String,
    types: [Arc<TypeSet>; ResourceType::COUNT],
    changes: [Option<Arc<Changes>>; ResourceType::COUNT],
    /// When this content first appeared (for push latency: created → ACKed by Envoy).
    pub created: Option<Instant>,
    /// Listeners of the fleet left out because they are for the other kind of client (see
    /// [`ClientKind`]): a client naming one is told it does not exist, and why.
    pub withheld_listeners: Arc<BTreeSet<String>>,
    /// The clusters the routes and listeners use, sorted, computed once when first asked and
    /// shared with the snapshots that keep the same routes and listeners (see
    /// [`Snapshot::used_clusters`]).
    used_clusters: Arc<OnceLock<Vec<String>>>,
    /// What clients holding given sets would still lack of `used_clusters` (see
    /// [`WarmGaps`]); this snapshot's own, since it depends on its endpoints too.
    warm_gaps: Arc<WarmGaps>,
}

/// Snapshots are equal when their content is; when they were made does not matter.
impl PartialEq for Snapshot {
    fn eq(&self, other: &Snapshot) -> bool {
        self.version == other.version
            && self.types == other.types
            && self.withheld_listeners == other.withheld_listeners
    }
}

impl Eq for Snapshot {}

impl Snapshot {
    pub fn get(&self, t: ResourceType) -> &TypeSet {
        &self.types[t.index()]
    }

    /// The shared set of type `t` (pointer-equal across snapshots while it is unchanged).
    pub fn set(&self, t: ResourceType) -> &Arc<TypeSet> {
        &self.types[t.index()]
    }

    /// Every cluster a route or listener of this snapshot uses, sorted by name, once each.
    /// Every stream asks whether its client holds them before it may take new listeners or
    /// routes (make-before-break); computed once per snapshot, not per stream.
    pub fn used_clusters(&self) -> &[String] {
        self.used_clusters.get_or_init(|| {
            let used: BTreeSet<&String> = [ResourceType::Route, ResourceType::Listener]
                .into_iter()
                .flat_map(|t| self.get(t).resources.values())
                .flat_map(|r| r.clusters.iter())
                .collect();
            used.into_iter().cloned().collect()
        })
    }

    /// The clusters this snapshot's routes use that a client holding exactly `clusters` and
    /// `endpoints` would lack (see [`WarmGaps`]).
    pub fn warm_gaps(&self, clusters: &Arc<TypeSet>, endpoints: &Arc<TypeSet>) -> Arc<Vec<String>> {
        self.warm_gaps.of(self, clusters, endpoints)
    }

    /// What changed in type `t` since the snapshot this one followed, if it changed.
    pub fn changes(&self, t: ResourceType) -> Option<&Changes> {
        self.changes[t.index()].as_deref()
    }

    /// A snapshot of the given resources per type (in `ResourceType::ALL` order), for tests
    /// of the xDS state machine.
    #[cfg(test)]
    pub(crate) fn of(types: [Vec<Arc<Resource>>; ResourceType::COUNT]) -> Snapshot {
        Snapshot::from_types(
            types.map(|rs| TypeSet::new(rs.into_iter().map(|r| (r.name.clone(), r)).collect())),
        )
    }

    fn from_types(types: [TypeSet; ResourceType::COUNT]) -> Snapshot {
        let versions: Vec<&[u8]> = types.iter().map(|t| t.version.as_bytes()).collect();
        Snapshot {
            version: content_hash(versions),
            types: types.map(Arc::new),
            changes: Default::default(),
            created: Some(Instant::now()),
            withheld_listeners: Default::default(),
            used_clusters: Default::default(),
            warm_gaps: Default::default(),
        }
    }

    /// This snapshot as the successor of `previous` (the one its streams hold): unchanged
    /// types share `previous`'s sets, changed ones carry their [`Changes`].
    pub fn follow(mut self, previous: &Snapshot) -> Snapshot {
        for t in ResourceType::ALL {
            let (old, new) = (&previous.types[t.index()], &self.types[t.index()]);
            if old.version == new.version {
                self.types[t.index()] = old.clone();
                self.changes[t.index()] = None;
                continue;
            }
            let changed = new
                .resources
                .values()
                .filter(|r| {
                    old.get(&r.name)
                        .is_none_or(|o| !Arc::ptr_eq(o, r) && o.version != r.version)
                })
                .cloned()
                .collect();
            let removed = old
                .resources
                .keys()
                .filter(|n| !new.resources.contains_key(n))
                .cloned()
                .collect();
            self.changes[t.index()] = Some(Arc::new(Changes {
                from: old.clone(),
                changed,
                removed,
            }));
        }
        self
    }

    /// This snapshot with the resources of type `t` named in `updated` replaced, those it
    /// holds, as the successor of `self`: `None` if that changes nothing. Every other type's
    /// set is `self`'s, and the changes are known without comparing whole sets, so the cost
    /// does not grow with the fleet's resources (the endpoint fast path).
    pub fn replace(&self, t: ResourceType, updated: &[Arc<Resource>]) -> Option<Snapshot> {
        let (set, changed) = self.types[t.index()].replace(updated);
        if changed.is_empty() {
            return None;
        }
        let mut types = self.types.clone();
        let from = std::mem::replace(&mut types[t.index()], Arc::new(set));
        let mut changes: [Option<Arc<Changes>>; ResourceType::COUNT] = Default::default();
        changes[t.index()] = Some(Arc::new(Changes {
            from,
            changed,
            removed: Vec::new(),
        }));
        let versions: Vec<&[u8]> = types.iter().map(|t| t.version.as_bytes()).collect();
        let routes_unchanged = t != ResourceType::Route && t != ResourceType::Listener;
        Some(Snapshot {
            version: content_hash(versions),
            types,
            changes,
            created: Some(Instant::now()),
            withheld_listeners: self.withheld_listeners.clone(),
            used_clusters: if routes_unchanged {
                self.used_clusters.clone()
            } else {
                Default::default()
            },
            warm_gaps: Default::default(),
        })
    }

    /// Whether every route's clusters, and every cluster's endpoints, are in the snapshot.
    /// go-control-plane's `Snapshot.Consistent()` checks the same before serving.
    #[cfg(test)]
    pub(crate) fn is_consistent(&self) -> bool {
        let clusters = &self.get(ResourceType::Cluster).resources;
        let endpoints = &self.get(ResourceType::Endpoint).resources;
        let routes = &self.get(ResourceType::Route).resources;
        let listeners = &self.get(ResourceType::Listener).resources;
        // A listener either has its RouteConfiguration or forwards connections itself (and
        // then names its clusters).
        clusters.keys().all(|c| endpoints.contains_key(c))
            && listeners
                .iter()
                .all(|(n, l)| routes.contains_key(n) || !l.clusters.is_empty())
            && routes
                .values()
                .chain(listeners.values())
                .flat_map(|r| r.clusters.iter())
                .all(|c| clusters.contains_key(c))
    }
}

/// Every resource of a translation, encoded once. Fleet snapshots are subsets of it.
#[derive(Debug, Clone, Default)]
pub struct EncodedSet {
    types: [BTreeMap<String, Arc<Resource>>; ResourceType::COUNT],
    grpc_listeners: BTreeSet<String>,
}

impl EncodedSet {
    /// Encodes a translation, reusing `previous`'s `Arc`s for resources whose bytes did not
    /// change, so unchanged resources stay pointer-equal across updates.
    pub fn encode(t: &Translation, previous: Option<&EncodedSet>) -> EncodedSet {
        let mut set = EncodedSet {
            grpc_listeners: t.grpc_listeners.clone(),
            ..EncodedSet::default()
        };
        let mut put = |ty: ResourceType, r: Resource| {
            let reused = previous
                .and_then(|p| p.types[ty.index()].get(&r.name))
                .filter(|old| {
                    old.version == r.version && old.body == r.body && old.addresses == r.addresses
                })
                .cloned();
            set.types[ty.index()].insert(r.name.clone(), reused.unwrap_or_else(|| Arc::new(r)));
        };
        for (name, c) in &t.clusters {
            put(
                ResourceType::Cluster,
                Resource::new(name.clone(), any(c), Vec::new()),
            );
        }
        for (name, e) in &t.endpoints {
            put(
                ResourceType::Endpoint,
                Resource {
                    addresses: t.endpoint_addresses.get(name).cloned().unwrap_or_default(),
                    ..Resource::new(name.clone(), any(e), Vec::new())
                },
            );
        }
        for (name, l) in &t.listeners {
            put(
                ResourceType::Listener,
                Resource::new(
                    name.clone(),
                    any(l),
                    t.listener_clusters.get(name).cloned().unwrap_or_default(),
                ),
            );
        }
        for (name, s) in &t.secrets {
            put(
                ResourceType::Secret,
                Resource::new(name.clone(), any(s), Vec::new()),
            );
        }
        for (name, r) in &t.routes {
            put(
                ResourceType::Route,
                Resource::new(
                    name.clone(),
                    any(r),
                    t.route_clusters.get(name).cloned().unwrap_or_default(),
                ),
            );
        }
        set
    }

    /// Replaces resources of type `t` in place (the endpoint fast path): those whose names the
    /// set does not have are ignored, as translation would not have made them.
    pub fn replace(&mut self, t: ResourceType, updated: &[Arc<Resource>]) {
        for r in updated {
            if let Some(old) = self.types[t.index()].get_mut(&r.name)
                && old.version != r.version
            {
                *old = r.clone();
            }
        }
    }

    /// The resource of type `t` named `name`, if the translation made one.
    pub fn get(&self, t: ResourceType, name: &str) -> Option<&Arc<Resource>> {
        self.types[t.index()].get(name)
    }

    /// The snapshot for a fleet (`None`: every resource) as served to `kind` of client.
    pub fn snapshot(&self, selection: Option<&FleetSelection>, kind: ClientKind) -> Snapshot {
        let pick = |ty: ResourceType, keep: &dyn Fn(&str) -> bool| {
            TypeSet::new(
                self.types[ty.index()]
                    .iter()
                    .filter(|(name, _)| keep(name))
                    .map(|(n, r)| (n.clone(), r.clone()))
                    .collect(),
            )
        };
        let cluster = |n: &str| selection.is_none_or(|s| s.clusters.contains(n));
        let listener = |n: &str| selection.is_none_or(|s| s.listeners.contains(n));
        // Secrets (private keys among them) go only to clients whose fleet's listeners or
        // clusters use them, and never to proxyless gRPC clients: they read certificates from
        // their own certificate providers (gRFC A29), never over SDS.
        let secret =
            |n: &str| kind != ClientKind::Grpc && selection.is_none_or(|s| s.secrets.contains(n));
        // Most configs have no gRPC listener, and then an Envoy is served every listener.
        let filtered = kind == ClientKind::Grpc
            || (kind == ClientKind::Envoy && !self.grpc_listeners.is_empty());
        let served = |n: &str| !filtered || kind.serves(self.grpc_listeners.contains(n));
        // A listener's routes share its name and go where it goes.
        let listener_served = |n: &str| listener(n) && served(n);
        let mut snapshot = Snapshot::from_types([
            pick(ResourceType::Cluster, &cluster),
            pick(ResourceType::Endpoint, &cluster),
            pick(ResourceType::Listener, &listener_served),
            pick(ResourceType::Route, &listener_served),
            pick(ResourceType::Secret, &secret),
        ]);
        if filtered {
            snapshot.withheld_listeners = Arc::new(
                self.types[ResourceType::Listener.index()]
                    .keys()
                    .filter(|n| listener(n) && !served(n))
                    .cloned()
                    .collect(),
            );
        }
        snapshot
    }
}
