//! The connected Envoys: identity, and per resource type what was sent, what was
//! acknowledged and the last rejection. Entries live exactly as long as their streams, so the
//! registry never grows with Envoys that have gone (go-control-plane's #597).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use serde::Serialize;

use super::protocol::Mode;
use crate::cache::ResourceType;

/// A rejected response, with Envoy's own message.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Nack {
    pub version: String,
    pub message: String,
    #[serde(with = "crate::util::unix_millis")]
    pub at: SystemTime,
    /// The names of the resources the rejected response carried (at most
    /// [`Nack::MAX_RESOURCES`]): with Envoy's message, what traces the NACK to the YAML.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
}

impl Nack {
    /// Resource names kept per NACK.
    pub const MAX_RESOURCES: usize = 100;

    /// The NACK of a response carrying `resources`, with Envoy's `message`.
    pub fn new<'a>(
        version: String,
        message: String,
        resources: impl IntoIterator<Item = &'a str>,
    ) -> Nack {
        Nack {
            version,
            message,
            at: SystemTime::now(),
            resources: resources
                .into_iter()
                .take(Nack::MAX_RESOURCES)
                .map(str::to_string)
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TypeStatus {
    /// The version the last response carried: its `version_info` (SotW) or
    /// `system_version_info` (delta), exactly as sent.
    pub sent_version: Option<String>,
    /// The version of the last response the client acknowledged, exactly as sent. Whether the
    /// client holds the current config is the stream's `in_sync`, judged separately.
    pub acked_version: Option<String>,
    /// Since when the last response has waited for an ACK or NACK (none: not waiting).
    #[serde(with = "crate::util::unix_millis_opt")]
    pub awaiting_ack_since: Option<SystemTime>,
    pub responses: u64,
    pub acks: u64,
    pub nacks: u64,
    /// Boxed: every stream has a status per type, and few have a NACK (88 bytes inline).
    pub last_nack: Option<Box<Nack>>,
}

/// One xDS stream (an ADS stream, or one of the per-type streams of a non-ADS Envoy).
#[derive(Debug, Clone, Serialize)]
pub struct StreamInfo {
    /// This stream's id, unique in this process (set by [`NodeRegistry::register`]).
    pub stream_id: u64,
    /// The id of the connection the stream came on, unique in this process (0: unknown).
    pub connection: u64,
    /// The client's address, as the connection's peer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The SPIFFE ID or DNS name the node is bound to (the client certificate's), None
    /// without mTLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    pub node_id: String,
    pub fleet: String,
    pub envoy_version: String,
    pub mode: Mode,
    pub ads: bool,
    #[serde(with = "crate::util::unix_millis")]
    pub connected_at: SystemTime,
    /// Snapshot version the stream is working towards.
    pub snapshot_version: String,
    /// Nothing left to send and nothing unacknowledged.
    pub in_sync: bool,
    /// The last snapshot version the stream was in sync with: what the client acknowledged
    /// as a whole (kept by [`StreamEntry::update`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acked_snapshot: Option<String>,
    pub types: BTreeMap<ResourceType, TypeStatus>,
    /// The addresses of the Envoy's admin interface, as its node metadata announces it
    /// (bootstraps flotilla writes do): never accepted as registrations.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub envoy_admin: Vec<std::net::SocketAddr>,
}

#[derive(Default)]
pub struct NodeRegistry {
    streams: Mutex<HashMap<u64, StreamInfo>>,
    next_id: AtomicU64,
}

impl NodeRegistry {
    pub fn new() -> Arc<NodeRegistry> {
        Arc::new(NodeRegistry::default())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, StreamInfo>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a stream; it leaves the registry when the returned guard drops. A stream
    /// bound to an identity is refused (Err: the identity holding the node) while its node
    /// id has open streams bound to another: a node cannot be taken over, only reconnected.
    pub fn register(self: &Arc<Self>, mut info: StreamInfo) -> Result<StreamEntry, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        info.stream_id = id;
        let mut streams = self.lock();
        if let Some(claim) = &info.identity {
            let holder = streams
                .values()
                .filter(|s| s.node_id == info.node_id)
                .find_map(|s| s.identity.as_ref().filter(|held| *held != claim));
            if let Some(holder) = holder {
                return Err(holder.clone());
            }
        }
        streams.insert(id, info);
        drop(streams);
        Ok(StreamEntry {
            registry: self.clone(),
            id,
        })
    }

    /// The admin interfaces of every connected Envoy that announced one.
    pub fn envoy_admins(&self) -> std::collections::HashSet<std::net::SocketAddr> {
        self.lock()
            .values()
            .flat_map(|s| s.envoy_admin.iter().copied())
            .collect()
    }

    /// Per fleet: how many nodes have a stream open, and how many of those are not in sync
    /// on every stream (a node counts in the fleet of its oldest stream). Counted under the
    /// lock without copying any stream's state: the per-fleet gauges ask once a second, and
    /// copying 10,000 streams' state for them was 8 % of flotilla's CPU while a change
    /// reached those streams.
    pub fn fleet_counts(&self) -> Vec<FleetCount> {
        fleet_counts(self.lock().values())
    }

    /// Every open stream, ordered by node id.
    pub fn streams(&self) -> Vec<StreamInfo> {
        let mut out: Vec<StreamInfo> = self.lock().values().cloned().collect();
        out.sort_by(|a, b| (&a.node_id, a.connected_at).cmp(&(&b.node_id, b.connected_at)));
        out
    }
}

/// One fleet's nodes, as [`NodeRegistry::fleet_counts`] counts them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetCount {
    pub fleet: String,
    pub nodes: usize,
    pub out_of_sync: usize,
}

/// Counts [`NodeRegistry::fleet_counts`] returns, over any streams.
pub(crate) fn fleet_counts<'a>(
    streams: impl ExactSizeIterator<Item = &'a StreamInfo>,
) -> Vec<FleetCount> {
    let mut by_node: HashMap<&str, (&str, SystemTime, bool)> =
        HashMap::with_capacity(streams.len());
    for s in streams {
        let node = by_node
            .entry(&s.node_id)
            .or_insert((&s.fleet, s.connected_at, true));
        if s.connected_at < node.1 {
            (node.0, node.1) = (&s.fleet, s.connected_at);
        }
        node.2 &= s.in_sync;
    }
    let mut counts: HashMap<&str, FleetCount> = HashMap::new();
    for (fleet, _, in_sync) in by_node.into_values() {
        let c = counts.entry(fleet).or_insert_with(|| FleetCount {
            fleet: fleet.to_string(),
            ..FleetCount::default()
        });
        c.nodes += 1;
        c.out_of_sync += usize::from(!in_sync);
    }
    counts.into_values().collect()
}

/// A stream's handle on its registry entry.
pub struct StreamEntry {
    registry: Arc<NodeRegistry>,
    id: u64,
}

impl StreamEntry {
    pub fn update(&self, f: impl FnOnce(&mut StreamInfo)) {
        if let Some(info) = self.registry.lock().get_mut(&self.id) {
            f(info);
            if info.in_sync && info.acked_snapshot.as_ref() != Some(&info.snapshot_version) {
                info.acked_snapshot = Some(info.snapshot_version.clone());
            }
        }
    }

    pub fn update_type(&self, t: ResourceType, f: impl FnOnce(&mut TypeStatus)) {
        self.update(|info| f(info.types.entry(t).or_default()));
    }

    /// A response of type `t` went out carrying `version` on the wire.
    pub(crate) fn sent(&self, t: ResourceType, version: &str) {
        self.update_type(t, |s| {
            s.responses += 1;
            s.sent_version = Some(version.to_string());
            s.awaiting_ack_since = Some(SystemTime::now());
        });
    }

    /// The client acknowledged the response of type `t` that carried `version`. (The one
    /// place an ACK is recorded per stream.)
    pub(crate) fn acked(&self, t: ResourceType, version: String) {
        self.update_type(t, |s| {
            s.acks += 1;
            s.acked_version = Some(version);
            s.awaiting_ack_since = None;
        });
    }

    /// The client rejected the response of type `t` that carried `version`, saying
    /// `message` (already cut to its limit). (The one place a NACK is recorded per stream.)
    /// A NACK of the response that carried `resources` (the names attribution maps to YAML).
    pub(crate) fn nacked<'a>(
        &self,
        t: ResourceType,
        version: String,
        message: String,
        resources: impl IntoIterator<Item = &'a str>,
    ) {
        let nack = Nack::new(version, message, resources);
        self.update_type(t, |s| {
            s.nacks += 1;
            s.awaiting_ack_since = None;
            s.last_nack = Some(Box::new(nack));
        });
    }
}

impl Drop for StreamEntry {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(node: &str, identity: Option<&str>) -> StreamInfo {
        StreamInfo {
            stream_id: 0,
            connection: 0,
            peer: None,
            identity: identity.map(str::to_string),
            node_id: node.into(),
            fleet: "edge".into(),
            envoy_version: String::new(),
            mode: Mode::Sotw,
            ads: true,
            connected_at: SystemTime::now(),
            snapshot_version: String::new(),
            in_sync: false,
            acked_snapshot: None,
            types: Default::default(),
            envoy_admin: Vec::new(),
        }
    }

    #[test]
    fn a_node_bound_to_one_identity_cannot_be_claimed_by_another() {
        let r = NodeRegistry::new();
        let a = r
            .register(info("e1", Some("spiffe://t/fleet/edge")))
            .unwrap();
        // The same identity reconnecting (or a second stream of the same Envoy) is welcome.
        let again = r
            .register(info("e1", Some("spiffe://t/fleet/edge")))
            .unwrap();
        let other = r.register(info("e1", Some("spiffe://t/fleet/edge/node/e1")));
        assert_eq!(other.err().as_deref(), Some("spiffe://t/fleet/edge"));
        // Other node ids, and streams without identities (no mTLS), are not affected.
        assert!(
            r.register(info("e2", Some("spiffe://t/fleet/edge/node/e2")))
                .is_ok()
        );
        assert!(r.register(info("e1", None)).is_ok());
        drop((a, again));
        assert!(
            r.register(info("e1", Some("spiffe://t/fleet/edge/node/e1")))
                .is_ok()
        );
    }
}
