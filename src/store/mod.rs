//! Where replicas keep what they share: operator drains and weight overrides, registrations
//! (heartbeat leases and stream-held leases), health facts, probe ownership (membership), and
//! per-replica drain acknowledgements — and the stream of changes every replica follows.
//!
//! One seam, [`Store`], with three implementations: [`LocalStore`] (one flotilla: a state
//! file and local timers, membership is itself), [`EtcdStore`] (replicas), and
//! [`MemoryStore`] (several replicas in one test process). The runtime follows whichever it
//! is given the same way: list, then apply changes until the stream breaks, then list again
//! (the shape of go-control-plane's ConfigWatcher: one interface, a cache behind it, a mock
//! for tests). Nothing outside this module asks which store it has.

mod change;
pub mod etcd;
mod local;
mod memory;
pub mod state_file;

use std::collections::BTreeMap;
use std::time::Duration;

pub use change::{Ack, Change, Listing, Registration, StreamOwner};
pub use etcd::EtcdStore;
pub use local::LocalStore;
pub use memory::MemoryStore;
pub use state_file::{Persistent, StateFile, StateFileError};

use crate::health::ownership::HealthFact;
use crate::overlay::EndpointKey;

/// A store call that did not take: nothing changed anywhere.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store does not answer (etcd down or out of reach); every replica keeps serving
    /// the last state it saw.
    #[error("{0}")]
    Unavailable(String),
    /// The local state file could not be written.
    #[error("{0}")]
    StateFile(String),
}

impl From<crate::etcd::EtcdError> for StoreError {
    fn from(e: crate::etcd::EtcdError) -> StoreError {
        StoreError::Unavailable(e.to_string())
    }
}

impl From<StateFileError> for StoreError {
    fn from(e: StateFileError) -> StoreError {
        StoreError::StateFile(e.to_string())
    }
}

/// How long a stream-held registration outlives a replica that stopped renewing it (killed):
/// the other replicas drop it within this long.
pub const STREAM_LEASE_TTL: Duration = Duration::from_secs(5);

/// The lease this replica announces itself with: when a replica dies, the others take over
/// its endpoints' probes within this long.
pub const REPLICA_TTL: Duration = Duration::from_secs(3);

/// The changes after a [`Listing`], in order.
#[tonic::async_trait]
pub trait Changes: Send {
    /// The next batch; `Err` once the stream broke: list again.
    async fn next(&mut self) -> Result<Vec<Change>, StoreError>;
}

/// A lease held by a registration stream: kept alive while this value lives; dropping it
/// ends the lease, and the store then drops every registration under it.
pub trait Hold: Send + Sync {
    /// The lease's id, as [`Store::put_registration`] takes it.
    fn lease(&self) -> i64;
}

/// Which lease a registration lives under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseKind {
    /// Renewed by heartbeats through any replica; ends `ttl` after the last one.
    Ttl(Duration),
    /// A stream's lease ([`Hold::lease`]).
    Held(i64),
}

/// Everything replicas share, and the changes to it. Calls fail with
/// [`StoreError::Unavailable`] while the store does not answer; nothing is then changed.
#[tonic::async_trait]
pub trait Store: Send + Sync {
    /// What the store is, for logs (`etcd prefix /flotilla/`, a state file's path).
    fn describe(&self) -> String;

    /// Its kind, as log lines name it (`etcd`).
    fn name(&self) -> &'static str;

    /// Everything stored now, and the changes after it.
    async fn list(&self) -> Result<(Listing, Box<dyn Changes>), StoreError>;

    /// Writes what differs between `prev` and `next` (drains and weight overrides) at once.
    async fn save(&self, prev: &Persistent, next: &Persistent) -> Result<(), StoreError>;

    /// Registers `key` under `lease`, or renews it (a TTL lease) / updates it (a held one).
    async fn put_registration(
        &self,
        key: &EndpointKey,
        registration: &Registration,
        lease: LeaseKind,
    ) -> Result<(), StoreError>;

    /// Ends a registration everywhere now (its lease too, for a TTL registration).
    async fn end_registration(&self, key: &EndpointKey) -> Result<(), StoreError>;

    /// A new stream lease, kept alive until the returned value is dropped.
    async fn hold(&self) -> Result<Box<dyn Hold>, StoreError>;

    /// Announces replica `me` as a member (it probes its share of the endpoints) and keeps
    /// it announced until [`Store::leave`]; retries by itself while the store is down.
    fn join(&self, me: &str);

    /// Ends `me`'s membership now (a clean shutdown): the others take over its probes.
    async fn leave(&self, me: &str);

    /// Publishes health facts of the endpoints this replica probes (`None`: the endpoint has
    /// no health check any more; its fact is deleted).
    async fn publish_health(
        &self,
        facts: &BTreeMap<EndpointKey, Option<HealthFact>>,
    ) -> Result<(), StoreError>;

    /// Publishes what replica `me`'s Envoys say about a leaving endpoint (`None`: withdrawn),
    /// under `me`'s membership: a replica that dies takes its acknowledgements with it.
    async fn publish_ack(
        &self,
        me: &str,
        key: &EndpointKey,
        ack: Option<Ack>,
    ) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests;
