//! One flotilla's store: drains and weight overrides in the state file (they survive a
//! restart), everything else in memory (registrations are leases, renewed by heartbeats or
//! held by streams; the only member is this flotilla, which probes everything).

use std::collections::BTreeMap;

use super::{
    Ack, Changes, Hold, LeaseKind, Listing, MemoryStore, Persistent, Registration, StateFile,
    StateFileError, Store, StoreError,
};
use crate::health::ownership::HealthFact;
use crate::overlay::EndpointKey;

pub struct LocalStore {
    file: StateFile,
    memory: MemoryStore,
}

impl LocalStore {
    /// Loads the state file (a missing file is an empty state; a corrupt one an error).
    pub fn open(file: StateFile) -> Result<LocalStore, StateFileError> {
        let persistent = file.load()?;
        if !persistent.drains.is_empty() || !persistent.weights.is_empty() {
            tracing::info!(path = %file.path().display(), drains = persistent.drains.len(),
                weights = persistent.weights.len(), "restored runtime state");
        }
        Ok(LocalStore {
            file,
            memory: MemoryStore::with(persistent),
        })
    }
}

#[tonic::async_trait]
impl Store for LocalStore {
    fn name(&self) -> &'static str {
        "the local store"
    }

    fn describe(&self) -> String {
        format!("state file {}", self.file.path().display())
    }

    async fn list(&self) -> Result<(Listing, Box<dyn Changes>), StoreError> {
        self.memory.list().await
    }

    /// Stored in the file first: a change the file did not take is not applied.
    async fn save(&self, prev: &Persistent, next: &Persistent) -> Result<(), StoreError> {
        self.file.save(next)?;
        self.memory.save(prev, next).await
    }

    async fn put_registration(
        &self,
        key: &EndpointKey,
        registration: &Registration,
        lease: LeaseKind,
    ) -> Result<(), StoreError> {
        self.memory.put_registration(key, registration, lease).await
    }

    async fn end_registration(&self, key: &EndpointKey) -> Result<(), StoreError> {
        self.memory.end_registration(key).await
    }

    async fn hold(&self) -> Result<Box<dyn Hold>, StoreError> {
        self.memory.hold().await
    }

    fn join(&self, me: &str) {
        self.memory.join(me);
    }

    async fn leave(&self, me: &str) {
        self.memory.leave(me).await;
    }

    async fn publish_health(
        &self,
        facts: &BTreeMap<EndpointKey, Option<HealthFact>>,
    ) -> Result<(), StoreError> {
        self.memory.publish_health(facts).await
    }

    async fn publish_ack(
        &self,
        me: &str,
        key: &EndpointKey,
        ack: Option<Ack>,
    ) -> Result<(), StoreError> {
        self.memory.publish_ack(me, key, ack).await
    }
}
