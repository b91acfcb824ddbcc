//! Stream registrations that drain when their stream ends, instead of leaving at once: a
//! mesh sidecar's instance.
//!
//! A sidecar's xDS stream can end while its Envoy still serves (flotilla restarts, a replica
//! dies, the network blips) or because the Envoy is going away. Either way callers should stop
//! sending it new requests but let those in flight finish, so its endpoint turns DRAINING for
//! a grace period and is removed only at its end. If the same sidecar (same node id, same
//! service, same inbound address) reconnects within the grace — through any replica — it
//! takes over its own leaving registration and is an active instance again; any other
//! claimant is refused while it drains, as while it lived.
//!
//! Through the store: the leaving registration is written under the ended stream's lease,
//! which the replica keeps for the grace (so every replica's Envoys see it DRAINING) and then
//! ends (so every replica removes it). A takeover rewrites it under the new stream's lease:
//! ending the old lease then removes nothing.

use std::time::Duration;

use tracing::{info, warn};

use super::Runtime;
use super::leases::Lease;
use crate::events::{self, Kind, NewEvent};
use crate::overlay::EndpointKey;
use crate::store::{Hold, LeaseKind, Registration, StreamOwner};

/// Whether registration `r` may take over `held`, a registration of another stream: it is a
/// leaving one of the same sidecar (its stream ended, or it was asked to leave).
pub(super) fn takes_over(held: &Lease, r: &Registration) -> bool {
    held.leaving
        && held.session.is_some()
        && r.stream.is_some()
        && held.instance.is_some()
        && held.instance == r.instance
}

impl Runtime {
    /// The stream `owner` ended: closes its slot, marks its endpoints DRAINING here at once,
    /// and returns what to write to the store for every replica.
    pub(super) fn start_draining(
        &self,
        owner: &StreamOwner,
        grace: Duration,
    ) -> Vec<(EndpointKey, Registration)> {
        let mut state = self.lock();
        state.sessions.close(owner.session);
        let keys: Vec<EndpointKey> = state
            .leases
            .of_session(owner)
            .map(|k| k.iter().cloned().collect())
            .unwrap_or_default();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(l) = state.leases.get(&key) else {
                continue;
            };
            let r = Registration {
                weight: l.weight,
                ttl_ms: 0,
                stream: Some(owner.clone()),
                zone: l.zone.clone(),
                metadata: l.metadata.clone(),
                leaving: true,
                instance: l.instance.clone(),
            };
            state.leases.set_leaving(&key);
            out.push((key, r));
        }
        if out.is_empty() {
            return out;
        }
        state.registry_version += 1;
        self.leases_changed.notify_one();
        drop(state);
        for (key, _) in &out {
            info!(cluster = %key.cluster, endpoint = %key.address, stream = owner.session,
                grace_ms = grace.as_millis() as u64, "stream ended: endpoint draining");
            events::record(
                NewEvent::new(
                    Kind::Drain,
                    format!(
                        "{} leaving {}: its stream ended; draining for {}",
                        key.address,
                        key.cluster,
                        crate::config::duration::format(grace)
                    ),
                )
                .cluster(key.cluster.clone())
                .endpoint(key.address),
            );
        }
        out
    }

    /// Writes the draining registrations under the ended stream's lease, waits out the
    /// grace, then ends the lease and whatever of the stream was not taken over.
    pub(super) async fn drain_then_end(
        &self,
        owner: StreamOwner,
        hold: Box<dyn Hold>,
        draining: Vec<(EndpointKey, Registration)>,
        grace: Duration,
    ) {
        for (key, r) in &draining {
            let ours = self
                .lock()
                .leases
                .get(key)
                .is_some_and(|l| l.session.as_ref() == Some(&owner));
            if !ours {
                continue;
            }
            if let Err(e) = self
                .store
                .put_registration(key, r, LeaseKind::Held(hold.lease()))
                .await
            {
                // Still DRAINING here; the other replicas remove it when the lease ends.
                warn!(cluster = %key.cluster, endpoint = %key.address, error = %e,
                    "could not write a draining registration to the store");
            }
        }
        tokio::time::sleep(grace).await;
        drop(hold);
        self.end_session(&owner);
    }
}

#[cfg(test)]
mod tests;
