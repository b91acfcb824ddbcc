//! The task that keeps history and the out-of-sync gauge current: every applied config
//! becomes a history entry; once a second the status is computed, the newest entry's outcome
//! set from it, and each new rejection logged and recorded as an event, traced to the YAML.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use super::history::{Entry, History, Outcome};
use super::status::{StatusView, status};
use super::sync::{Rules, Sync};
use crate::control::{AppliedConfig, Controller};
use crate::xds::NodeRegistry;

/// How often status is recomputed for history, events and the gauge.
pub const TICK: Duration = Duration::from_secs(1);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FleetLabels {
    fleet: String,
    sync: &'static str,
}

/// `flotilla_fleet_sync{fleet, sync}`: 1 for the state each fleet is in.
#[derive(Clone, Debug, Default)]
pub struct GitopsMetrics {
    sync: Family<FleetLabels, Gauge>,
}

impl GitopsMetrics {
    pub fn register(registry: &mut Registry) -> GitopsMetrics {
        let m = GitopsMetrics::default();
        registry.register(
            "fleet_sync",
            "Per fleet, 1 for its sync state and 0 for the others (Synced, Progressing, OutOfSync: an Envoy rejected the config or has not acknowledged it within the bound)",
            m.sync.clone(),
        );
        m
    }

    fn set(&self, view: &StatusView) {
        self.sync.clear();
        for f in &view.fleets {
            for state in [Sync::Synced, Sync::Progressing, Sync::OutOfSync] {
                self.sync
                    .get_or_create(&FleetLabels {
                        fleet: f.fleet.clone(),
                        sync: state.name(),
                    })
                    .set(i64::from(f.sync == state));
            }
        }
    }
}

/// History's name for a reload trigger: the config watch and the watched certificate and git files are all `file`.
pub fn trigger_name(trigger: &str) -> &str {
    match trigger {
        "watch" | "files" => "file",
        other => other,
    }
}

fn entry(a: &AppliedConfig) -> Entry {
    Entry {
        id: 0,
        revision: a.revision.clone(),
        at: a
            .at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        trigger: trigger_name(a.trigger).to_string(),
        who: a.revision.as_ref().and_then(|r| r.author.clone()),
        summary: a.summary.clone(),
        outcome: BTreeMap::new(),
    }
}

/// Runs until `shutdown`.
pub async fn follow(
    controller: Arc<Controller>,
    nodes: Arc<NodeRegistry>,
    history: Arc<History>,
    metrics: GitopsMetrics,
    rules: Rules,
    shutdown: CancellationToken,
) {
    let mut applied = controller.watch_applied();
    // The entry this run pushed last: the only one whose outcome it may set (the newest
    // entry loaded from the file is an earlier run's, and its outcome is final).
    let mut current = applied
        .borrow_and_update()
        .clone()
        .map(|a| history.push(entry(&a)));
    let mut seen: BTreeSet<(String, &'static str, u64)> = BTreeSet::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = applied.changed() => {
                if changed.is_err() {
                    return;
                }
                if let Some(a) = applied.borrow_and_update().clone() {
                    current = Some(history.push(entry(&a)));
                }
            }
            _ = tick.tick() => {
                let view = status(&controller, &nodes.streams(), SystemTime::now(), &rules);
                metrics.set(&view);
                report_new_rejections(&view, &mut seen);
                if let Some(id) = current {
                    history.set_outcome(id, outcomes(&view));
                }
            }
        }
    }
}

/// How each fleet took the config, for history.
pub fn outcomes(view: &StatusView) -> BTreeMap<String, Outcome> {
    view.fleets
        .iter()
        .map(|f| {
            let mut by: Vec<String> = f.rejections.iter().map(|r| r.node.clone()).collect();
            by.dedup();
            (
                f.fleet.clone(),
                Outcome {
                    sync: f.sync.name().to_string(),
                    rejected_by: by,
                    rejections: f.rejections.iter().map(|r| r.summary.clone()).collect(),
                },
            )
        })
        .collect()
}

/// Logs each rejection once and records it as an event; forgets those no longer current.
fn report_new_rejections(view: &StatusView, seen: &mut BTreeSet<(String, &'static str, u64)>) {
    let mut current = BTreeSet::new();
    for f in &view.fleets {
        for r in &f.rejections {
            let at =
                r.at.duration_since(UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            let key = (r.node.clone(), r.type_name, at);
            if !seen.contains(&key) {
                tracing::warn!(fleet = %f.fleet, node = %r.node, r#type = r.type_name,
                    revision = f.revision.as_deref().unwrap_or("none"), "{}", r.summary);
                crate::events::record(
                    crate::events::NewEvent::new(crate::events::Kind::Nack, r.summary.clone())
                        .node(r.node.clone()),
                );
            }
            current.insert(key);
        }
    }
    *seen = current;
}

/// Whether every fleet is Synced (what `status --wait` waits for).
pub fn all_synced(view: &StatusView) -> bool {
    view.fleets.iter().all(|f| f.sync == Sync::Synced)
}
