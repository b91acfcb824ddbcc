//! Following the store: list everything, apply every change after it, list again when the
//! stream breaks. The same loop for one flotilla and for replicas; only the store differs.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Runtime;
use super::replicated::ReplicaLink;
use crate::health::ownership::Owners;
use crate::store::{Change, Listing, StoreError};

/// How long a replica waits before listing the store again.
const RETRY: Duration = Duration::from_millis(500);

/// Where membership goes (the health checker).
struct ToChecker<'a> {
    me: &'a str,
    owners: &'a watch::Sender<Option<Arc<Owners>>>,
}

impl Runtime {
    /// Keeps the runtime equal to the store until shutdown; also serves and publishes this
    /// replica's health findings.
    pub(super) async fn follow(self: Arc<Self>, link: ReplicaLink, shutdown: CancellationToken) {
        let ReplicaLink {
            me,
            owners,
            found,
            checked,
        } = link;
        let publishing = tokio::spawn(self.clone().publish_health(found));
        let _stop = super::replicated::AbortOnDrop(publishing.abort_handle());
        let following = tokio::spawn(self.clone().follow_checked(checked));
        let _stop_following = super::replicated::AbortOnDrop(following.abort_handle());
        let to = ToChecker {
            me: &me,
            owners: &owners,
        };
        // What the last failed attempt said, so that a store that cannot be reached from the
        // start (refused TLS handshake, wrong address) is reported once per distinct reason.
        let mut last_failure = String::new();
        loop {
            let broke = tokio::select! {
                () = shutdown.cancelled() => return,
                e = self.follow_once(&to) => e,
            };
            // Out of touch: every replica probes everything until the store answers again.
            owners.send_replace(None);
            let reason = broke.to_string();
            if *self.store_up.borrow() {
                warn!(error = %broke, store = %self.store.describe(),
                    "lost {}; serving the last state seen until it is back", self.store.name());
            } else if reason != last_failure {
                warn!(error = %broke, store = %self.store.describe(),
                    "cannot reach {}; serving without shared state, changes refused, retrying", self.store.name());
            }
            last_failure = reason;
            self.store_up.send_replace(false);
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(RETRY) => {}
            }
        }
    }

    /// Lists, then follows until the change stream breaks.
    async fn follow_once(&self, to: &ToChecker<'_>) -> StoreError {
        let (listing, mut changes) = match self.store.list().await {
            Ok(l) => l,
            Err(e) => return e,
        };
        self.absorb_listing(listing, to);
        if !self.store_up.send_replace(true) {
            info!(store = %self.store.describe(), "following {}", self.store.name());
        }
        loop {
            let batch = match changes.next().await {
                Ok(b) => b,
                Err(e) => return e,
            };
            self.absorb_changes(batch, to);
        }
    }

    fn absorb_listing(&self, listing: Listing, to: &ToChecker<'_>) {
        let Listing {
            persistent,
            registrations,
            members,
            health,
            acks,
        } = listing;
        self.absorb_persistent(|p| *p = persistent);
        self.absorb_registrations(registrations);
        {
            let mut state = self.lock();
            state.members = members;
            state.acks = acks;
            state.health.listed(health);
            self.apply_health(&state);
        }
        self.acks_changed.send_modify(|v| *v += 1);
        self.set_owners(to);
    }

    fn absorb_changes(&self, batch: Vec<Change>, to: &ToChecker<'_>) {
        let mut members_changed = false;
        let mut acks_changed = false;
        let mut health_changed = false;
        for change in batch {
            match change {
                Change::Drain(k, on) => self.absorb_persistent(|p| {
                    if on {
                        p.drains.insert(k);
                    } else {
                        p.drains.remove(&k);
                    }
                }),
                Change::Weight(k, w) => self.absorb_persistent(|p| match w {
                    Some(w) => {
                        p.weights.insert(k, w);
                    }
                    None => {
                        p.weights.remove(&k);
                    }
                }),
                Change::Registration(k, r) => {
                    self.absorb_registration(k, r);
                }
                Change::Member(id, live) => {
                    let mut state = self.lock();
                    members_changed |= if live {
                        state.members.insert(id)
                    } else {
                        state.members.remove(&id)
                    };
                }
                Change::Health(k, f) => {
                    self.lock().health.changed(k, f);
                    health_changed = true;
                }
                Change::Ack(k, replica, a) => {
                    let mut state = self.lock();
                    match a {
                        Some(a) => state.acks.insert((k, replica), a),
                        None => state.acks.remove(&(k, replica)),
                    };
                    acks_changed = true;
                }
            }
        }
        if health_changed {
            self.apply_health(&self.lock());
        }
        if members_changed {
            self.set_owners(to);
        }
        if members_changed || acks_changed {
            self.acks_changed.send_modify(|v| *v += 1);
        }
    }

    /// Replaces the drains and overrides with what the store holds, publishing only if
    /// something differs (a replica that lists again pushes nothing unchanged).
    fn absorb_persistent(&self, change: impl FnOnce(&mut crate::store::Persistent)) {
        let mut state = self.lock();
        let mut next = state.persistent.clone();
        change(&mut next);
        if next != state.persistent {
            state.persistent = next;
            self.apply(&state);
        }
    }

    /// Publishes who probes what, if the live replicas changed (this replica is one of them
    /// even before the store shows its membership).
    fn set_owners(&self, to: &ToChecker<'_>) {
        let mut live: BTreeSet<String> = self.lock().members.clone();
        live.insert(to.me.to_string());
        let next = Owners {
            me: to.me.to_string(),
            live: live.into_iter().collect(),
        };
        to.owners.send_if_modified(|current| {
            if current.as_deref() == Some(&next) {
                return false;
            }
            info!(replicas = ?next.live, "replicas sharing the health checks");
            *current = Some(Arc::new(next));
            true
        });
    }
}
