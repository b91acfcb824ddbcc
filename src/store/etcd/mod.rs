//! The store of replicas: etcd. Drains and overrides are one key each, a change one
//! transaction of the keys that differ; registrations are keys bound to etcd leases (a
//! heartbeat's TTL lease, renewed through any replica, or a stream's lease, kept alive by the
//! replica holding the stream and revoked when it ends); members are keys under each
//! replica's lease. Every replica, the writer included, learns every change from its watch on
//! the prefix. Keys are laid out and checked in [`keys`].

pub mod keys;
mod list;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::AbortHandle;
use tracing::{info, warn};

use super::{
    Ack, Change, Changes, Hold, LeaseKind, Listing, Persistent, REPLICA_TTL, Registration,
    STREAM_LEASE_TTL, Store, StoreError,
};
use crate::etcd::proto::mvccpb::event::EventType;
use crate::etcd::{Client, EtcdError, Op, StoreUrl, Watch};
use crate::health::ownership::HealthFact;
use crate::overlay::EndpointKey;
use keys::{DRAINS, HEALTH, REGISTRATIONS, WEIGHTS, endpoint_key};

/// How long a replica waits before trying etcd again.
const RETRY: Duration = Duration::from_millis(500);

/// Most writes in one etcd transaction (etcd allows 128 operations).
const OPS_PER_TXN: usize = 100;

/// A member this process announced: its lease (0 while not announced) and the task keeping it.
type Member = (Arc<AtomicI64>, AbortHandle);

#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    prefix: String,
    /// The lease each member this process announced holds (0 while not announced), and the
    /// task keeping it alive.
    members: Arc<Mutex<HashMap<String, Member>>>,
}

impl EtcdStore {
    pub fn new(url: &StoreUrl) -> Result<EtcdStore, EtcdError> {
        Ok(EtcdStore {
            client: Client::new(url)?,
            prefix: url.prefix.clone(),
            members: Arc::default(),
        })
    }

    /// Times every write to etcd and counts skipped keys into `metrics`.
    pub fn with_metrics(mut self, metrics: crate::etcd::StoreMetrics) -> EtcdStore {
        self.client = self.client.with_metrics(metrics);
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn txn(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let mut ops = ops.into_iter().peekable();
        while ops.peek().is_some() {
            let chunk: Vec<Op> = ops.by_ref().take(OPS_PER_TXN).collect();
            self.client.txn(chunk).await?;
        }
        Ok(())
    }

    fn member_lease(&self, me: &str) -> i64 {
        let members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        members
            .get(me)
            .map_or(0, |(lease, _)| lease.load(Ordering::Acquire))
    }
}

/// Keeps replica `me` announced under its own lease, re-announcing when the lease is lost.
async fn announce(store: EtcdStore, me: String, current: Arc<AtomicI64>) {
    loop {
        let granted = async {
            let lease = store.client.grant(REPLICA_TTL).await?;
            store
                .client
                .txn(vec![Op::Put {
                    key: keys::replica_key(&store.prefix, &me),
                    value: Vec::new(),
                    lease,
                }])
                .await?;
            Ok::<i64, EtcdError>(lease)
        };
        if let Ok(lease) = granted.await {
            current.store(lease, Ordering::Release);
            info!(replica = %me, "announced in etcd");
            loop {
                tokio::time::sleep(REPLICA_TTL / 3).await;
                if !matches!(store.client.keep_alive(lease).await, Ok(true)) {
                    break;
                }
            }
            current.store(0, Ordering::Release);
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// A stream's etcd lease, renewed every third of its TTL until dropped, then revoked.
struct EtcdHold {
    client: Client,
    lease: i64,
    renew: AbortHandle,
}

impl Hold for EtcdHold {
    fn lease(&self) -> i64 {
        self.lease
    }
}

impl Drop for EtcdHold {
    fn drop(&mut self) {
        self.renew.abort();
        let (client, lease) = (self.client.clone(), self.lease);
        // Revoked now: every replica's watch drops its registrations at once. If etcd does
        // not answer, the lease runs out by itself within STREAM_LEASE_TTL.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(e) = client.revoke(lease).await {
                    warn!(error = %e, "could not end a registration stream's lease; it runs out by itself");
                }
            });
        }
    }
}

/// The changes after a listing, decoded and checked as the listing was.
struct EtcdChanges {
    watch: Watch,
    prefix: String,
    client: Client,
}

#[tonic::async_trait]
impl Changes for EtcdChanges {
    async fn next(&mut self) -> Result<Vec<Change>, StoreError> {
        loop {
            let response = self.watch.next().await?;
            if response.canceled || response.compact_revision > 0 {
                return Err(StoreError::Unavailable(format!(
                    "watch ended (compacted to revision {}): {}",
                    response.compact_revision, response.cancel_reason
                )));
            }
            let changes: Vec<Change> = response
                .events
                .iter()
                .filter_map(|e| {
                    let kv = e.kv.as_ref()?;
                    let deleted = e.r#type == EventType::Delete as i32;
                    list::checked(&self.client, &self.prefix, kv, deleted)
                })
                .collect();
            if !changes.is_empty() {
                return Ok(changes);
            }
        }
    }
}

#[tonic::async_trait]
impl Store for EtcdStore {
    fn name(&self) -> &'static str {
        "etcd"
    }

    fn describe(&self) -> String {
        format!("etcd prefix {}", self.prefix)
    }

    async fn list(&self) -> Result<(Listing, Box<dyn Changes>), StoreError> {
        let (listing, revision) = list::load(&self.client, &self.prefix).await?;
        let watch = self.client.watch_prefix(&self.prefix, revision + 1).await?;
        Ok((
            listing,
            Box::new(EtcdChanges {
                watch,
                prefix: self.prefix.clone(),
                client: self.client.clone(),
            }),
        ))
    }

    async fn save(&self, prev: &Persistent, next: &Persistent) -> Result<(), StoreError> {
        let ops: Vec<Op> = Listing::persistent_changes(prev, next)
            .into_iter()
            .filter_map(|c| match c {
                Change::Drain(k, true) => Some(Op::Put {
                    key: endpoint_key(&self.prefix, DRAINS, &k),
                    value: Vec::new(),
                    lease: 0,
                }),
                Change::Drain(k, false) => Some(Op::Delete {
                    key: endpoint_key(&self.prefix, DRAINS, &k),
                }),
                Change::Weight(k, Some(w)) => Some(Op::Put {
                    key: endpoint_key(&self.prefix, WEIGHTS, &k),
                    value: w.to_string().into_bytes(),
                    lease: 0,
                }),
                Change::Weight(k, None) => Some(Op::Delete {
                    key: endpoint_key(&self.prefix, WEIGHTS, &k),
                }),
                _ => None,
            })
            .collect();
        if ops.is_empty() {
            return Ok(());
        }
        // One transaction: a change is all or nothing.
        self.client.txn(ops).await?;
        Ok(())
    }

    async fn put_registration(
        &self,
        key: &EndpointKey,
        registration: &Registration,
        lease: LeaseKind,
    ) -> Result<(), StoreError> {
        let k = endpoint_key(&self.prefix, REGISTRATIONS, key);
        let value = serde_json::to_vec(registration)
            .map_err(|e| StoreError::Unavailable(format!("encode a registration: {e}")))?;
        let lease = match lease {
            LeaseKind::Held(lease) => lease,
            LeaseKind::Ttl(ttl) => {
                // A heartbeat through any replica renews the lease the key holds; a new one
                // is granted if it ran out (or the key is new).
                let (kvs, _) = self.client.get_key(&k).await?;
                match kvs.first() {
                    Some(kv) if kv.lease != 0 && self.client.keep_alive(kv.lease).await? => {
                        if kv.value == value {
                            return Ok(());
                        }
                        kv.lease
                    }
                    _ => self.client.grant(ttl).await?,
                }
            }
        };
        self.client
            .txn(vec![Op::Put {
                key: k,
                value,
                lease,
            }])
            .await?;
        Ok(())
    }

    async fn end_registration(&self, key: &EndpointKey) -> Result<(), StoreError> {
        let k = endpoint_key(&self.prefix, REGISTRATIONS, key);
        let (kvs, _) = self.client.get_key(&k).await?;
        match kvs.first() {
            Some(kv) if kv.lease != 0 && kv.value_is_ttl_lease() => {
                self.client.revoke(kv.lease).await?
            }
            Some(_) => {
                self.client.txn(vec![Op::Delete { key: k }]).await?;
            }
            None => {}
        }
        Ok(())
    }

    async fn hold(&self) -> Result<Box<dyn Hold>, StoreError> {
        let lease = self.client.grant(STREAM_LEASE_TTL).await?;
        let client = self.client.clone();
        let renew = tokio::spawn(async move {
            loop {
                tokio::time::sleep(STREAM_LEASE_TTL / 3).await;
                match client.keep_alive(lease).await {
                    Ok(true) => {}
                    Ok(false) => {
                        warn!(lease, "a registration stream's lease ran out in etcd");
                        return;
                    }
                    Err(e) => warn!(error = %e, "could not renew a registration stream's lease"),
                }
            }
        })
        .abort_handle();
        Ok(Box::new(EtcdHold {
            client: self.client.clone(),
            lease,
            renew,
        }))
    }

    fn join(&self, me: &str) {
        let current = Arc::new(AtomicI64::new(0));
        let task = tokio::spawn(announce(self.clone(), me.to_string(), current.clone()));
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, old)) = members.insert(me.to_string(), (current, task.abort_handle())) {
            old.abort();
        }
    }

    async fn leave(&self, me: &str) {
        let member = self
            .members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(me);
        let Some((lease, task)) = member else { return };
        task.abort();
        let lease = lease.load(Ordering::Acquire);
        if lease == 0 {
            return;
        }
        match self.client.revoke(lease).await {
            Ok(()) => info!("left the replicas"),
            Err(e) => {
                warn!(error = %e, "could not end this replica's lease; it runs out by itself")
            }
        }
    }

    async fn publish_health(
        &self,
        facts: &BTreeMap<EndpointKey, Option<HealthFact>>,
    ) -> Result<(), StoreError> {
        let ops = facts
            .iter()
            .map(|(k, f)| match f {
                Some(f) => Op::Put {
                    key: endpoint_key(&self.prefix, HEALTH, k),
                    value: f.encode(),
                    lease: 0,
                },
                None => Op::Delete {
                    key: endpoint_key(&self.prefix, HEALTH, k),
                },
            })
            .collect();
        self.txn(ops).await
    }

    async fn publish_ack(
        &self,
        me: &str,
        key: &EndpointKey,
        ack: Option<Ack>,
    ) -> Result<(), StoreError> {
        let k = keys::ack_key(&self.prefix, me, key);
        let op = match ack {
            None => Op::Delete { key: k },
            Some(ack) => {
                let lease = self.member_lease(me);
                if lease == 0 {
                    return Err(StoreError::Unavailable(
                        "this replica is not announced in etcd yet".into(),
                    ));
                }
                Op::Put {
                    key: k,
                    value: serde_json::to_vec(&ack).unwrap_or_default(),
                    lease,
                }
            }
        };
        self.client.txn(vec![op]).await?;
        Ok(())
    }
}

/// Whether a registration key-value is a heartbeat registration (its lease is its own, and
/// revoking it ends nothing else).
trait TtlLease {
    fn value_is_ttl_lease(&self) -> bool;
}

impl TtlLease for crate::etcd::proto::mvccpb::KeyValue {
    fn value_is_ttl_lease(&self) -> bool {
        serde_json::from_slice::<Registration>(&self.value).is_ok_and(|r| r.stream.is_none())
    }
}
