//! Versioned snapshots per fleet, and the channels that wake the streams serving them.
//!
//! `update` translates the latest (config, overlay) once per transport in use, encodes each
//! resource once, and hands every fleet a [`Snapshot`] made of shared `Arc<Resource>`s. Each
//! (fleet, transport) has a `watch` channel: a stream wakes only when its own snapshot's
//! version changed, and a slow stream simply reads the newest value when it gets to it; no
//! stream ever has a queue of stale snapshots.

pub mod applied;
mod client_kind;
pub(crate) mod entries;
mod resource;
mod resource_map;
mod snapshot;
mod warm_gaps;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::config::Config;
use crate::overlay::Overlay;
use crate::translate::{self, Transport};

pub use client_kind::ClientKind;
pub use resource::{Resource, ResourceType, content_hash};
pub use resource_map::ResourceMap;
pub use snapshot::{Changes, EncodedSet, Snapshot, TypeSet, version_of, version_of_held};

/// What snapshots are made from.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub config: Arc<Config>,
    pub overlay: Arc<Overlay>,
}

/// (fleet, the inbound address of a mesh sidecar's instance, transport, client kind): the
/// streams that receive the same snapshot.
type ChannelKey = (String, Option<SocketAddr>, Transport, ClientKind);

#[derive(Default)]
struct State {
    inputs: Option<Inputs>,
    /// Every resource, as ADS serves it to no fleet in particular: its version is the one
    /// [`UpdateSummary`] reports, kept up to date by the fast path without a rebuild.
    everything: Option<Arc<Snapshot>>,
    encoded: HashMap<Transport, EncodedSet>,
    channels: HashMap<ChannelKey, watch::Sender<Arc<Snapshot>>>,
    /// Which applied config each published version belongs to.
    applied: applied::AppliedIndex,
}

/// The latest snapshots for every fleet that has a connected Envoy.
#[derive(Default)]
pub struct SnapshotCache {
    state: Mutex<State>,
}

/// What an update changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateSummary {
    /// Version of the full resource set (every fleet's resources, ADS form).
    pub version: String,
    /// (fleet, transport) channels whose snapshot changed and whose streams were woken.
    pub woken: usize,
}

impl SnapshotCache {
    pub fn new() -> SnapshotCache {
        SnapshotCache::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the previous, consistent state in place.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Builds new snapshots from `inputs` and wakes the streams whose snapshot changed.
    ///
    /// Translating and encoding a large config takes seconds, so it happens outside the lock:
    /// a stream connecting meanwhile is not held up. Updates themselves are serialised by the
    /// caller (the controller), so none can land in between.
    pub fn update(&self, inputs: Inputs) -> UpdateSummary {
        let previous: HashMap<Transport, EncodedSet> = {
            let state = self.lock();
            let mut transports: Vec<Transport> =
                state.channels.keys().map(|(_, _, t, _)| *t).collect();
            transports.push(Transport::Ads);
            transports
                .into_iter()
                .map(|t| (t, state.encoded.get(&t).cloned().unwrap_or_default()))
                .collect()
        };
        let encoded = previous
            .iter()
            .map(|(t, previous)| {
                let translation = translate::translate(&inputs.config, &inputs.overlay, *t);
                (*t, EncodedSet::encode(&translation, Some(previous)))
            })
            .collect();
        let mut state = self.lock();
        state.encoded = encoded;
        state.inputs = Some(inputs);
        // A stream of a transport not encoded above may have connected meanwhile.
        let connected: Vec<Transport> = state.channels.keys().map(|(_, _, t, _)| *t).collect();
        for t in connected {
            ensure_encoded(&mut state, t);
        }
        // Fleets nobody is connected to any more are forgotten here, so per-fleet state never
        // outlives its Envoys.
        state.channels.retain(|_, tx| tx.receiver_count() > 0);
        let everything = state.encoded[&Transport::Ads].snapshot(None, ClientKind::Other);
        let version = everything.version.clone();
        state.everything = Some(Arc::new(everything));
        let mut woken = 0;
        let state = &mut *state;
        let mut published = Vec::new();
        let mut shared = Shared::default();
        for ((fleet, inbound, transport, kind), tx) in &state.channels {
            let snapshot = snapshot_for(
                state,
                fleet,
                *inbound,
                *transport,
                *kind,
                &mut shared.everything,
            );
            published.push(snapshot.version.clone());
            let changed = tx.send_if_modified(|current| {
                if current.version == snapshot.version
                    && current.withheld_listeners == snapshot.withheld_listeners
                {
                    return false;
                }
                // Linked to the snapshot its streams hold: what changed is worked out once
                // here, not by each stream, and once for every channel that held the same
                // snapshot (every undeclared fleet: one set of changes, not one per name).
                let key = (
                    *transport,
                    *kind,
                    current.version.clone(),
                    snapshot.version.clone(),
                );
                let follow = || Arc::new(Snapshot::clone(&snapshot).follow(current));
                let followed = shared.followed.entry(key).or_insert_with(follow);
                // Fleets with the same resources may withhold different listeners.
                *current = if followed.withheld_listeners == snapshot.withheld_listeners {
                    followed.clone()
                } else {
                    follow()
                };
                true
            });
            woken += usize::from(changed);
        }
        for v in published {
            state.applied.record(&v);
        }
        UpdateSummary { version, woken }
    }

    /// The endpoint fast path: `inputs` differ from the last ones only in the overlay, and
    /// only in what it says about the endpoints of `clusters`. Only their
    /// ClusterLoadAssignments are translated and encoded (once: they are the same on every
    /// transport), and every snapshot that holds one gets the new ones in place of the old;
    /// clusters, listeners, routes and secrets are not touched, and no work grows with the
    /// size of the config. Falls back to [`SnapshotCache::update`] when the config is not
    /// the one last published.
    pub fn update_endpoints(&self, inputs: Inputs, clusters: &BTreeSet<String>) -> UpdateSummary {
        let same_config = {
            let state = self.lock();
            state.everything.is_some()
                && state
                    .inputs
                    .as_ref()
                    .is_some_and(|i| Arc::ptr_eq(&i.config, &inputs.config))
        };
        if !same_config {
            return self.update(inputs);
        }
        let updated: Vec<Arc<Resource>> =
            translate::load_assignments(&inputs.config, &inputs.overlay, clusters)
                .map(|la| Arc::new(Resource::endpoints(la)))
                .collect();
        let mut state = self.lock();
        state.inputs = Some(inputs);
        for set in state.encoded.values_mut() {
            set.replace(ResourceType::Endpoint, &updated);
        }
        if let Some(next) = state
            .everything
            .as_ref()
            .and_then(|e| e.replace(ResourceType::Endpoint, &updated))
        {
            state.everything = Some(Arc::new(next));
        }
        state.channels.retain(|_, tx| tx.receiver_count() > 0);
        // Channels holding the same snapshot (every undeclared fleet) share its successor.
        let mut followed: HashMap<(Transport, ClientKind, String), Option<Arc<Snapshot>>> =
            HashMap::new();
        let mut woken = 0;
        for ((_, _, transport, kind), tx) in &state.channels {
            let changed = tx.send_if_modified(|current| {
                let key = (*transport, *kind, current.version.clone());
                let shared = followed.entry(key).or_insert_with(|| {
                    current
                        .replace(ResourceType::Endpoint, &updated)
                        .map(Arc::new)
                });
                let next = match shared {
                    Some(s) if s.withheld_listeners == current.withheld_listeners => {
                        Some(s.clone())
                    }
                    Some(_) => current
                        .replace(ResourceType::Endpoint, &updated)
                        .map(Arc::new),
                    None => None,
                };
                match next {
                    Some(next) => {
                        *current = next;
                        true
                    }
                    None => false,
                }
            });
            woken += usize::from(changed);
        }
        // The snapshots now held belong to the config applied last (its revision, for ACKs).
        let published: Vec<String> = state
            .channels
            .values()
            .map(|tx| tx.borrow().version.clone())
            .collect();
        for v in published {
            state.applied.record(&v);
        }
        let version = state
            .everything
            .as_ref()
            .map(|e| e.version.clone())
            .unwrap_or_default();
        UpdateSummary { version, woken }
    }

    /// A channel carrying the snapshot for Envoys of `fleet` (their `node.cluster`) on
    /// `transport`, as served to `kind` of client. Before the first update it holds an empty
    /// snapshot with an empty version.
    pub fn watch(
        &self,
        fleet: &str,
        transport: Transport,
        kind: ClientKind,
    ) -> watch::Receiver<Arc<Snapshot>> {
        self.watch_instance(fleet, None, transport, kind)
    }

    /// [`SnapshotCache::watch`] for one sidecar of a mesh service whose inbound listener is at
    /// `inbound`: its snapshot shares every resource with its service's other instances but
    /// that listener. Outside the mesh `inbound` changes nothing.
    pub fn watch_instance(
        &self,
        fleet: &str,
        inbound: Option<SocketAddr>,
        transport: Transport,
        kind: ClientKind,
    ) -> watch::Receiver<Arc<Snapshot>> {
        let mut state = self.lock();
        let inbound = inbound.filter(|_| {
            state
                .inputs
                .as_ref()
                .is_some_and(|i| translate::is_mesh_service(&i.config, fleet))
        });
        let key = (fleet.to_string(), inbound, transport, kind);
        if let Some(tx) = state.channels.get(&key) {
            return tx.subscribe();
        }
        // A fleet whose last stream went is forgotten before a new one is made, so channels
        // are bounded by the fleets with open streams, not by every name ever claimed.
        state.channels.retain(|_, tx| tx.receiver_count() > 0);
        ensure_encoded(&mut state, transport);
        let snapshot = match &state.inputs {
            None => Arc::new(Snapshot::default()),
            Some(inputs) => {
                if translate::fleet_unknown(&inputs.config, fleet) {
                    unknown_fleet_event(&inputs.config, fleet);
                }
                let mut everything = HashMap::new();
                // Any undeclared fleet already served shares its snapshot with this one.
                if let Some(held) = state
                    .channels
                    .iter()
                    .filter(|((f, _, t, k), _)| {
                        *t == transport && *k == kind && undeclared(inputs, f)
                    })
                    .map(|(_, tx)| tx.borrow().clone())
                    .next()
                {
                    everything.insert((transport, kind), held);
                }
                snapshot_for(&state, fleet, inbound, transport, kind, &mut everything)
            }
        };
        state.applied.record(&snapshot.version);
        let (tx, rx) = watch::channel(snapshot);
        state.channels.insert(key, tx);
        rx
    }

    /// Names the config the next publications belong to. With `relabel`, the snapshots
    /// already published belong to it too (the same content at a new revision).
    pub fn set_applied(&self, applied: applied::Applied, relabel: bool) {
        let mut state = self.lock();
        state.applied.set_current(applied);
        if relabel {
            let versions: Vec<String> = state
                .channels
                .values()
                .map(|tx| tx.borrow().version.clone())
                .collect();
            for v in versions {
                state.applied.record(&v);
            }
        }
    }

    /// The config the current publications belong to.
    pub fn current_applied(&self) -> applied::Applied {
        self.lock().applied.current().clone()
    }

    /// The applied config a snapshot version was published for, if still remembered.
    pub fn applied_of(&self, version: &str) -> Option<applied::Applied> {
        self.lock().applied.get(version).cloned()
    }

    /// Whether the config declares `fleet` (`None`: it declares no fleets, or none is loaded),
    /// so that per-fleet metrics label only fleets the operator named.
    pub fn fleet_declared(&self, fleet: &str) -> Option<bool> {
        let state = self.lock();
        let config = &state.inputs.as_ref()?.config;
        (!config.fleets.is_empty()).then(|| config.fleets.contains_key(fleet))
    }

    /// Whether `fleet` is a service of the mesh being served that others can call (it has a
    /// `port`): its sidecars' inbound listeners are its instances.
    pub fn is_callable_mesh_service(&self, fleet: &str) -> bool {
        self.lock().inputs.as_ref().is_some_and(|i| {
            i.config
                .mesh
                .as_ref()
                .and_then(|m| m.services.get(fleet))
                .is_some_and(|s| s.port.is_some())
        })
    }

    /// The current snapshot for a fleet (`None`: all resources) as served to `kind` of client,
    /// if any config was loaded.
    pub fn current(
        &self,
        fleet: Option<&str>,
        transport: Transport,
        kind: ClientKind,
    ) -> Option<Arc<Snapshot>> {
        let mut state = self.lock();
        ensure_encoded(&mut state, transport);
        let encoded = state.encoded.get(&transport)?;
        let config = &state.inputs.as_ref()?.config;
        let selection = fleet.and_then(|f| translate::select_fleet(config, f));
        Some(Arc::new(encoded.snapshot(selection.as_ref(), kind)))
    }
}

/// Translates and encodes the current inputs for `transport` if no stream used it yet.
fn ensure_encoded(state: &mut State, transport: Transport) {
    if let Some(inputs) = state.inputs.clone()
        && !state.encoded.contains_key(&transport)
    {
        let translation = translate::translate(&inputs.config, &inputs.overlay, transport);
        state
            .encoded
            .insert(transport, EncodedSet::encode(&translation, None));
    }
}

/// Snapshots shared between the channels of one update.
#[derive(Default)]
struct Shared {
    /// Per transport and client kind, the one snapshot of every undeclared fleet.
    everything: HashMap<(Transport, ClientKind), Arc<Snapshot>>,
    /// (transport, kind, held version, new version) → the new snapshot following the held one.
    followed: HashMap<(Transport, ClientKind, String, String), Arc<Snapshot>>,
}

/// Fleets that are not declared all receive the same snapshot (everything, or nothing once
/// fleets are declared), made once per transport however many names Envoys claim.
fn undeclared(inputs: &Inputs, fleet: &str) -> bool {
    !inputs.config.fleets.contains_key(fleet) && !translate::is_mesh_service(&inputs.config, fleet)
}

/// Warnings about undeclared fleets: any client can make up names as fast as it likes.
static UNKNOWN_FLEET_LOG: crate::throttle::Throttle = crate::throttle::per_site();

fn unknown_fleet_event(config: &crate::config::Config, fleet: &str) {
    let declared: Vec<&str> = config.fleets.keys().map(String::as_str).collect();
    if let Some(suppressed) = UNKNOWN_FLEET_LOG.allow() {
        tracing::warn!(
            fleet,
            ?declared,
            suppressed,
            "an Envoy claims an undeclared fleet: it receives nothing"
        );
    }
    crate::events::record(crate::events::NewEvent::new(
        crate::events::Kind::Node,
        format!(
            "an Envoy claims fleet {fleet:?}, which is not declared under fleets ({}): it receives no resources",
            declared.join(", ")
        ),
    ));
}

fn snapshot_for(
    state: &State,
    fleet: &str,
    inbound: Option<SocketAddr>,
    transport: Transport,
    kind: ClientKind,
    everything: &mut HashMap<(Transport, ClientKind), Arc<Snapshot>>,
) -> Arc<Snapshot> {
    let Some(inputs) = &state.inputs else {
        return Arc::new(Snapshot::default());
    };
    let encoded = &state.encoded[&transport];
    if undeclared(inputs, fleet) {
        return everything
            .entry((transport, kind))
            .or_insert_with(|| {
                let selection = translate::select_fleet(&inputs.config, fleet);
                Arc::new(encoded.snapshot(selection.as_ref(), kind))
            })
            .clone();
    }
    let selection = translate::select_instance(&inputs.config, fleet, inbound);
    Arc::new(encoded.snapshot(selection.as_ref(), kind))
}

#[cfg(test)]
mod fast_path_tests;
#[cfg(test)]
mod tests;
