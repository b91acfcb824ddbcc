//! `GET /api/v1/status` and `flotilla status`: per fleet, the revision served, whether every
//! Envoy took it (see [`super::sync`]) and the rejections traced to the YAML.
//!
//! Read from the controller (what was applied), the cache (which applied config each
//! snapshot version belongs to) and the node registry (what each Envoy acknowledged).

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;

use super::attribution::{self, Rejection};
use super::revision::Revision;
use super::sync::{self, FleetInput, Health, NodeInput, Rules, Sync};
use crate::cache::ResourceType;
use crate::control::Controller;
use crate::overlay::{EndpointKey, EndpointState};
use crate::xds::nodes::{StreamInfo, TypeStatus};

#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    /// The revision of the config served (null: no revision source, or no config yet).
    pub revision: Option<Revision>,
    /// Counts applied configs and revisions since start.
    pub generation: u64,
    #[serde(with = "crate::util::unix_millis_opt")]
    pub applied_at: Option<SystemTime>,
    /// An Envoy waiting this long is OutOfSync.
    pub out_of_sync_after_seconds: u64,
    /// Every fleet is Synced.
    pub synced: bool,
    pub fleets: Vec<FleetStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FleetStatus {
    pub fleet: String,
    /// The revision served to this fleet (the config's; null without a revision source).
    pub revision: Option<String>,
    pub sync: Sync,
    pub health: Health,
    pub nodes: Vec<NodeStatus>,
    pub rejections: Vec<Rejection>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub node: String,
    pub sync: Sync,
    /// The revision of the last snapshot this Envoy acknowledged as a whole (null: none yet,
    /// no revision source, or forgotten).
    pub acked_revision: Option<String>,
}

/// Whether a type's last response is the one the client refused (nothing sent since).
pub fn rejected_now(t: &TypeStatus) -> bool {
    t.last_nack
        .as_ref()
        .is_some_and(|n| t.sent_version.as_deref() == Some(n.version.as_str()))
}

/// The current rejections of one stream, traced to `sources`.
pub fn rejections(stream: &StreamInfo, sources: &crate::translate::Sources) -> Vec<Rejection> {
    stream
        .types
        .iter()
        .filter(|(_, t)| rejected_now(t))
        .filter_map(|(rt, t)| {
            let nack = t.last_nack.as_ref()?;
            Some(attribution::attribute(
                &stream.node_id,
                ResourceType::short_name(*rt),
                crate::render::section(*rt),
                nack,
                sources,
            ))
        })
        .collect()
}

/// The revision label of the applied config a snapshot version belongs to.
pub fn revision_of(controller: &Controller, version: Option<&str>) -> Option<String> {
    controller
        .cache()
        .applied_of(version?)
        .and_then(|a| a.revision.map(|r| r.to_string()))
}

/// The status of every fleet at `now`.
pub fn status(
    controller: &Controller,
    streams: &[StreamInfo],
    now: SystemTime,
    rules: &Rules,
) -> StatusView {
    let applied = controller.applied();
    let config = controller.config();
    let overlay = controller.overlay();
    // Where things were written is worked out only when an Envoy rejected something.
    let rejecting = streams.iter().any(|s| s.types.values().any(rejected_now));
    let sources = match &config {
        Some(c) if rejecting => crate::translate::sources(c),
        _ => Default::default(),
    };
    let health = config
        .as_deref()
        .map(|c| cluster_health(c, &overlay))
        .unwrap_or_default();
    let generation = applied.as_ref().map_or(0, |a| a.generation);
    let applied_at = applied.as_ref().map_or(now, |a| a.at);
    let mut by_fleet: BTreeMap<&str, BTreeMap<&str, Vec<&StreamInfo>>> = BTreeMap::new();
    if let Some(c) = &config {
        for f in c.fleets.keys() {
            by_fleet.entry(f.as_str()).or_default();
        }
    }
    for s in streams {
        by_fleet
            .entry(s.fleet.as_str())
            .or_default()
            .entry(s.node_id.as_str())
            .or_default()
            .push(s);
    }
    let revision = controller.revision();
    let mut fleets = Vec::new();
    for (fleet, nodes) in by_fleet {
        let mut inputs = Vec::new();
        let mut node_status = Vec::new();
        let mut rejected = Vec::new();
        for (node, streams) in nodes {
            let found: Vec<Rejection> = streams
                .iter()
                .flat_map(|s| rejections(s, &sources))
                .collect();
            let input = node_input(controller, &streams, !found.is_empty());
            let acked = streams
                .iter()
                .map(|s| s.acked_snapshot.as_deref())
                .min()
                .flatten();
            node_status.push(NodeStatus {
                node: crate::config::escape_controls(node),
                sync: sync::node(&input, generation, applied_at, now, rules),
                acked_revision: revision_of(controller, acked),
            });
            rejected.extend(found);
            inputs.push(input);
        }
        let clusters = match &config {
            Some(c) => match crate::translate::select_fleet(c, fleet) {
                None => health.values().copied().collect(),
                Some(selection) => selection
                    .clusters
                    .iter()
                    .filter_map(|name| health.get(name.as_str()).copied())
                    .collect(),
            },
            None => Vec::new(),
        };
        let input = FleetInput {
            generation,
            applied_at,
            nodes: inputs,
            clusters,
        };
        let (sync, health) = sync::fleet(&input, now, rules);
        fleets.push(FleetStatus {
            fleet: crate::config::escape_controls(fleet),
            revision: revision.as_ref().map(Revision::label),
            sync,
            health,
            nodes: node_status,
            rejections: rejected,
        });
    }
    StatusView {
        revision,
        generation,
        applied_at: applied.map(|a| a.at),
        out_of_sync_after_seconds: rules.out_of_sync_after.as_secs(),
        synced: fleets.iter().all(|f| f.sync == Sync::Synced),
        fleets,
    }
}

fn node_input(controller: &Controller, streams: &[&StreamInfo], rejected: bool) -> NodeInput {
    let generations: Vec<Option<u64>> = streams
        .iter()
        .map(|s| {
            controller
                .cache()
                .applied_of(&s.snapshot_version)
                .map(|a| a.generation)
        })
        .collect();
    NodeInput {
        in_sync: streams.iter().all(|s| s.in_sync),
        generation: generations.iter().copied().min().flatten(),
        waiting_since: streams
            .iter()
            .flat_map(|s| s.types.values().filter_map(|t| t.awaiting_ack_since))
            .min(),
        connected_at: streams
            .iter()
            .map(|s| s.connected_at)
            .min()
            .unwrap_or(SystemTime::UNIX_EPOCH),
        rejected,
    }
}

/// (unhealthy, total) endpoints of every cluster, once per status.
fn cluster_health<'c>(
    config: &'c crate::config::Config,
    overlay: &crate::overlay::Overlay,
) -> BTreeMap<&'c str, (usize, usize)> {
    config
        .clusters
        .values()
        .map(|c| {
            let mut total = 0;
            let mut bad = 0;
            for (e, _) in overlay.endpoints(c) {
                total += 1;
                let key = EndpointKey::new(c.name.clone(), e.address);
                bad += usize::from(overlay.health(&key) == EndpointState::Unhealthy);
            }
            (c.name.as_str(), (bad, total))
        })
        .collect()
}
