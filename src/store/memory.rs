//! The store in memory: what one flotilla shares with itself ([`super::LocalStore`] keeps its
//! drains and overrides in a file besides), and what several replicas in one test process
//! share. Heartbeat leases run out on tokio timers (tests pause time); the test controls
//! (`set_available`, `break_watches`, `crash`) stand in for an etcd outage, a broken watch and
//! a replica killed with its leases left to expire.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, broadcast};
use tokio::time::Instant;

use super::{
    Ack, Change, Changes, Hold, LeaseKind, Listing, Persistent, Registration, Store, StoreError,
};
use crate::health::ownership::HealthFact;
use crate::overlay::EndpointKey;

/// Batches a follower may fall behind by before its stream breaks (and it lists again).
const BACKLOG: usize = 1024;

#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Shared>,
}

struct Shared {
    state: Mutex<Inner>,
    /// `Err`: the stream broke (outage or a test breaking it).
    changes: broadcast::Sender<Result<Vec<Change>, ()>>,
    /// Wakes the expiry task: a heartbeat lease was added or renewed.
    leases_changed: Arc<Notify>,
}

#[derive(Default)]
struct Inner {
    listing: Listing,
    /// The lease each registration lives under.
    leases: HashMap<EndpointKey, LeaseKind>,
    /// Heartbeat leases in the order they run out.
    expiry: BTreeSet<(Instant, EndpointKey)>,
    deadlines: HashMap<EndpointKey, Instant>,
    next_hold: i64,
    down: bool,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl MemoryStore {
    /// An empty store; its lease timers run on the current tokio runtime.
    pub fn new() -> MemoryStore {
        Self::with(Persistent::default())
    }

    /// A store holding `persistent` (drains and overrides loaded from a file).
    pub fn with(persistent: Persistent) -> MemoryStore {
        let (changes, _) = broadcast::channel(BACKLOG);
        let store = MemoryStore {
            inner: Arc::new(Shared {
                state: Mutex::new(Inner {
                    listing: Listing {
                        persistent,
                        ..Listing::default()
                    },
                    ..Inner::default()
                }),
                changes,
                leases_changed: Arc::new(Notify::new()),
            }),
        };
        tokio::spawn(expire(
            Arc::downgrade(&store.inner),
            store.inner.leases_changed.clone(),
        ));
        store
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock()
    }

    /// Calls the store would refuse while it is down.
    fn up(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
        let inner = self.lock();
        if inner.down {
            return Err(StoreError::Unavailable("the store is down".into()));
        }
        Ok(inner)
    }

    /// Test control: an outage (every call fails, every change stream breaks) or its end.
    pub fn set_available(&self, up: bool) {
        self.lock().down = !up;
        if !up {
            let _ = self.inner.changes.send(Err(()));
        }
    }

    /// Test control: every change stream breaks (followers list again).
    pub fn break_watches(&self) {
        let _ = self.inner.changes.send(Err(()));
    }

    /// Test control: replica `me` died; its membership and acknowledgements end as their
    /// lease would run out.
    pub fn crash(&self, me: &str) {
        let mut inner = self.lock();
        let changes = inner.end_member(me);
        self.inner.emit(&mut inner, changes);
    }

    /// Test control: the stream lease `lease` ran out (its replica stopped renewing it).
    pub fn expire_hold(&self, lease: i64) {
        let mut inner = self.lock();
        let changes = inner.end_hold(lease);
        self.inner.emit(&mut inner, changes);
    }

    /// What the store holds now.
    pub fn snapshot(&self) -> Listing {
        self.lock().listing.clone()
    }

    /// Changes `listing` and tells every follower.
    fn change(&self, changes: Vec<Change>) {
        let mut inner = self.lock();
        self.inner.emit(&mut inner, changes);
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn emit(&self, inner: &mut Inner, changes: Vec<Change>) {
        let changes: Vec<Change> = changes
            .into_iter()
            .filter(|c| inner.listing.apply(c))
            .collect();
        if changes.is_empty() {
            return;
        }
        let _ = self.changes.send(Ok(changes));
    }
}

impl Inner {
    fn end_member(&mut self, me: &str) -> Vec<Change> {
        let mut changes = vec![Change::Member(me.to_string(), false)];
        for (k, r) in self.listing.acks.keys() {
            if r == me {
                changes.push(Change::Ack(k.clone(), r.clone(), None));
            }
        }
        changes
    }

    fn end_hold(&mut self, lease: i64) -> Vec<Change> {
        let gone: Vec<EndpointKey> = self
            .leases
            .iter()
            .filter(|(_, l)| **l == LeaseKind::Held(lease))
            .map(|(k, _)| k.clone())
            .collect();
        gone.into_iter()
            .map(|k| {
                self.leases.remove(&k);
                Change::Registration(k, None)
            })
            .collect()
    }

    fn forget_deadline(&mut self, key: &EndpointKey) {
        if let Some(d) = self.deadlines.remove(key) {
            self.expiry.remove(&(d, key.clone()));
        }
    }
}

/// Ends heartbeat leases as they run out, until the store is dropped.
async fn expire(store: std::sync::Weak<Shared>, leases_changed: Arc<Notify>) {
    loop {
        let notified = leases_changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let Some(shared) = store.upgrade() else {
            return;
        };
        let next = shared.lock().expiry.first().map(|(d, _)| *d);
        drop(shared);
        match next {
            Some(deadline) => {
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => {}
                    () = notified => continue,
                }
            }
            None => {
                // Re-check now and then that the store still exists.
                tokio::select! {
                    () = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
                    () = notified => continue,
                }
            }
        }
        let Some(shared) = store.upgrade() else {
            return;
        };
        let mut inner = shared.lock();
        let now = Instant::now();
        let mut changes = Vec::new();
        while let Some((d, k)) = inner.expiry.first().cloned() {
            if d > now {
                break;
            }
            inner.expiry.remove(&(d, k.clone()));
            inner.deadlines.remove(&k);
            inner.leases.remove(&k);
            changes.push(Change::Registration(k, None));
        }
        shared.emit(&mut inner, changes);
    }
}

struct MemoryChanges {
    rx: broadcast::Receiver<Result<Vec<Change>, ()>>,
}

#[tonic::async_trait]
impl Changes for MemoryChanges {
    async fn next(&mut self) -> Result<Vec<Change>, StoreError> {
        match self.rx.recv().await {
            Ok(Ok(changes)) => Ok(changes),
            Ok(Err(())) => Err(StoreError::Unavailable("the change stream broke".into())),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                Err(StoreError::Unavailable(format!("fell {n} changes behind")))
            }
            Err(broadcast::error::RecvError::Closed) => {
                Err(StoreError::Unavailable("the store is gone".into()))
            }
        }
    }
}

struct MemoryHold {
    store: MemoryStore,
    lease: i64,
}

impl Hold for MemoryHold {
    fn lease(&self) -> i64 {
        self.lease
    }
}

impl Drop for MemoryHold {
    fn drop(&mut self) {
        self.store.expire_hold(self.lease);
    }
}

#[tonic::async_trait]
impl Store for MemoryStore {
    fn name(&self) -> &'static str {
        "the memory store"
    }

    fn describe(&self) -> String {
        "memory".into()
    }

    async fn list(&self) -> Result<(Listing, Box<dyn Changes>), StoreError> {
        let inner = self.up()?;
        let rx = self.inner.changes.subscribe();
        Ok((inner.listing.clone(), Box::new(MemoryChanges { rx })))
    }

    async fn save(&self, prev: &Persistent, next: &Persistent) -> Result<(), StoreError> {
        drop(self.up()?);
        self.change(Listing::persistent_changes(prev, next));
        Ok(())
    }

    async fn put_registration(
        &self,
        key: &EndpointKey,
        registration: &Registration,
        lease: LeaseKind,
    ) -> Result<(), StoreError> {
        let mut inner = self.up()?;
        inner.forget_deadline(key);
        if let LeaseKind::Ttl(ttl) = lease {
            let deadline = Instant::now() + ttl;
            inner.deadlines.insert(key.clone(), deadline);
            inner.expiry.insert((deadline, key.clone()));
            self.inner.leases_changed.notify_one();
        }
        inner.leases.insert(key.clone(), lease);
        let change = Change::Registration(key.clone(), Some(registration.clone()));
        self.inner.emit(&mut inner, vec![change]);
        Ok(())
    }

    async fn end_registration(&self, key: &EndpointKey) -> Result<(), StoreError> {
        let mut inner = self.up()?;
        inner.forget_deadline(key);
        inner.leases.remove(key);
        self.inner
            .emit(&mut inner, vec![Change::Registration(key.clone(), None)]);
        Ok(())
    }

    async fn hold(&self) -> Result<Box<dyn Hold>, StoreError> {
        let mut inner = self.up()?;
        inner.next_hold += 1;
        Ok(Box::new(MemoryHold {
            store: self.clone(),
            lease: inner.next_hold,
        }))
    }

    fn join(&self, me: &str) {
        self.change(vec![Change::Member(me.to_string(), true)]);
    }

    async fn leave(&self, me: &str) {
        let mut inner = self.lock();
        let changes = inner.end_member(me);
        self.inner.emit(&mut inner, changes);
    }

    async fn publish_health(
        &self,
        facts: &BTreeMap<EndpointKey, Option<HealthFact>>,
    ) -> Result<(), StoreError> {
        drop(self.up()?);
        self.change(
            facts
                .iter()
                .map(|(k, f)| Change::Health(k.clone(), *f))
                .collect(),
        );
        Ok(())
    }

    async fn publish_ack(
        &self,
        me: &str,
        key: &EndpointKey,
        ack: Option<Ack>,
    ) -> Result<(), StoreError> {
        drop(self.up()?);
        self.change(vec![Change::Ack(key.clone(), me.to_string(), ack)]);
        Ok(())
    }
}
