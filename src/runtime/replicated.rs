//! A replica among others: its name, and the link between its runtime (which follows the
//! store) and its health checker (which probes the endpoints this replica owns).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::warn;

use super::Runtime;
use crate::health::ownership::{FactUpdate, HealthFact, Owners, ReplicaHealth};
use crate::overlay::EndpointKey;
use crate::store::Store;

/// How long publishing waits before trying the store again.
const RETRY: Duration = Duration::from_millis(500);

/// Most health facts sent to the store at once.
const FACTS_PER_BATCH: usize = 100;

/// The runtime's side of sharing health checks between replicas.
pub struct ReplicaLink {
    pub me: String,
    pub(super) owners: watch::Sender<Option<Arc<Owners>>>,
    pub(super) remote: mpsc::UnboundedSender<FactUpdate>,
    pub(super) publish: mpsc::UnboundedReceiver<FactUpdate>,
}

/// The two ends that connect the runtime of replica `me` to its health checker.
pub fn link(me: String) -> (ReplicaLink, ReplicaHealth) {
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
        ReplicaHealth {
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

/// Writes this replica's health findings to the store, the newest per endpoint, retrying
/// while the store is out of reach.
pub(super) async fn publish_health(
    store: Arc<dyn Store>,
    mut facts: mpsc::UnboundedReceiver<FactUpdate>,
) {
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
            .take(FACTS_PER_BATCH)
            .map(|(k, f)| (k.clone(), *f))
            .collect();
        match store.publish_health(&chunk).await {
            Ok(()) => {
                for k in chunk.keys() {
                    pending.remove(k);
                }
            }
            Err(e) => {
                warn!(error = %e, "could not publish health facts; retrying");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

impl Runtime {
    /// Ends this replica's membership (a clean shutdown): the others take over its probes at
    /// once instead of when its lease runs out.
    pub async fn leave(&self) {
        self.store.leave(&self.me).await;
    }
}

/// Aborts a task when dropped.
pub(super) struct AbortOnDrop(pub(super) tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
