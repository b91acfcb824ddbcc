//! Runtime operations that do not go through git: draining an endpoint, overriding its weight,
//! and endpoints registering themselves (autoscaled instances), either with a lease renewed
//! over HTTP or bound to a registration stream (`session`).
//!
//! Drains and overrides are operator decisions and survive restarts (`store`); registrations
//! are not stored by design: an instance that stops heartbeating leaves within its TTL, one
//! whose stream breaks leaves at once. All of them reach Envoy through the controller's
//! overlay, like health verdicts.

pub mod admission;
mod leases;
pub mod replicated;
pub mod session;
pub mod shared;
pub mod store;

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
use leases::{Lease, Leases, Registered};
use shared::SharedState;
use store::{Persistent, StateFile, StoreError};

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
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The shared store (etcd) did not take the change: nothing changed anywhere.
    #[error(
        "{0}; nothing was changed (every replica keeps serving the last state it saw); retry once etcd is back"
    )]
    StoreUnavailable(crate::etcd::EtcdError),
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
    /// Bumped by every change to the registered endpoints (not by a plain renewal).
    registry_version: u64,
}

/// Where drains and overrides are kept: a local file (one flotilla) or etcd (replicas).
enum Store {
    File(StateFile),
    Shared(Box<SharedState>),
}

pub struct Runtime {
    controller: Arc<Controller>,
    store: Store,
    /// One drain or override change at a time, from reading the state to storing it.
    writes: tokio::sync::Mutex<()>,
    /// Whether the shared store answers (always true for the file).
    store_up: watch::Sender<bool>,
    /// The etcd lease this replica announces itself with (0: none).
    replica_lease: Arc<std::sync::atomic::AtomicI64>,
    state: Mutex<State>,
    /// Wakes the lease task: a lease was added or renewed, or the registry changed.
    leases_changed: Notify,
    /// The registry version the overlay holds.
    published: watch::Sender<u64>,
    /// Ends the lease task; nothing is published after it.
    shutdown: CancellationToken,
}

impl Runtime {
    /// Loads stored drains and overrides, applies them, and starts expiring leases.
    pub fn start(
        controller: Arc<Controller>,
        store: StateFile,
        shutdown: CancellationToken,
    ) -> Result<Arc<Runtime>, StoreError> {
        let persistent = store.load()?;
        if !persistent.drains.is_empty() || !persistent.weights.is_empty() {
            info!(path = %store.path().display(), drains = persistent.drains.len(),
                weights = persistent.weights.len(), "restored runtime state");
        }
        let runtime = Runtime::new(controller, Store::File(store), persistent, shutdown.clone());
        runtime.apply(&runtime.lock());
        tokio::spawn(runtime.clone().maintain_leases(shutdown));
        Ok(runtime)
    }

    /// Like [`Runtime::start`] with drains and overrides shared through etcd: loaded from it
    /// and followed as any replica changes them. An etcd that is down delays the load, not
    /// the start: the replica serves its config meanwhile and catches up when etcd answers.
    pub fn start_shared(
        controller: Arc<Controller>,
        store: SharedState,
        link: replicated::ReplicaLink,
        shutdown: CancellationToken,
    ) -> Arc<Runtime> {
        let runtime = Runtime::new(
            controller,
            Store::Shared(Box::new(store.clone())),
            Persistent::default(),
            shutdown.clone(),
        );
        runtime.store_up.send_replace(false);
        tokio::spawn(runtime.clone().follow_shared(store, link, shutdown.clone()));
        tokio::spawn(runtime.clone().maintain_leases(shutdown));
        runtime
    }

    fn new(
        controller: Arc<Controller>,
        store: Store,
        persistent: Persistent,
        shutdown: CancellationToken,
    ) -> Arc<Runtime> {
        Arc::new(Runtime {
            controller,
            store,
            writes: tokio::sync::Mutex::new(()),
            store_up: watch::Sender::new(true),
            replica_lease: Arc::default(),
            state: Mutex::new(State {
                persistent,
                ..State::default()
            }),
            leases_changed: Notify::new(),
            published: watch::Sender::new(0),
            shutdown,
        })
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

    /// Changes the persistent part: stored first, applied only if stored. With etcd, the
    /// change is acknowledged once etcd holds it; the other replicas apply it from their
    /// watch.
    async fn change_persistent(
        &self,
        cluster: &str,
        address: &str,
        change: impl Fn(&EndpointKey, &mut Persistent) -> bool,
    ) -> Result<bool, RuntimeError> {
        self.check_store()?;
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
        match &self.store {
            Store::File(file) => file.save(&next)?,
            Store::Shared(shared) => shared
                .save(&prev, &next)
                .await
                .map_err(RuntimeError::StoreUnavailable)?,
        }
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

    /// Checks that `address` may register into `cluster` (or renew); returns its key and the
    /// state, still locked.
    fn check_registration(
        &self,
        cluster: &str,
        address: &str,
        weight: u32,
        ttl: Duration,
    ) -> Result<(EndpointKey, MutexGuard<'_, State>), RuntimeError> {
        let address = parse_address(address)?;
        if !(1..=crate::config::MAX_WEIGHT).contains(&weight) {
            return Err(RuntimeError::BadRequest(format!(
                "weight {weight} is out of range (1..={})",
                crate::config::MAX_WEIGHT
            )));
        }
        if !(MIN_TTL..=MAX_TTL).contains(&ttl) {
            return Err(RuntimeError::BadRequest(format!(
                "ttl {} is out of range ({}..={})",
                crate::config::duration::format(ttl),
                crate::config::duration::format(MIN_TTL),
                crate::config::duration::format(MAX_TTL)
            )));
        }
        let config = self.controller.config().ok_or(RuntimeError::NoConfig)?;
        let c = config
            .clusters
            .get(cluster)
            .ok_or_else(|| RuntimeError::UnknownCluster(cluster.to_string()))?;
        let rules = admission::open(cluster, c, admission::Registrant::Operator)?;
        if c.endpoints.iter().any(|e| e.address == address) {
            return Err(RuntimeError::Configured {
                cluster: cluster.to_string(),
                address,
            });
        }
        admission::check(address.ip(), rules).map_err(RuntimeError::BadRequest)?;
        let key = EndpointKey::new(cluster, address);
        let state = self.lock();
        if state.leases.get(&key).is_some_and(|l| l.session.is_some()) {
            return Err(RuntimeError::Taken {
                cluster: cluster.to_string(),
                address,
            });
        }
        let max = rules.max;
        if !state.leases.contains(&key) && state.leases.count(cluster) >= max {
            return Err(RuntimeError::Full {
                cluster: cluster.to_string(),
                max,
            });
        }
        Ok((key, state))
    }

    /// Registers an endpoint into a cluster, or renews its lease.
    pub fn register(
        &self,
        cluster: &str,
        address: &str,
        weight: u32,
        ttl: Duration,
    ) -> Result<LeaseView, RuntimeError> {
        let (key, mut state) = self.check_registration(cluster, address, weight, ttl)?;
        let address = key.address;
        let now = Instant::now();
        let registered = state.leases.register(&key, weight, ttl, now);
        if registered != (Registered::Renewed { changed: false }) {
            state.registry_version += 1;
        }
        if registered == Registered::New {
            info!(cluster, endpoint = %address, ttl = ?ttl, "endpoint registered");
            events::record(
                NewEvent::new(
                    Kind::Registration,
                    format!("{address} registered in {cluster}"),
                )
                .cluster(cluster)
                .endpoint(address),
            );
        }
        self.leases_changed.notify_one();
        let lease = state.leases.get(&key).expect("just registered");
        Ok(view(&key, lease, now))
    }

    /// Ends a lease now (an instance leaving cleanly).
    pub fn deregister(&self, cluster: &str, address: &str) -> Result<bool, RuntimeError> {
        let address = parse_address(address)?;
        let key = EndpointKey::new(cluster, address);
        let mut state = self.lock();
        match state.leases.get(&key) {
            None => return Ok(false),
            Some(lease) if lease.session.is_some() => {
                return Err(RuntimeError::Taken {
                    cluster: cluster.to_string(),
                    address,
                });
            }
            Some(_) => {
                state.leases.remove(&key);
            }
        }
        state.registry_version += 1;
        self.leases_changed.notify_one();
        events::record(
            NewEvent::new(
                Kind::Registration,
                format!("{address} deregistered from {cluster}"),
            )
            .cluster(cluster)
            .endpoint(address),
        );
        Ok(true)
    }

    pub fn leases(&self) -> Vec<LeaseView> {
        let now = Instant::now();
        self.lock()
            .leases
            .iter()
            .map(|(k, l)| view(k, l, now))
            .collect()
    }

    /// Ends leases as they run out, and publishes the registry whenever it changed.
    async fn maintain_leases(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            self.publish_registrations();
            // With etcd, leases run out in etcd, whose watch removes them everywhere.
            let next = match self.store {
                Store::File(_) => self.lock().leases.next_expiry(),
                Store::Shared(_) => None,
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.leases_changed.notified() => continue,
                () = sleep_until(next) => {}
            }
            let mut state = self.lock();
            let expired = state.leases.expire(Instant::now());
            if expired.is_empty() {
                continue;
            }
            state.registry_version += 1;
            for key in &expired {
                info!(cluster = %key.cluster, endpoint = %key.address, "registration expired");
                events::record(
                    NewEvent::new(
                        Kind::Registration,
                        format!("{} left {}: lease expired", key.address, key.cluster),
                    )
                    .cluster(key.cluster.clone())
                    .endpoint(key.address),
                );
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
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
        stream: lease.session,
        zone: lease.zone.clone(),
        metadata: lease.metadata.clone(),
        leaving: lease.leaving,
    }
}

#[cfg(test)]
mod tests;
