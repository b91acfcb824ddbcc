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

/// One connected Envoy (all its streams: one for ADS, up to four otherwise).
#[derive(Serialize)]
pub struct NodeView {
    pub node_id: String,
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
    // Per node: the snapshot every stream acknowledged (None if one has not), rejections.
    let mut extra: BTreeMap<String, (Vec<Option<&str>>, Vec<_>)> = BTreeMap::new();
    for st in &streams {
        let e = extra.entry(st.node_id.clone()).or_default();
        e.0.push(st.acked_snapshot.as_deref());
        if rejecting {
            e.1.extend(status::rejections(st, &sources));
        }
    }
    let revisions: BTreeMap<String, (Option<String>, Vec<_>)> = extra
        .into_iter()
        .map(|(n, (acked, r))| {
            let all: Option<Vec<&str>> = acked.into_iter().collect();
            let oldest = all.and_then(|a| a.into_iter().min());
            (n, (status::revision_of(&s.controller, oldest), r))
        })
        .collect();
    let mut views = node_views(streams);
    for v in &mut views {
        if let Some((revision, rejections)) = revisions.get(&v.node_id) {
            v.acked_revision.clone_from(revision);
            v.rejections.clone_from(rejections);
        }
    }
    Json(views)
}

pub fn node_views(streams: Vec<StreamInfo>) -> Vec<NodeView> {
    let mut by_node: BTreeMap<String, NodeView> = BTreeMap::new();
    for s in streams {
        let view = by_node
            .entry(s.node_id.clone())
            .or_insert_with(|| NodeView {
                node_id: s.node_id.clone(),
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
        view.in_sync &= s.in_sync;
        view.connected_since = view.connected_since.min(s.connected_at);
        for (t, status) in s.types {
            view.types.insert(ResourceType::short_name(t), status);
        }
    }
    by_node.into_values().collect()
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
