//! Runtime operations that do not go through git: draining an endpoint, overriding its weight,
//! and endpoints registering themselves (autoscaled instances), either with a lease renewed
//! over HTTP or bound to a registration stream (`session`).
//!
//! Everything here is kept in a [`Store`] shared by every replica (with one flotilla, its
//! local store): the runtime writes a change to the store, applies it at once, and follows
//! the store's changes whoever made them (`follow`). Drains and overrides are operator
//! decisions and survive restarts; registrations are leases: an instance that stops
//! heartbeating leaves within its TTL, one whose stream breaks leaves at once. The health
//! facts every replica's checker finds go the same way (`health_facts`). All of them reach
//! Envoy through the controller's overlay.

mod acks;
pub mod admission;
mod drain_on_end;
mod follow;
mod health_facts;
mod leases;
mod registrations;
pub mod replicated;
pub mod session;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::control::Controller;
use crate::events::{self, Kind, NewEvent};
use crate::overlay::EndpointKey;
use crate::store::{Ack, LocalStore, Persistent, StateFile, StateFileError, Store, StoreError};
use leases::{Lease, Leases};
use replicated::ReplicaLink;

/// Shortest and longest lease a registration may ask for.
pub const MIN_TTL: Duration = Duration::from_secs(1);
pub const MAX_TTL: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("no configuration is loaded yet")]
    NoConfig,
    #[error("unknown cluster `{}`", crate::util::clip(.0))]
    UnknownCluster(String),
    #[error("{address} is not an endpoint of cluster `{cluster}`")]
    UnknownEndpoint {
        cluster: String,
        address: SocketAddr,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error(
        "{address} is configured in cluster `{cluster}` already; registrations are for endpoints the config does not list"
    )]
    Configured {
        cluster: String,
        address: SocketAddr,
    },
    #[error("{address} in cluster `{cluster}` is registered by another instance")]
    Taken {
        cluster: String,
        address: SocketAddr,
    },
    /// Not allowed at all: the cluster takes no registrations, or none from this identity, or
    /// the address is an Envoy's admin interface (403, PERMISSION_DENIED).
    #[error("{0}")]
    Forbidden(String),
    /// A per-stream or per-peer limit of stream registrations.
    #[error("{0}")]
    Limit(String),
    #[error(
        "cluster `{cluster}` has {max} registrations, its limit (clusters.{cluster}.registrations.max): refused until one ends"
    )]
    Full { cluster: String, max: usize },
    /// The local state file could not be written.
    #[error("{0}")]
    Store(String),
    /// The store (etcd) did not take the change: nothing changed anywhere.
    #[error(
        "{0}; nothing was changed (every replica keeps serving the last state it saw); retry once the store is back"
    )]
    StoreUnavailable(String),
}

impl From<StoreError> for RuntimeError {
    fn from(e: StoreError) -> RuntimeError {
        match e {
            StoreError::Unavailable(m) => RuntimeError::StoreUnavailable(m),
            StoreError::StateFile(m) => RuntimeError::Store(m),
        }
    }
}

/// A registration as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LeaseView {
    pub cluster: String,
    pub address: String,
    pub weight: u32,
    pub ttl_ms: u64,
    /// Time left before the lease runs out, in milliseconds.
    pub expires_in_ms: u64,
    #[serde(with = "crate::util::unix_millis")]
    pub registered_at: SystemTime,
    pub renewals: u64,
    /// The registration stream holding the endpoint (TTL and expiry are then 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<session::SessionId>,
    /// The replica holding that stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Draining before its instance exits (stream registrations only).
    pub leaving: bool,
}

#[derive(Default)]
struct State {
    persistent: Persistent,
    leases: Leases,
    sessions: session::Sessions,
    /// What each replica's Envoys say about leaving endpoints.
    acks: BTreeMap<(EndpointKey, String), Ack>,
    /// The live replicas, as the store says.
    members: std::collections::BTreeSet<String>,
    /// Bumped by every change to the registered endpoints (not by a plain renewal).
    registry_version: u64,
    /// Health facts of every replica, served in the overlay.
    health: health_facts::HealthFacts,
}

pub struct Runtime {
    controller: Arc<Controller>,
    store: Arc<dyn Store>,
    /// This replica's name among the members of the store.
    me: String,
    /// One drain or override change at a time, from reading the state to storing it.
    writes: tokio::sync::Mutex<()>,
    /// Whether the store answers (listed and following).
    store_up: watch::Sender<bool>,
    /// Bumped on every change of members or acknowledgements (drains waiting on them).
    acks_changed: watch::Sender<u64>,
    state: Mutex<State>,
    /// Wakes the publishing task: the registry changed.
    leases_changed: Notify,
    /// The registry version the overlay holds.
    published: watch::Sender<u64>,
    /// How many times the registry was published (a burst must cost a few, not one each).
    publishes: std::sync::atomic::AtomicU64,
    /// Ends the tasks; nothing is published after it.
    shutdown: CancellationToken,
    /// flotilla's own listening addresses (xDS, admin): never registered.
    own: Mutex<Vec<(SocketAddr, &'static str)>>,
}

/// How long a call made before the store's first listing waits for it.
const FIRST_LISTING: Duration = Duration::from_secs(2);

impl Runtime {
    /// Starts replica `link.me` on `store`: joins its members, follows its changes (a store
    /// that is down delays that, not the start: the replica serves its config meanwhile and
    /// catches up when the store answers), and publishes registrations into the overlay.
    pub fn start(
        controller: Arc<Controller>,
        store: Arc<dyn Store>,
        link: ReplicaLink,
        shutdown: CancellationToken,
    ) -> Arc<Runtime> {
        let runtime = Arc::new(Runtime {
            controller,
            store,
            me: link.me.clone(),
            writes: tokio::sync::Mutex::new(()),
            store_up: watch::Sender::new(false),
            acks_changed: watch::Sender::new(0),
            state: Mutex::new(State::default()),
            leases_changed: Notify::new(),
            published: watch::Sender::new(0),
            publishes: Default::default(),
            shutdown: shutdown.clone(),
            own: Mutex::new(Vec::new()),
        });
        runtime.store.join(&runtime.me);
        tokio::spawn(runtime.clone().follow(link, shutdown.clone()));
        tokio::spawn(runtime.clone().publish_loop(shutdown));
        runtime
    }

    /// One flotilla on its state file (tests, benchmarks, fuzzing; `serve` builds the same).
    pub fn local(
        controller: Arc<Controller>,
        file: StateFile,
        shutdown: CancellationToken,
    ) -> Result<Arc<Runtime>, StateFileError> {
        let store = Arc::new(LocalStore::open(file)?);
        let (link, _health) = replicated::link("local".into());
        Ok(Runtime::start(controller, store, link, shutdown))
    }

    /// This replica's name.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// Returns once the store was listed (its drains, overrides and registrations applied),
    /// or after a short wait if it does not answer.
    pub async fn listed(&self) {
        let _ = self.check_store().await;
    }

    /// Whether the store answers; follow it with [`watch::Receiver::changed`].
    pub fn store_available(&self) -> watch::Receiver<bool> {
        self.store_up.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes drains and weight overrides into the overlay, at once: an operator who
    /// drains an endpoint sees it drained when the call returns.
    fn apply(&self, state: &State) {
        self.controller.update_overlay(|o| {
            o.draining.clone_from(&state.persistent.drains);
            o.weights.clone_from(&state.persistent.weights);
        });
    }

    /// Publishes the registered endpoints into the overlay. Registrations arrive in bursts
    /// (an autoscaling group starting); each publish costs as much as the cluster has
    /// endpoints, so the lease task publishes once for everything that arrived meanwhile,
    /// never once per registration.
    fn publish_registrations(&self) {
        let (version, registered, leaving) = {
            let state = self.lock();
            if *self.published.borrow() == state.registry_version {
                return;
            }
            (
                state.registry_version,
                state.leases.endpoints(),
                state.leases.leaving().clone(),
            )
        };
        self.controller.update_overlay(|o| {
            o.registered = registered;
            o.leaving = leaving;
        });
        self.published.send_replace(version);
        self.publishes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Returns once the overlay holds every registration change made before the call.
    pub async fn registrations_published(&self) {
        let version = self.lock().registry_version;
        let mut published = self.published.subscribe();
        // After shutdown the lease task publishes nothing more: waiting would never end.
        tokio::select! {
            // The sender lives as long as `self`.
            _ = published.wait_for(|v| *v >= version) => {}
            () = self.shutdown.cancelled() => {}
        }
    }

    /// The endpoint `address` of `cluster`, which must exist (in the config or registered).
    fn endpoint(
        &self,
        state: &State,
        cluster: &str,
        address: &str,
    ) -> Result<EndpointKey, RuntimeError> {
        let address = parse_address(address)?;
        let config = self.controller.config().ok_or(RuntimeError::NoConfig)?;
        let c = config
            .clusters
            .get(cluster)
            .ok_or_else(|| RuntimeError::UnknownCluster(cluster.to_string()))?;
        let key = EndpointKey::new(cluster, address);
        if !c.endpoints.iter().any(|e| e.address == address) && !state.leases.contains(&key) {
            return Err(RuntimeError::UnknownEndpoint {
                cluster: cluster.to_string(),
                address,
            });
        }
        Ok(key)
    }

    /// Changes the persistent part: stored first, applied only if stored (acknowledged once
    /// the store holds it; the other replicas apply it from their watch).
    async fn change_persistent(
        &self,
        cluster: &str,
        address: &str,
        change: impl Fn(&EndpointKey, &mut Persistent) -> bool,
    ) -> Result<bool, RuntimeError> {
        self.check_store().await?;
        let _one_at_a_time = self.writes.lock().await;
        let (key, prev, next) = {
            let state = self.lock();
            let key = self.endpoint(&state, cluster, address)?;
            let mut next = state.persistent.clone();
            if !change(&key, &mut next) {
                return Ok(false);
            }
            (key, state.persistent.clone(), next)
        };
        self.store.save(&prev, &next).await?;
        // Applied to the state as it is now: the watch may have brought other changes.
        let mut state = self.lock();
        change(&key, &mut state.persistent);
        self.apply(&state);
        Ok(true)
    }

    /// Drains an endpoint: Envoy sends it no new requests (EDS health DRAINING).
    pub async fn drain(
        &self,
        cluster: &str,
        address: &str,
        on: bool,
    ) -> Result<bool, RuntimeError> {
        let changed = self
            .change_persistent(cluster, address, |key, p| {
                if on {
                    p.drains.insert(key.clone())
                } else {
                    p.drains.remove(key)
                }
            })
            .await?;
        let key = EndpointKey::new(cluster, parse_address(address)?);
        if changed {
            let verb = if on { "drained" } else { "undrained" };
            info!(cluster, endpoint = %key.address, "endpoint {verb}");
            events::record(
                NewEvent::new(Kind::Drain, format!("{} {verb} in {cluster}", key.address))
                    .cluster(cluster)
                    .endpoint(key.address),
            );
        }
        Ok(changed)
    }

    /// Overrides an endpoint's weight (`None` drops the override).
    pub async fn set_weight(
        &self,
        cluster: &str,
        address: &str,
        weight: Option<u32>,
    ) -> Result<bool, RuntimeError> {
        if let Some(w) = weight
            && !(1..=crate::config::MAX_WEIGHT).contains(&w)
        {
            return Err(RuntimeError::BadRequest(format!(
                "weight {w} is out of range (1..={})",
                crate::config::MAX_WEIGHT
            )));
        }
        let changed = self
            .change_persistent(cluster, address, |key, p| match weight {
                Some(w) => p.weights.insert(key.clone(), w) != Some(w),
                None => p.weights.remove(key).is_some(),
            })
            .await?;
        let key = EndpointKey::new(cluster, parse_address(address)?);
        if changed {
            let message = match weight {
                Some(w) => format!("{} weight set to {w} in {cluster}", key.address),
                None => format!("{} weight override dropped in {cluster}", key.address),
            };
            info!(cluster, endpoint = %key.address, ?weight, "weight override changed");
            events::record(
                NewEvent::new(Kind::Weight, message)
                    .cluster(cluster)
                    .endpoint(key.address),
            );
        }
        Ok(changed)
    }

    pub fn leases(&self) -> Vec<LeaseView> {
        let now = Instant::now();
        self.lock()
            .leases
            .iter()
            .map(|(k, l)| view(k, l, now))
            .collect()
    }

    /// Publishes the registry whenever it changed, until shutdown.
    async fn publish_loop(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            self.publish_registrations();
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.leases_changed.notified() => {}
            }
        }
    }
}

fn parse_address(address: &str) -> Result<SocketAddr, RuntimeError> {
    crate::config::parse_socket_address(address).map_err(RuntimeError::BadRequest)
}

fn view(key: &EndpointKey, lease: &Lease, now: Instant) -> LeaseView {
    LeaseView {
        cluster: key.cluster.clone(),
        address: key.address.to_string(),
        weight: lease.weight,
        ttl_ms: lease.ttl.as_millis() as u64,
        expires_in_ms: lease.expires.saturating_duration_since(now).as_millis() as u64,
        registered_at: lease.registered,
        renewals: lease.renewals,
        stream: lease.session.as_ref().map(|s| s.session),
        replica: lease.session.as_ref().map(|s| s.replica.clone()),
        zone: lease.zone.clone(),
        metadata: lease.metadata.clone(),
        leaving: lease.leaving,
    }
}

#[cfg(test)]
mod replica_tests;
#[cfg(test)]
mod tests;
