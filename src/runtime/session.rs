//! Registrations bound to a stream: an instance's endpoints live exactly as long as the
//! registration stream it holds open (`crate::registry` serves that stream).
//!
//! They live in the store under a lease the stream holds ([`crate::store::Hold`]): kept
//! alive while the stream lives, ended when it ends, run out when its replica dies — so every
//! replica's Envoys get them. They are held with the TTL leases, so one place owns
//! "registered endpoints": an address is registered by one instance at a time, whichever way
//! it registered. A [`Session`] removes its endpoints when it is dropped, so a stream that
//! ends for any reason (closed, broken, rejected) leaves nothing behind.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OnceCell, mpsc};
use tracing::info;

use super::registrations::Check;
use super::{Runtime, RuntimeError, parse_address};
use crate::events::{self, Kind, NewEvent};
use crate::overlay::EndpointKey;
use crate::store::{Hold, LeaseKind, Registration, StreamOwner};

/// Identifies one registration stream.
pub type SessionId = u64;

/// Endpoints one stream may register.
pub const MAX_ENDPOINTS_PER_STREAM: usize = 64;
/// Endpoints all streams from one peer IP may hold together.
pub const MAX_ENDPOINTS_PER_PEER: usize = 256;
/// Registration streams open at once from one peer IP.
pub const MAX_STREAMS_PER_PEER: usize = 64;
/// Registration streams open at once in total.
pub const MAX_STREAMS: usize = 4096;
/// Metadata entries per endpoint, and bytes per key or value.
pub const MAX_METADATA_ENTRIES: usize = 16;
pub const MAX_METADATA_BYTES: usize = 256;
/// Bytes in a zone name.
pub const MAX_ZONE_BYTES: usize = 128;

/// What an instance registers on its stream.
#[derive(Debug, Clone, Default)]
pub struct BoundRegistration {
    pub cluster: String,
    pub address: String,
    pub weight: u32,
    pub zone: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// The fleets of the stream's verified client certificate (None without mTLS): checked
    /// against the cluster's `registrations.from`.
    pub identity_fleets: Option<Vec<String>>,
    /// The mesh sidecar (node id) registering itself: the same sidecar may take over its own
    /// leaving registration (`super::drain_on_end`).
    pub instance: Option<String>,
}

struct Open {
    peer: Option<IpAddr>,
    /// Operators asking this stream's endpoints to leave (admin API).
    leave: mpsc::UnboundedSender<EndpointKey>,
}

/// What the streams of one peer IP hold together.
#[derive(Default)]
struct PeerUse {
    streams: usize,
}

#[derive(Default)]
pub(super) struct Sessions {
    open: HashMap<SessionId, Open>,
    /// Kept as streams open, register and end, so that no limit check scans the streams.
    per_peer: HashMap<IpAddr, PeerUse>,
    next: SessionId,
}

impl Sessions {
    /// The streams open from the peer of stream `id`, `id` included.
    fn of_peer(&self, id: SessionId) -> Vec<SessionId> {
        let Some(peer) = self.open.get(&id).and_then(|o| o.peer) else {
            return vec![id];
        };
        self.open
            .iter()
            .filter(|(_, o)| o.peer == Some(peer))
            .map(|(id, _)| *id)
            .collect()
    }

    pub(super) fn close(&mut self, id: SessionId) {
        let Some(peer) = self.open.remove(&id).and_then(|o| o.peer) else {
            return;
        };
        if let Some(u) = self.per_peer.get_mut(&peer) {
            u.streams -= 1;
            if u.streams == 0 {
                self.per_peer.remove(&peer);
            }
        }
    }
}

/// One open registration stream; dropping it removes every endpoint it registered.
pub struct Session {
    runtime: Arc<Runtime>,
    id: SessionId,
    owner: StreamOwner,
    /// The stream's lease in the store, taken at its first registration.
    hold: OnceCell<Box<dyn Hold>>,
    /// Endpoints of this stream an operator asked to leave.
    pub leave_requests: mpsc::UnboundedReceiver<EndpointKey>,
    /// When set, the stream's endpoints drain this long when it ends before they are removed
    /// (`super::drain_on_end`); otherwise they leave at once.
    drain_on_end: Option<Duration>,
}

impl Runtime {
    /// Opens a registration stream for a client at `peer`.
    pub fn open_session(self: &Arc<Self>, peer: Option<IpAddr>) -> Result<Session, RuntimeError> {
        let mut state = self.lock();
        let sessions = &mut state.sessions;
        if sessions.open.len() >= MAX_STREAMS {
            return Err(RuntimeError::Limit(format!(
                "{MAX_STREAMS} registration streams are open; no more are accepted"
            )));
        }
        if let Some(ip) = peer {
            let from_peer = sessions.per_peer.entry(ip).or_default();
            if from_peer.streams >= MAX_STREAMS_PER_PEER {
                return Err(RuntimeError::Limit(format!(
                    "{MAX_STREAMS_PER_PEER} registration streams are open from this address already"
                )));
            }
            from_peer.streams += 1;
        }
        sessions.next += 1;
        let id = sessions.next;
        let (leave, leave_requests) = mpsc::unbounded_channel();
        sessions.open.insert(id, Open { peer, leave });
        Ok(Session {
            runtime: self.clone(),
            id,
            owner: StreamOwner {
                replica: self.me.clone(),
                session: id,
            },
            hold: OnceCell::new(),
            leave_requests,
            drain_on_end: None,
        })
    }

    /// Asks the instance holding a stream registration to leave (operator drain): its stream
    /// runs the drain handshake. Returns false when it is leaving already.
    pub fn ask_to_leave(&self, cluster: &str, address: &str) -> Result<bool, RuntimeError> {
        let address = parse_address(address)?;
        let key = EndpointKey::new(cluster, address);
        let state = self.lock();
        let lease = state
            .leases
            .get(&key)
            .filter(|l| l.session.as_ref().is_some_and(|s| s.replica == self.me))
            .ok_or_else(|| RuntimeError::UnknownEndpoint {
                cluster: cluster.to_string(),
                address,
            })?;
        if lease.leaving {
            return Ok(false);
        }
        let open = (lease.session.as_ref()).and_then(|s| state.sessions.open.get(&s.session));
        if let Some(open) = open {
            let _ = open.leave.send(key);
        }
        Ok(true)
    }

    pub(super) fn end_session(&self, owner: &StreamOwner) {
        let id = owner.session;
        let mut state = self.lock();
        let gone = state.leases.end_session(owner);
        state.sessions.close(id);
        if gone.is_empty() {
            return;
        }
        state.registry_version += 1;
        self.leases_changed.notify_one();
        for key in &gone {
            info!(cluster = %key.cluster, endpoint = %key.address, stream = id,
                "registration ended with its stream");
            events::record(
                NewEvent::new(
                    Kind::Registration,
                    format!("{} left {}: its stream ended", key.address, key.cluster),
                )
                .cluster(key.cluster.clone())
                .endpoint(key.address),
            );
        }
    }
}

impl Session {
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// When this stream ends, its endpoints drain for `grace` before they are removed (a mesh
    /// sidecar's instance), instead of leaving at once.
    pub fn drain_on_end(&mut self, grace: Duration) {
        self.drain_on_end = Some(grace);
    }

    /// Registers an endpoint on this stream, or updates one it registered already: in the
    /// store under this stream's lease, and at once here.
    pub async fn register(&self, r: &BoundRegistration) -> Result<EndpointKey, RuntimeError> {
        let rt = &self.runtime;
        let key = EndpointKey::new(&r.cluster, parse_address(&r.address)?);
        let registration = Registration {
            weight: if r.weight == 0 { 1 } else { r.weight },
            ttl_ms: 0,
            stream: Some(self.owner.clone()),
            zone: r.zone.clone(),
            metadata: r.metadata.clone(),
            leaving: false,
            instance: r.instance.clone(),
        };
        {
            let state = rt.lock();
            let who = super::admission::Registrant::Stream(r.identity_fleets.as_deref());
            rt.admit(&state, &key, &registration, who, Check::Write)?;
            if !state.leases.contains(&key) {
                let mine = state.leases.of_session(&self.owner).map_or(0, |k| k.len());
                if mine >= MAX_ENDPOINTS_PER_STREAM {
                    return Err(RuntimeError::Limit(format!(
                        "a stream may register at most {MAX_ENDPOINTS_PER_STREAM} endpoints"
                    )));
                }
                let from_peer: usize = state
                    .sessions
                    .of_peer(self.id)
                    .into_iter()
                    .map(|session| {
                        let owner = StreamOwner {
                            replica: rt.me.clone(),
                            session,
                        };
                        state.leases.of_session(&owner).map_or(0, |k| k.len())
                    })
                    .sum();
                if from_peer >= MAX_ENDPOINTS_PER_PEER {
                    return Err(RuntimeError::Limit(format!(
                        "streams from one address may register at most {MAX_ENDPOINTS_PER_PEER} endpoints"
                    )));
                }
            }
        }
        let (new, taken_over) = {
            let state = rt.lock();
            let held = state.leases.get(&key);
            (
                held.is_none(),
                held.is_some_and(|l| l.session.as_ref() != Some(&self.owner)),
            )
        };
        self.put(&key, &registration).await?;
        if new {
            info!(cluster = %key.cluster, endpoint = %key.address, stream = self.id,
                "endpoint registered on a stream");
        }
        if taken_over {
            info!(cluster = %key.cluster, endpoint = %key.address, stream = self.id,
                "a draining endpoint's instance reconnected: active again");
            events::record(
                NewEvent::new(
                    Kind::Registration,
                    format!(
                        "{} in {}: its instance reconnected while draining; active again",
                        key.address, key.cluster
                    ),
                )
                .cluster(key.cluster.clone())
                .endpoint(key.address),
            );
        }
        Ok(key)
    }

    /// Writes `r` under this stream's lease (taken now if this is its first registration),
    /// then applies it here.
    async fn put(&self, key: &EndpointKey, r: &Registration) -> Result<(), RuntimeError> {
        let rt = &self.runtime;
        rt.check_store().await?;
        let hold = self.hold.get_or_try_init(|| rt.store.hold()).await?;
        rt.store
            .put_registration(key, r, LeaseKind::Held(hold.lease()))
            .await?;
        rt.absorb_registration(key.clone(), Some(r.clone()));
        Ok(())
    }

    /// Marks endpoints of this stream DRAINING (all of them when `which` is empty), in the
    /// store: every replica's Envoys get them DRAINING.
    pub async fn leave(
        &self,
        which: &[(String, String)],
    ) -> Result<Vec<EndpointKey>, RuntimeError> {
        let rt = &self.runtime;
        let mut wanted = Vec::with_capacity(which.len());
        for (cluster, address) in which {
            wanted.push(EndpointKey::new(cluster, parse_address(address)?));
        }
        let to_mark: Vec<(EndpointKey, Registration)> = {
            let state = rt.lock();
            let mine = state.leases.of_session(&self.owner);
            if let Some(k) = wanted.iter().find(|k| !mine.is_some_and(|m| m.contains(k))) {
                return Err(RuntimeError::UnknownEndpoint {
                    cluster: k.cluster.clone(),
                    address: k.address,
                });
            }
            if wanted.is_empty() {
                wanted = mine
                    .map(|m| m.iter().cloned().collect())
                    .unwrap_or_default();
            }
            wanted
                .iter()
                .filter_map(|k| {
                    let l = state.leases.get(k)?;
                    (!l.leaving).then(|| {
                        (
                            k.clone(),
                            Registration {
                                weight: l.weight,
                                ttl_ms: 0,
                                stream: Some(self.owner.clone()),
                                zone: l.zone.clone(),
                                metadata: l.metadata.clone(),
                                leaving: true,
                                instance: l.instance.clone(),
                            },
                        )
                    })
                })
                .collect()
        };
        for (k, r) in to_mark {
            self.put(&k, &r).await?;
            info!(cluster = %k.cluster, endpoint = %k.address, stream = self.id, "endpoint leaving: draining");
            events::record(
                NewEvent::new(
                    Kind::Drain,
                    format!("{} leaving {}: draining", k.address, k.cluster),
                )
                .cluster(k.cluster.clone())
                .endpoint(k.address),
            );
        }
        Ok(wanted)
    }

    /// Returns once the overlay (and so Envoy's next EDS) holds what this stream changed.
    pub async fn published(&self) {
        self.runtime.registrations_published().await;
    }
}

impl Drop for Session {
    /// Removes the stream's endpoints here at once; dropping its hold ends its lease in the
    /// store, which removes them on every other replica. A stream that drains on end keeps
    /// its hold for the grace instead (`super::drain_on_end`).
    fn drop(&mut self) {
        if let Some(grace) = self.drain_on_end
            && self.hold.initialized()
            && let Ok(tasks) = tokio::runtime::Handle::try_current()
        {
            let draining = self.runtime.start_draining(&self.owner, grace);
            if !draining.is_empty()
                && let Some(hold) = self.hold.take()
            {
                let (runtime, owner) = (self.runtime.clone(), self.owner.clone());
                tasks.spawn(async move {
                    runtime.drain_then_end(owner, hold, draining, grace).await;
                });
                return;
            }
        }
        self.runtime.end_session(&self.owner);
    }
}

#[cfg(test)]
mod tests;
