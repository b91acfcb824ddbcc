//! The runtime of a replica: drains, overrides and leased registrations kept equal to what
//! etcd holds, whichever replica changed them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::shared::{Loaded, Seen, SharedLease, SharedState};
use super::store::Persistent;
use super::{LeaseView, Runtime, RuntimeError, Store};
use crate::etcd::EtcdError;
use crate::events::{self, Kind, NewEvent};
use crate::health::ownership::{FactUpdate, HealthFact, Owners, SharedHealth};
use crate::overlay::EndpointKey;

/// How long a replica waits before trying etcd again.
const RETRY: Duration = Duration::from_millis(500);

/// The lease a replica announces itself with: when a replica dies, the others take over its
/// endpoints' probes within this long.
pub const REPLICA_TTL: Duration = Duration::from_secs(3);

/// Most health facts written in one etcd transaction (etcd allows 128 operations).
const FACTS_PER_TXN: usize = 100;

/// The runtime's side of sharing health checks between replicas.
pub struct ReplicaLink {
    pub me: String,
    owners: watch::Sender<Option<Arc<Owners>>>,
    remote: mpsc::UnboundedSender<FactUpdate>,
    publish: mpsc::UnboundedReceiver<FactUpdate>,
}

/// The two ends that connect the runtime of replica `me` to its health checker.
pub fn link(me: String) -> (ReplicaLink, SharedHealth) {
    let (owners, owners_rx) = watch::channel(None);
    let (remote, remote_rx) = mpsc::unbounded_channel();
    let (publish_tx, publish) = mpsc::unbounded_channel();
    (
        ReplicaLink {
            me,
            owners,
            remote,
            publish,
        },
        SharedHealth {
            owners: owners_rx,
            remote: remote_rx,
            publish: publish_tx,
        },
    )
}

/// A replica's name: 1..=64 bytes of `A-Z a-z 0-9 . _ -` (it is part of an etcd key).
pub fn check_replica_id(id: &str) -> Result<&str, String> {
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(id)
    } else {
        Err(format!(
            "`{id}`: a replica id is 1 to 64 of A-Z a-z 0-9 . _ -"
        ))
    }
}

/// The host name and process id: unique among running replicas.
pub fn default_replica_id() -> String {
    let host: String = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(50)
        .collect();
    let host = if host.is_empty() {
        "flotilla".to_string()
    } else {
        host
    };
    format!("{host}-{}", std::process::id())
}

/// Keeps replica `me` announced in etcd under its own lease, until shutdown.
async fn announce(store: SharedState, me: String, current: Arc<AtomicI64>) {
    loop {
        if let Ok(lease) = store.announce(&me, REPLICA_TTL).await {
            current.store(lease, Ordering::Release);
            info!(replica = %me, "announced in etcd");
            loop {
                tokio::time::sleep(REPLICA_TTL / 3).await;
                if !matches!(store.client().keep_alive(lease).await, Ok(true)) {
                    break;
                }
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Writes this replica's health findings to etcd, the newest per endpoint, retrying while
/// etcd is out of reach.
async fn publish_health(store: SharedState, mut facts: mpsc::UnboundedReceiver<FactUpdate>) {
    let mut pending: BTreeMap<EndpointKey, Option<HealthFact>> = BTreeMap::new();
    loop {
        if pending.is_empty() {
            match facts.recv().await {
                Some((k, f)) => pending.insert(k, f),
                None => return,
            };
        }
        while let Ok((k, f)) = facts.try_recv() {
            pending.insert(k, f);
        }
        let chunk: BTreeMap<EndpointKey, Option<HealthFact>> = pending
            .iter()
            .take(FACTS_PER_TXN)
            .map(|(k, f)| (k.clone(), *f))
            .collect();
        match store.publish_health(&chunk).await {
            Ok(()) => {
                for k in chunk.keys() {
                    pending.remove(k);
                }
            }
            Err(_) => tokio::time::sleep(RETRY).await,
        }
    }
}

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

    /// Ends this replica's announcement (a clean shutdown): the others take over its probes
    /// at once instead of when its lease runs out.
    pub async fn leave(&self) {
        let lease = self.replica_lease.swap(0, Ordering::AcqRel);
        if let (Store::Shared(shared), true) = (&self.store, lease != 0) {
            match shared.client().revoke(lease).await {
                Ok(()) => info!("left the replicas"),
                Err(e) => {
                    warn!(error = %e, "could not end this replica's lease; it runs out by itself")
                }
            }
        }
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
    /// revision loaded; reloads whenever the watch breaks. Also announces this replica and
    /// publishes its health findings.
    pub(super) async fn follow_shared(
        self: Arc<Self>,
        store: SharedState,
        link: ReplicaLink,
        shutdown: CancellationToken,
    ) {
        let ReplicaLink {
            me,
            owners,
            remote,
            publish,
        } = link;
        let tasks = [
            tokio::spawn(announce(
                store.clone(),
                me.clone(),
                self.replica_lease.clone(),
            )),
            tokio::spawn(publish_health(store.clone(), publish)),
        ];
        let _stop = tasks.map(|t| t.abort_handle()).map(AbortOnDrop);
        // What the last failed attempt said, so that an etcd that cannot be reached from the
        // start (refused TLS handshake, wrong address) is reported once per distinct reason.
        let mut last_failure = String::new();
        loop {
            let broke = tokio::select! {
                () = shutdown.cancelled() => return,
                e = self.follow_once(&store, &me, &owners, &remote) => e,
            };
            // Out of touch: every replica probes everything until etcd answers again.
            owners.send_replace(None);
            let reason = broke.to_string();
            if *self.store_up.borrow() {
                warn!(error = %broke, "lost etcd; serving the last state seen until it is back");
            } else if reason != last_failure {
                warn!(error = %broke, "cannot reach etcd; serving without shared state, changes refused, retrying");
            }
            last_failure = reason;
            self.store_up.send_replace(false);
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(RETRY) => {}
            }
        }
    }

    /// Loads, then follows until the watch breaks.
    async fn follow_once(
        &self,
        store: &SharedState,
        me: &str,
        owners: &watch::Sender<Option<Arc<Owners>>>,
        remote: &mpsc::UnboundedSender<FactUpdate>,
    ) -> EtcdError {
        let Loaded {
            persistent,
            seen,
            revision,
        } = match store.load().await {
            Ok(l) => l,
            Err(e) => return e,
        };
        let mut watch = match store.watch(revision + 1).await {
            Ok(w) => w,
            Err(e) => return e,
        };
        self.absorb(|p| *p = persistent);
        let mut live = BTreeSet::from([me.to_string()]);
        let mut registrations = BTreeMap::new();
        for s in seen {
            match s {
                Seen::Registration(key, Some(lease)) => {
                    registrations.insert(key, lease);
                }
                Seen::Registration(_, None) => {}
                Seen::Replica(id, _) => {
                    live.insert(id);
                }
                Seen::Health(key, fact) => {
                    let _ = remote.send((key, fact));
                }
            }
        }
        self.absorb_registrations(registrations);
        set_owners(owners, me, &live);
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
            let mut seen = Vec::new();
            self.absorb(|p| seen = store.apply(p, &response.events));
            for s in seen {
                match s {
                    Seen::Registration(key, lease) => self.absorb_registration(key, lease),
                    Seen::Replica(id, true) => {
                        live.insert(id);
                        set_owners(owners, me, &live);
                    }
                    Seen::Replica(id, false) => {
                        if id != me {
                            live.remove(&id);
                            set_owners(owners, me, &live);
                        }
                    }
                    Seen::Health(key, fact) => {
                        let _ = remote.send((key, fact));
                    }
                }
            }
        }
    }
}

/// Publishes who probes what, if the live replicas changed.
fn set_owners(owners: &watch::Sender<Option<Arc<Owners>>>, me: &str, live: &BTreeSet<String>) {
    let next = Owners {
        me: me.to_string(),
        live: live.iter().cloned().collect(),
    };
    owners.send_if_modified(|current| {
        if current.as_deref() == Some(&next) {
            return false;
        }
        info!(replicas = ?next.live, "replicas sharing the health checks");
        *current = Some(Arc::new(next));
        true
    });
}

/// Aborts a task when dropped: the replica's background tasks end with its follow loop.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
