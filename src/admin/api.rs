//! The read side of the admin API: `/api/v1/state` and `/api/v1/nodes`.

use std::collections::BTreeMap;
use std::time::SystemTime;

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::AdminState;
use crate::cache::ResourceType;
use crate::config::model::{Affinity, Probe};
use crate::control::Reload;
use crate::health::ProbeStatus;
use crate::overlay::EndpointKey;
use crate::runtime::LeaseView;
use crate::xds::Mode;
use crate::xds::nodes::{StreamInfo, TypeStatus};

#[derive(Serialize)]
pub struct StateView {
    pub config: ConfigView,
    pub clusters: Vec<ClusterView>,
    pub listeners: Vec<ListenerView>,
    /// Live registrations (leases), with the time each has left.
    pub registrations: Vec<LeaseView>,
}

#[derive(Serialize)]
pub struct ConfigView {
    pub path: String,
    /// Version being served: a content hash of every resource (None before a valid config).
    pub version: Option<String>,
    /// The revision of the config served (git commit, `--revision-file`, `$FLOTILLA_REVISION`).
    pub revision: Option<crate::gitops::revision::Revision>,
    pub last_reload: Option<Reload>,
}

#[derive(Serialize)]
pub struct ClusterView {
    pub name: String,
    pub policy: &'static str,
    /// `http`, `tcp`, `grpc`, or null when flotilla does not probe this cluster.
    pub health_check: Option<&'static str>,
    pub affinity: Option<&'static str>,
    pub endpoints: Vec<EndpointView>,
}

#[derive(Serialize)]
pub struct EndpointView {
    pub address: String,
    /// The weight Envoy uses (an override or least_response_time may differ from the config).
    pub weight: u32,
    pub configured_weight: u32,
    pub zone: Option<String>,
    pub priority: u32,
    /// `healthy`, `unhealthy`, or `unknown` (not probed, or no verdict yet; served).
    pub health: &'static str,
    pub draining: bool,
    /// `config` or `registration`.
    pub source: &'static str,
    /// What the active checker last saw (null when the cluster is not probed).
    pub probe: Option<ProbeStatus>,
}

#[derive(Serialize)]
pub struct ListenerView {
    pub name: String,
    pub address: String,
    pub routes: usize,
}

pub async fn state(State(s): State<AdminState>) -> Json<StateView> {
    Json(state_view(&s))
}

pub fn state_view(s: &AdminState) -> StateView {
    let config = s.controller.config();
    let overlay = s.controller.overlay();
    let mut clusters = Vec::new();
    let mut listeners = Vec::new();
    if let Some(config) = &config {
        for c in config.clusters.values() {
            let endpoints = overlay
                .endpoints(c)
                .map(|(e, source)| {
                    let key = EndpointKey::new(c.name.clone(), e.address);
                    EndpointView {
                        address: e.address.to_string(),
                        weight: overlay.weight(&key, e.weight),
                        configured_weight: e.weight,
                        zone: e.zone.clone(),
                        priority: e.priority,
                        health: overlay.health(&key).name(),
                        draining: overlay.is_draining(&key),
                        source: source.name(),
                        probe: s.health.get(&key),
                    }
                })
                .collect();
            clusters.push(ClusterView {
                name: c.name.clone(),
                policy: c.policy.name(),
                health_check: c.health_check.as_ref().map(|h| match h.probe {
                    Probe::Http(_) => "http",
                    Probe::Tcp(_) => "tcp",
                    Probe::Grpc(_) => "grpc",
                }),
                affinity: c.affinity.as_ref().map(|a| match a {
                    Affinity::Cookie(_) => "cookie",
                    Affinity::Header(_) => "header",
                    Affinity::SourceIp => "source_ip",
                    Affinity::StickyCookie { .. } => "sticky_cookie",
                }),
                endpoints,
            });
        }
        for l in config.listeners.values() {
            listeners.push(ListenerView {
                name: l.name.clone(),
                address: l
                    .address()
                    .map_or_else(|| format!("xds:///{}", l.name), |a| a.to_string()),
                routes: l.routes().count(),
            });
        }
    }
    StateView {
        config: ConfigView {
            path: s.config_path.display().to_string(),
            version: s.controller.version(),
            revision: s.controller.revision(),
            last_reload: s.controller.last_reload(),
        },
        clusters,
        listeners,
        registrations: s.runtime.leases(),
    }
}

/// One connected client: an ADS stream, or the per-type streams a non-ADS Envoy opened on
/// one connection. Two clients that claim the same node id (two Envoys, or an Envoy and its
/// replacement) are two entries, each with its own version, mode and counts.
#[derive(Serialize)]
pub struct NodeView {
    pub node_id: String,
    /// The entry's id: its first stream's (unique in this flotilla process).
    pub stream_id: u64,
    /// Every stream of the entry.
    pub stream_ids: Vec<u64>,
    /// The id of the connection the streams came on (unique in this flotilla process).
    pub connection: u64,
    /// The client's address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The SPIFFE ID (or DNS name, by an identity DNS pattern) of the client certificate the
    /// node is bound to (xDS over mTLS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    pub fleet: String,
    pub envoy_version: String,
    pub mode: Mode,
    pub ads: bool,
    #[serde(with = "crate::util::unix_millis")]
    pub connected_since: SystemTime,
    pub streams: usize,
    /// The snapshot version this Envoy is being brought to.
    pub snapshot_version: String,
    /// Nothing left to send and every response acknowledged.
    pub in_sync: bool,
    /// The revision of the last snapshot this Envoy acknowledged as a whole.
    pub acked_revision: Option<String>,
    /// Its current rejections, traced to the YAML.
    pub rejections: Vec<crate::gitops::attribution::Rejection>,
    pub types: BTreeMap<&'static str, TypeStatus>,
}

pub async fn nodes(State(s): State<AdminState>) -> Json<Vec<NodeView>> {
    use crate::gitops::status;
    let streams = s.nodes.streams();
    let rejecting = streams
        .iter()
        .any(|st| st.types.values().any(status::rejected_now));
    let sources = match s.controller.config() {
        Some(c) if rejecting => crate::translate::sources(&c),
        _ => Default::default(),
    };
    // Per stream: the snapshot it acknowledged (None if it has not), and its rejections.
    let mut per_stream: BTreeMap<u64, (Option<String>, Vec<_>)> = BTreeMap::new();
    for st in &streams {
        let rejections = if rejecting {
            status::rejections(st, &sources)
        } else {
            Vec::new()
        };
        per_stream.insert(st.stream_id, (st.acked_snapshot.clone(), rejections));
    }
    let mut views = node_views(streams);
    // Per client (one view): the oldest snapshot every one of its streams acknowledged.
    for v in &mut views {
        let mut acked: Option<Vec<&str>> = Some(Vec::new());
        for id in &v.stream_ids {
            if let Some((a, r)) = per_stream.get(id) {
                match (a.as_deref(), acked.as_mut()) {
                    (Some(a), Some(all)) => all.push(a),
                    _ => acked = None,
                }
                v.rejections.extend(r.iter().cloned());
            }
        }
        let oldest = acked.and_then(|a| a.into_iter().min());
        v.acked_revision = status::revision_of(&s.controller, oldest);
    }
    Json(views)
}

/// Groups streams into clients: an ADS stream is one; the per-type streams of one node id on
/// one connection are one. Ordered by node id, then by when each connected.
pub fn node_views(mut streams: Vec<StreamInfo>) -> Vec<NodeView> {
    streams.sort_by_key(|s| s.stream_id);
    let mut by_client: BTreeMap<(String, u64, u64), NodeView> = BTreeMap::new();
    for s in streams {
        let key = (
            s.node_id.clone(),
            s.connection,
            if s.ads || s.connection == 0 {
                s.stream_id
            } else {
                0
            },
        );
        let view = by_client.entry(key).or_insert_with(|| NodeView {
            node_id: s.node_id.clone(),
            stream_id: s.stream_id,
            stream_ids: Vec::new(),
            connection: s.connection,
            peer: s.peer.clone(),
            identity: s.identity.clone(),
            fleet: s.fleet.clone(),
            envoy_version: s.envoy_version.clone(),
            mode: s.mode,
            ads: s.ads,
            connected_since: s.connected_at,
            streams: 0,
            snapshot_version: s.snapshot_version.clone(),
            in_sync: true,
            acked_revision: None,
            rejections: Vec::new(),
            types: BTreeMap::new(),
        });
        view.streams += 1;
        view.stream_ids.push(s.stream_id);
        view.in_sync &= s.in_sync;
        view.connected_since = view.connected_since.min(s.connected_at);
        for (t, status) in s.types {
            view.types.insert(ResourceType::short_name(t), status);
        }
    }
    let mut views: Vec<NodeView> = by_client.into_values().collect();
    views.sort_by(|a, b| {
        (&a.node_id, a.connected_since, a.stream_id).cmp(&(
            &b.node_id,
            b.connected_since,
            b.stream_id,
        ))
    });
    views
}

#[derive(serde::Deserialize)]
pub struct EventsQuery {
    #[serde(default)]
    since: u64,
}

#[derive(Serialize)]
pub struct EventsView {
    /// The newest event id; lower than a client's `since` only if flotilla restarted.
    pub latest_id: u64,
    #[serde(with = "crate::util::unix_millis")]
    pub started_at: SystemTime,
    pub events: Vec<crate::events::Event>,
}

/// Recent events, oldest first; `?since=<id>` returns only newer ones.
pub async fn events(
    axum::extract::Query(q): axum::extract::Query<EventsQuery>,
) -> Json<EventsView> {
    Json(EventsView {
        latest_id: crate::events::latest_id(),
        started_at: crate::events::started_at(),
        events: crate::events::since(q.since),
    })
}

/// What every Envoy reports about the traffic it forwards, per cluster and endpoint, over the
/// last [`crate::traffic::WINDOW_SECONDS`]: the view precomputed each second, never computed
/// per request.
pub async fn traffic(State(s): State<AdminState>) -> Json<crate::traffic::TrafficView> {
    Json(crate::traffic::TrafficView::clone(&s.traffic.latest()))
}

#[cfg(test)]
mod node_view_tests {
    use super::*;
    use crate::xds::nodes::StreamInfo;

    fn stream(id: u64, node: &str, connection: u64, ads: bool, mode: Mode) -> StreamInfo {
        StreamInfo {
            stream_id: id,
            connection,
            peer: Some(format!("127.0.0.1:{}", 40000 + connection)),
            identity: None,
            node_id: node.into(),
            fleet: "edge".into(),
            envoy_version: String::new(),
            mode,
            ads,
            connected_at: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(id),
            snapshot_version: format!("v{id}"),
            in_sync: id.is_multiple_of(2),
            acked_snapshot: None,
            envoy_admin: Vec::new(),
            types: Default::default(),
        }
    }

    /// Issue 21 point 7: two streams sharing a node id merged into one entry, showing one
    /// stream's version, the other's mode and the ACK counts of both.
    #[test]
    fn clients_sharing_a_node_id_are_separate_entries() {
        let mut a = stream(1, "e1", 1, true, Mode::Sotw);
        a.types.insert(
            ResourceType::Cluster,
            TypeStatus {
                acks: 3,
                ..TypeStatus::default()
            },
        );
        let mut b = stream(2, "e1", 2, true, Mode::Delta);
        b.types.insert(
            ResourceType::Cluster,
            TypeStatus {
                acks: 5,
                ..TypeStatus::default()
            },
        );
        let views = node_views(vec![b, a]);
        let got: Vec<_> = views
            .iter()
            .map(|v| {
                (
                    v.node_id.as_str(),
                    v.stream_id,
                    v.connection,
                    v.mode,
                    v.snapshot_version.as_str(),
                    v.types["cds"].acks,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("e1", 1, 1, Mode::Sotw, "v1", 3),
                ("e1", 2, 2, Mode::Delta, "v2", 5)
            ]
        );
        assert_eq!(views[0].peer.as_deref(), Some("127.0.0.1:40001"));
    }

    /// The per-type streams of one non-ADS Envoy (one connection) stay one entry.
    #[test]
    fn the_per_type_streams_of_one_connection_are_one_entry() {
        let views = node_views(vec![
            stream(3, "e2", 7, false, Mode::Sotw),
            stream(4, "e2", 7, false, Mode::Sotw),
            stream(5, "e2", 8, false, Mode::Sotw),
        ]);
        let got: Vec<_> = views
            .iter()
            .map(|v| (v.stream_ids.clone(), v.streams, v.in_sync))
            .collect();
        assert_eq!(got, [(vec![3, 4], 2, false), (vec![5], 1, false)]);
    }
}
