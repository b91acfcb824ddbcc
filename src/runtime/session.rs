//! Registrations bound to a stream: an instance's endpoints live exactly as long as the
//! registration stream it holds open (`crate::registry` serves that stream).
//!
//! They are held with the TTL leases in [`Runtime`], so one place owns "registered endpoints":
//! an address is registered by one instance at a time, whichever way it registered. A
//! [`Session`] removes its endpoints when it is dropped, so a stream that ends for any reason
//! (closed, broken, rejected) leaves nothing behind.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::info;

use super::leases::{Binding, Registered};
use super::{Runtime, RuntimeError, admission, parse_address};
use crate::events::{self, Kind, NewEvent};
use crate::overlay::EndpointKey;

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
    endpoints: usize,
}

#[derive(Default)]
pub(super) struct Sessions {
    open: HashMap<SessionId, Open>,
    /// Kept as streams open, register and end, so that no limit check scans the streams.
    per_peer: HashMap<IpAddr, PeerUse>,
    next: SessionId,
}

impl Sessions {
    fn peer_use(&mut self, id: SessionId) -> Option<&mut PeerUse> {
        let peer = self.open.get(&id)?.peer?;
        self.per_peer.get_mut(&peer)
    }

    fn close(&mut self, id: SessionId, endpoints: usize) {
        let Some(peer) = self.open.remove(&id).and_then(|o| o.peer) else {
            return;
        };
        if let Some(u) = self.per_peer.get_mut(&peer) {
            u.streams -= 1;
            u.endpoints -= endpoints;
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
    /// Endpoints of this stream an operator asked to leave.
    pub leave_requests: mpsc::UnboundedReceiver<EndpointKey>,
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
            leave_requests,
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
            .filter(|l| l.session.is_some())
            .ok_or_else(|| RuntimeError::UnknownEndpoint {
                cluster: cluster.to_string(),
                address,
            })?;
        if lease.leaving {
            return Ok(false);
        }
        let open = lease.session.and_then(|id| state.sessions.open.get(&id));
        if let Some(open) = open {
            let _ = open.leave.send(key);
        }
        Ok(true)
    }

    fn end_session(&self, id: SessionId) {
        let mut state = self.lock();
        let gone = state.leases.end_session(id);
        state.sessions.close(id, gone.len());
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

    /// Registers an endpoint on this stream, or updates one it registered already.
    pub fn register(&self, r: &BoundRegistration) -> Result<EndpointKey, RuntimeError> {
        let rt = &self.runtime;
        let address = parse_address(&r.address)?;
        let weight = if r.weight == 0 { 1 } else { r.weight };
        check(r, weight)?;
        let config = rt.controller.config().ok_or(RuntimeError::NoConfig)?;
        let cluster = config
            .clusters
            .get(&r.cluster)
            .ok_or_else(|| RuntimeError::UnknownCluster(r.cluster.clone()))?;
        let who = admission::Registrant::Stream(r.identity_fleets.as_deref());
        let rules = admission::open(&r.cluster, cluster, who)?;
        if cluster.endpoints.iter().any(|e| e.address == address) {
            return Err(RuntimeError::Configured {
                cluster: r.cluster.clone(),
                address,
            });
        }
        admission::check(address.ip(), rules).map_err(RuntimeError::BadRequest)?;
        let key = EndpointKey::new(&r.cluster, address);
        let mut state = rt.lock();
        match state.leases.get(&key) {
            Some(l) if l.session != Some(self.id) => {
                return Err(RuntimeError::Taken {
                    cluster: r.cluster.clone(),
                    address,
                });
            }
            Some(_) => {}
            None => {
                let mine = state.leases.of_session(self.id).map_or(0, |k| k.len());
                if mine >= MAX_ENDPOINTS_PER_STREAM {
                    return Err(RuntimeError::Limit(format!(
                        "a stream may register at most {MAX_ENDPOINTS_PER_STREAM} endpoints"
                    )));
                }
                let from_peer = state.sessions.peer_use(self.id).map_or(0, |u| u.endpoints);
                if from_peer >= MAX_ENDPOINTS_PER_PEER {
                    return Err(RuntimeError::Limit(format!(
                        "streams from one address may register at most {MAX_ENDPOINTS_PER_PEER} endpoints"
                    )));
                }
                let max = rules.max;
                if state.leases.count(&r.cluster) >= max {
                    return Err(RuntimeError::Full {
                        cluster: r.cluster.clone(),
                        max,
                    });
                }
            }
        }
        let binding = Binding {
            weight,
            zone: r.zone.clone(),
            metadata: r.metadata.clone(),
        };
        let registered = state.leases.bind(&key, self.id, binding, Instant::now());
        if registered != (Registered::Renewed { changed: false }) {
            state.registry_version += 1;
            rt.leases_changed.notify_one();
        }
        if registered == Registered::New {
            if let Some(u) = state.sessions.peer_use(self.id) {
                u.endpoints += 1;
            }
            info!(cluster = %key.cluster, endpoint = %key.address, stream = self.id,
                "endpoint registered on a stream");
            events::record(
                NewEvent::new(
                    Kind::Registration,
                    format!("{} registered in {} (stream)", key.address, key.cluster),
                )
                .cluster(key.cluster.clone())
                .endpoint(key.address),
            );
        }
        Ok(key)
    }

    /// Marks endpoints of this stream DRAINING (all of them when `which` is empty).
    pub fn leave(&self, which: &[(String, String)]) -> Result<Vec<EndpointKey>, RuntimeError> {
        let rt = &self.runtime;
        let mut wanted = Vec::with_capacity(which.len());
        for (cluster, address) in which {
            wanted.push(EndpointKey::new(cluster, parse_address(address)?));
        }
        let mut state = rt.lock();
        let mine = state.leases.of_session(self.id);
        if let Some(k) = wanted.iter().find(|k| !mine.is_some_and(|m| m.contains(k))) {
            return Err(RuntimeError::UnknownEndpoint {
                cluster: k.cluster.clone(),
                address: k.address,
            });
        }
        let keys = if wanted.is_empty() {
            mine.map(|m| m.iter().cloned().collect())
                .unwrap_or_default()
        } else {
            wanted
        };
        let mut changed = false;
        for k in &keys {
            if !state.leases.set_leaving(k) {
                continue;
            }
            changed = true;
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
        if changed {
            state.registry_version += 1;
            rt.leases_changed.notify_one();
        }
        Ok(keys)
    }

    /// Returns once the overlay (and so Envoy's next EDS) holds what this stream changed.
    pub async fn published(&self) {
        self.runtime.registrations_published().await;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.runtime.end_session(self.id);
    }
}

fn check(r: &BoundRegistration, weight: u32) -> Result<(), RuntimeError> {
    let bad = |m: String| Err(RuntimeError::BadRequest(m));
    if weight > crate::config::MAX_WEIGHT {
        return bad(format!(
            "weight {weight} is out of range (1..={})",
            crate::config::MAX_WEIGHT
        ));
    }
    if r.zone.as_ref().is_some_and(|z| z.len() > MAX_ZONE_BYTES) {
        return bad(format!("zone is longer than {MAX_ZONE_BYTES} bytes"));
    }
    if r.metadata.len() > MAX_METADATA_ENTRIES {
        return bad(format!(
            "metadata has more than {MAX_METADATA_ENTRIES} entries"
        ));
    }
    if r.metadata
        .iter()
        .any(|(k, v)| k.len() > MAX_METADATA_BYTES || v.len() > MAX_METADATA_BYTES)
    {
        return bad(format!(
            "a metadata key or value is longer than {MAX_METADATA_BYTES} bytes"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
