//! The runtime of a replica: drains, overrides and leased registrations kept equal to what
//! etcd holds, whichever replica changed them.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::shared::{SharedLease, SharedState};
use super::store::Persistent;
use super::{LeaseView, Runtime, RuntimeError, Store};
use crate::etcd::EtcdError;
use crate::events::{self, Kind, NewEvent};
use crate::overlay::EndpointKey;

/// How long a replica waits before trying etcd again.
const RETRY: Duration = Duration::from_millis(500);

impl Runtime {
    /// Registers an endpoint (or renews it) through the store: with etcd, acknowledged once
    /// etcd holds it, so that a heartbeat through any replica renews the same lease.
    pub async fn lease(
        &self,
        cluster: &str,
        address: &str,
        weight: u32,
        ttl: Duration,
    ) -> Result<LeaseView, RuntimeError> {
        if let Store::Shared(shared) = &self.store {
            self.check_store()?;
            let (key, state) = self.check_registration(cluster, address, weight, ttl)?;
            drop(state);
            let lease = SharedLease {
                weight,
                ttl_ms: ttl.as_millis() as u64,
            };
            shared
                .register(&key, lease)
                .await
                .map_err(RuntimeError::StoreUnavailable)?;
        }
        self.register(cluster, address, weight, ttl)
    }

    /// Ends a leased registration everywhere; `false` if there was none.
    pub async fn end_lease(&self, cluster: &str, address: &str) -> Result<bool, RuntimeError> {
        if let Store::Shared(shared) = &self.store {
            self.check_store()?;
            let key = EndpointKey::new(cluster, super::parse_address(address)?);
            if self
                .lock()
                .leases
                .get(&key)
                .is_some_and(|l| l.session.is_some())
            {
                return self.deregister(cluster, address);
            }
            shared
                .deregister(&key)
                .await
                .map_err(RuntimeError::StoreUnavailable)?;
        }
        self.deregister(cluster, address)
    }

    pub(super) fn check_store(&self) -> Result<(), RuntimeError> {
        if *self.store_up.borrow() {
            Ok(())
        } else {
            Err(RuntimeError::StoreUnavailable(EtcdError::Unavailable(
                "not connected".into(),
            )))
        }
    }

    /// Replaces the drains and overrides with what the shared store holds, publishing only
    /// if something differs (a replica that reconnects to etcd pushes nothing unchanged).
    fn absorb(&self, change: impl FnOnce(&mut Persistent)) {
        let mut state = self.lock();
        let mut next = state.persistent.clone();
        change(&mut next);
        if next != state.persistent {
            state.persistent = next;
            self.apply(&state);
        }
    }

    /// Applies a registration seen in etcd: new, changed weight, or gone. A renewal changes
    /// nothing (etcd renews leases without an event).
    fn absorb_registration(&self, key: EndpointKey, lease: Option<SharedLease>) {
        let mut state = self.lock();
        let held = state
            .leases
            .get(&key)
            .map(|l| (l.session.is_some(), l.weight));
        let message = match (lease, held) {
            // A stream registration is this replica's own.
            (_, Some((true, _))) => return,
            (Some(l), Some((false, weight))) if weight == l.weight => return,
            (Some(l), held) => {
                state
                    .leases
                    .register(&key, l.weight, l.ttl(), Instant::now());
                if held.is_some() {
                    None
                } else {
                    Some(format!("{} registered in {}", key.address, key.cluster))
                }
            }
            (None, Some(_)) => {
                state.leases.remove(&key);
                Some(format!("{} left {}: lease ended", key.address, key.cluster))
            }
            (None, None) => return,
        };
        state.registry_version += 1;
        self.leases_changed.notify_one();
        if let Some(message) = message {
            info!(cluster = %key.cluster, endpoint = %key.address, "{message}");
            events::record(
                NewEvent::new(Kind::Registration, message)
                    .cluster(key.cluster.clone())
                    .endpoint(key.address),
            );
        }
    }

    /// Makes the leased registrations exactly `loaded` (after a reload from etcd).
    fn absorb_registrations(&self, loaded: BTreeMap<EndpointKey, SharedLease>) {
        let gone: Vec<EndpointKey> = self
            .lock()
            .leases
            .iter()
            .filter(|(k, l)| l.session.is_none() && !loaded.contains_key(*k))
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            self.absorb_registration(key, None);
        }
        for (key, lease) in loaded {
            self.absorb_registration(key, Some(lease));
        }
    }

    /// Keeps the runtime equal to etcd: loads it, then watches every change from the
    /// revision loaded; reloads whenever the watch breaks.
    pub(super) async fn follow_shared(
        self: std::sync::Arc<Self>,
        store: SharedState,
        shutdown: CancellationToken,
    ) {
        loop {
            let broke = tokio::select! {
                () = shutdown.cancelled() => return,
                e = self.follow_once(&store) => e,
            };
            if *self.store_up.borrow() {
                warn!(error = %broke, "lost etcd; serving the last state seen until it is back");
            }
            self.store_up.send_replace(false);
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(RETRY) => {}
            }
        }
    }

    /// Loads, then follows until the watch breaks.
    async fn follow_once(&self, store: &SharedState) -> EtcdError {
        let (loaded, registrations, revision) = match store.load().await {
            Ok(l) => l,
            Err(e) => return e,
        };
        let mut watch = match store.watch(revision + 1).await {
            Ok(w) => w,
            Err(e) => return e,
        };
        self.absorb(|p| *p = loaded);
        self.absorb_registrations(registrations);
        if !self.store_up.send_replace(true) {
            info!(prefix = store.prefix(), revision, "following etcd");
        }
        loop {
            let response = match watch.next().await {
                Ok(r) => r,
                Err(e) => return e,
            };
            if response.canceled || response.compact_revision > 0 {
                return EtcdError::Unavailable(format!(
                    "watch ended (compacted to revision {}): {}",
                    response.compact_revision, response.cancel_reason
                ));
            }
            if response.events.is_empty() {
                continue;
            }
            let mut registrations = Vec::new();
            self.absorb(|p| registrations = store.apply(p, &response.events));
            for (key, lease) in registrations {
                self.absorb_registration(key, lease);
            }
        }
    }
}
