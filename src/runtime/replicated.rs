//! A replica among others: its name, and the link between its runtime (which follows the
//! store) and its health checker (which probes the endpoints this replica owns).

use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::Runtime;
use crate::health::ownership::{Checked, FactUpdate, Owners, ReplicaHealth};

/// The runtime's side of sharing health checks between replicas.
pub struct ReplicaLink {
    pub me: String,
    pub(super) owners: watch::Sender<Option<Arc<Owners>>>,
    /// What this replica's checker found.
    pub(super) found: mpsc::UnboundedReceiver<FactUpdate>,
    /// Which endpoints the checker checks.
    pub(super) checked: watch::Receiver<Checked>,
}

/// The two ends that connect the runtime of replica `me` to its health checker.
pub fn link(me: String) -> (ReplicaLink, ReplicaHealth) {
    let (owners, owners_rx) = watch::channel(None);
    let (publish, found) = mpsc::unbounded_channel();
    let (checked_tx, checked) = watch::channel(Checked::default());
    (
        ReplicaLink {
            me,
            owners,
            found,
            checked,
        },
        ReplicaHealth {
            owners: owners_rx,
            publish,
            checked: checked_tx,
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
