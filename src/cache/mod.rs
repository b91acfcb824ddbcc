//! Versioned snapshots per fleet, and the channels that wake the streams serving them.
//!
//! `update` translates the latest (config, overlay) once per transport in use, encodes each
//! resource once, and hands every fleet a [`Snapshot`] made of shared `Arc<Resource>`s. Each
//! (fleet, transport) has a `watch` channel: a stream wakes only when its own snapshot's
//! version changed, and a slow stream simply reads the newest value when it gets to it; no
//! stream ever has a queue of stale snapshots.

pub(crate) mod entries;
mod resource;
mod snapshot;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::config::Config;
use crate::overlay::Overlay;
use crate::translate::{self, Transport};

pub use resource::{Resource, ResourceType, content_hash};
pub use snapshot::{Changes, EncodedSet, Snapshot, TypeSet, version_of};

/// What snapshots are made from.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub config: Arc<Config>,
    pub overlay: Arc<Overlay>,
}

#[derive(Default)]
struct State {
    inputs: Option<Inputs>,
    encoded: HashMap<Transport, EncodedSet>,
    channels: HashMap<(String, Transport), watch::Sender<Arc<Snapshot>>>,
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
    pub fn update(&self, inputs: Inputs) -> UpdateSummary {
        let mut state = self.lock();
        let mut transports: Vec<Transport> = state.channels.keys().map(|(_, t)| *t).collect();
        transports.push(Transport::Ads);
        transports.sort();
        transports.dedup();
        let mut encoded = HashMap::new();
        for t in transports {
            let translation = translate::translate(&inputs.config, &inputs.overlay, t);
            encoded.insert(t, EncodedSet::encode(&translation, state.encoded.get(&t)));
        }
        state.encoded = encoded;
        state.inputs = Some(inputs);
        // Fleets nobody is connected to any more are forgotten here, so per-fleet state never
        // outlives its Envoys.
        state.channels.retain(|_, tx| tx.receiver_count() > 0);
        let mut woken = 0;
        let state = &*state;
        let mut everything: HashMap<Transport, Arc<Snapshot>> = HashMap::new();
        for ((fleet, transport), tx) in &state.channels {
            let snapshot = snapshot_for(state, fleet, *transport, &mut everything);
            let changed = tx.send_if_modified(|current| {
                if current.version == snapshot.version {
                    return false;
                }
                // Linked to the snapshot its streams hold: what changed is worked out once
                // here, not by each stream.
                *current = Arc::new(Snapshot::clone(&snapshot).follow(current));
                true
            });
            woken += usize::from(changed);
        }
        let version = state.encoded[&Transport::Ads].snapshot(None).version;
        UpdateSummary { version, woken }
    }

    /// A channel carrying the snapshot for Envoys of `fleet` (their `node.cluster`) on
    /// `transport`. Before the first update it holds an empty snapshot with an empty version.
    pub fn watch(&self, fleet: &str, transport: Transport) -> watch::Receiver<Arc<Snapshot>> {
        let mut state = self.lock();
        let key = (fleet.to_string(), transport);
        if let Some(tx) = state.channels.get(&key) {
            return tx.subscribe();
        }
        ensure_encoded(&mut state, transport);
        let snapshot = if state.inputs.is_some() {
            snapshot_for(&state, fleet, transport, &mut HashMap::new())
        } else {
            Arc::new(Snapshot::default())
        };
        let (tx, rx) = watch::channel(snapshot);
        state.channels.insert(key, tx);
        rx
    }

    /// The current snapshot for a fleet (`None`: all resources), if any config was loaded.
    pub fn current(&self, fleet: Option<&str>, transport: Transport) -> Option<Arc<Snapshot>> {
        let mut state = self.lock();
        ensure_encoded(&mut state, transport);
        let encoded = state.encoded.get(&transport)?;
        let config = &state.inputs.as_ref()?.config;
        let selection = fleet.and_then(|f| translate::select_fleet(config, f));
        Some(Arc::new(encoded.snapshot(selection.as_ref())))
    }

    /// The inputs of the current snapshots.
    pub fn inputs(&self) -> Option<Inputs> {
        self.lock().inputs.clone()
    }

    /// Number of (fleet, transport) channels held, for metrics and leak tests.
    pub fn channel_count(&self) -> usize {
        self.lock().channels.len()
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

fn snapshot_for(
    state: &State,
    fleet: &str,
    transport: Transport,
    everything: &mut HashMap<Transport, Arc<Snapshot>>,
) -> Arc<Snapshot> {
    let Some(inputs) = &state.inputs else {
        return Arc::new(Snapshot::default());
    };
    let encoded = &state.encoded[&transport];
    match translate::select_fleet(&inputs.config, fleet) {
        Some(selection) => Arc::new(encoded.snapshot(Some(&selection))),
        None => everything
            .entry(transport)
            .or_insert_with(|| Arc::new(encoded.snapshot(None)))
            .clone(),
    }
}
