//! The checker at run time: one small task per probed endpoint, one aggregator that owns
//! all health state.
//!
//! Endpoint tasks only probe and report (with jitter, under a shared concurrency limit). The
//! aggregator turns reports into verdicts and least_response_time weights, keeps the table
//! the admin API reads, and publishes changes to the runtime in batches: a thousand
//! endpoints changing at once make one store write and one snapshot, not a thousand. It also
//! follows the config, starting probes for new endpoints and stopping removed ones at once.
//! It never reads verdicts back: the runtime serves what the store holds, this replica's
//! findings included (checker → store → every replica's overlay).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::latency::{self, Smoothed};
use super::metrics::HealthMetrics;
use super::ownership::{Checked, FactUpdate, Owners, ReplicaHealth};

mod replicas;
use super::probe::{ProbeError, Prober};
use super::targets::{probes_change, targets};
use super::verdict::Tracker;
use crate::cache::Inputs;
use crate::config::model::HealthCheck;
use crate::control::Controller;
use crate::overlay::{EndpointKey, Verdict};

/// What the admin API shows for a probed endpoint.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProbeStatus {
    pub verdict: Option<Verdict>,
    /// Latency of the last probe, in milliseconds.
    pub last_latency_ms: Option<f64>,
    /// Smoothed latency (what least_response_time weighs), in milliseconds.
    pub smoothed_latency_ms: Option<f64>,
    pub last_error: Option<String>,
    #[serde(with = "crate::util::unix_millis_opt")]
    pub last_probe: Option<SystemTime>,
    pub consecutive_failures: u32,
}

/// The checker's current view of every probed endpoint, shared with the admin API.
#[derive(Clone, Default)]
pub struct HealthTable(Arc<RwLock<BTreeMap<EndpointKey, ProbeStatus>>>);

impl HealthTable {
    pub fn get(&self, key: &EndpointKey) -> Option<ProbeStatus> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }
}

#[derive(Debug, Clone)]
pub struct HealthOptions {
    /// Probes in flight at once, across all endpoints.
    pub concurrency: usize,
    pub metrics: HealthMetrics,
}

impl Default for HealthOptions {
    fn default() -> HealthOptions {
        HealthOptions {
            concurrency: 1024,
            metrics: HealthMetrics::default(),
        }
    }
}

/// Starts the checker of one replica (with one flotilla, the only one); it runs until
/// `shutdown`. It probes the endpoints it owns (all of them while `replica.owners` is
/// `None`) and publishes what it finds; the runtime serves what every replica published.
pub fn spawn(
    controller: Arc<Controller>,
    options: HealthOptions,
    replica: ReplicaHealth,
    shutdown: CancellationToken,
) -> HealthTable {
    let table = HealthTable::default();
    let (tx, rx) = mpsc::channel(4096);
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a plain HTTP client always builds");
    let aggregator = Aggregator {
        controller,
        table: table.clone(),
        reports: tx,
        permits: Arc::new(Semaphore::new(options.concurrency.max(1))),
        http,
        targets: HashMap::new(),
        next_id: 0,
        metrics: options.metrics,
        owners: None,
        desired: HashMap::new(),
        publish: replica.publish,
        checked: replica.checked,
    };
    tokio::spawn(aggregator.run(rx, replica.owners, shutdown));
    table
}

/// One probe's outcome, from an endpoint task.
struct Report {
    key: EndpointKey,
    id: u64,
    latency: Duration,
    result: Result<(), ProbeError>,
}

struct Target {
    id: u64,
    spec: Arc<HealthCheck>,
    measured: bool,
    configured_weight: u32,
    task: AbortHandle,
    tracker: Tracker,
    smoothed: Smoothed,
    level: u32,
}

struct Aggregator {
    controller: Arc<Controller>,
    table: HealthTable,
    reports: mpsc::Sender<Report>,
    permits: Arc<Semaphore>,
    http: reqwest::Client,
    targets: HashMap<EndpointKey, Target>,
    next_id: u64,
    metrics: HealthMetrics,
    /// Who probes what (`None`, the store out of reach: this replica probes everything).
    owners: Option<Arc<Owners>>,
    /// Every endpoint with a health check, and whether its weight is measured.
    desired: HashMap<EndpointKey, bool>,
    /// Where this replica's findings go (the runtime, which writes them to the store and
    /// serves what the store holds).
    publish: mpsc::UnboundedSender<FactUpdate>,
    /// Where `desired` goes (the runtime serves facts of these endpoints only).
    checked: tokio::sync::watch::Sender<Checked>,
}

/// What a batch of reports changes in what this replica publishes.
#[derive(Default)]
struct Changes {
    verdicts: BTreeMap<EndpointKey, Option<Verdict>>,
    weights_of: BTreeSet<String>,
}

impl Aggregator {
    async fn run(
        mut self,
        mut reports: mpsc::Receiver<Report>,
        mut owners: tokio::sync::watch::Receiver<Option<Arc<Owners>>>,
        shutdown: CancellationToken,
    ) {
        self.owners = owners.borrow_and_update().clone();
        let mut inputs = self.controller.watch_inputs();
        let mut reconciled: Option<Inputs> = None;
        if let Some(current) = inputs.borrow_and_update().clone() {
            self.reconcile(&current);
            reconciled = Some(current);
        }
        let mut batch = Vec::with_capacity(256);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                changed = inputs.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let current = inputs.borrow_and_update().clone();
                    if let Some(current) = current
                        && probes_change(reconciled.as_ref(), &current)
                    {
                        self.reconcile(&current);
                        reconciled = Some(current);
                    }
                }
                Ok(()) = owners.changed() => {
                    self.owners = owners.borrow_and_update().clone();
                    if let Some(current) = &reconciled {
                        let current = current.clone();
                        self.reconcile(&current);
                    }
                }
                n = reports.recv_many(&mut batch, 1024) => {
                    if n == 0 {
                        break;
                    }
                    let changes = self.absorb(batch.drain(..));
                    self.publish(changes);
                }
            }
        }
        for target in self.targets.values() {
            target.task.abort();
        }
    }

    /// Starts, restarts and stops endpoint tasks to match the config and registrations.
    fn reconcile(&mut self, inputs: &Inputs) {
        let mut desired = targets(&inputs.config, &inputs.overlay);
        let previous = std::mem::replace(
            &mut self.desired,
            desired
                .iter()
                .map(|(k, (_, m, _))| (k.clone(), *m))
                .collect(),
        );
        self.forget(previous);
        if let Some(owners) = &self.owners {
            desired.retain(|k, (_, measured, _)| owners.owns(k, *measured));
        }
        let mut removed = Vec::new();
        self.targets.retain(|key, t| {
            let keep = desired.get(key).is_some_and(|(spec, measured, weight)| {
                **spec == *t.spec && *measured == t.measured && *weight == t.configured_weight
            });
            if !keep {
                t.task.abort();
                removed.push(key.clone());
            }
            keep
        });
        if !removed.is_empty() {
            let mut table = self.table.0.write().unwrap_or_else(|e| e.into_inner());
            for key in &removed {
                table.remove(key);
            }
        }
        let mut started = 0;
        for (key, (spec, measured, weight)) in desired {
            if self.targets.contains_key(&key) {
                continue;
            }
            self.next_id += 1;
            let id = self.next_id;
            let prober = Prober::new(key.address, &spec.probe, spec.tls.as_ref(), &self.http);
            let task = tokio::spawn(probe_loop(
                key.clone(),
                id,
                spec.clone(),
                prober,
                self.reports.clone(),
                self.permits.clone(),
            ))
            .abort_handle();
            self.table
                .0
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.clone(), ProbeStatus::default());
            self.targets.insert(
                key,
                Target {
                    id,
                    spec,
                    measured,
                    configured_weight: weight,
                    task,
                    tracker: Tracker::default(),
                    smoothed: Smoothed::default(),
                    level: 0,
                },
            );
            started += 1;
        }
        if !removed.is_empty() || started > 0 {
            info!(
                started,
                stopped = removed.len(),
                probed = self.targets.len(),
                "health checks updated"
            );
        }
        // An endpoint probed afresh with a new check starts from unknown, everywhere.
        for key in &removed {
            if self.desired.contains_key(key) && self.targets.contains_key(key) {
                let _ = self.publish.send((key.clone(), None));
            }
        }
        let desired = &self.desired;
        self.checked.send_if_modified(|checked| {
            if **checked == *desired {
                return false;
            }
            *checked = Arc::new(desired.clone());
            true
        });
    }

    fn absorb(&mut self, reports: impl Iterator<Item = Report>) -> Changes {
        let mut changes = Changes::default();
        let metrics = &self.metrics;
        let mut table = self.table.0.write().unwrap_or_else(|e| e.into_inner());
        for report in reports {
            let Some(target) = self
                .targets
                .get_mut(&report.key)
                .filter(|t| t.id == report.id)
            else {
                continue; // from a probe that was stopped meanwhile
            };
            let ok = report.result.is_ok();
            metrics.probe(&report.key.cluster, &report.result, report.latency);
            if ok {
                target.smoothed.observe(report.latency);
                if target.measured {
                    changes.weights_of.insert(report.key.cluster.clone());
                }
            }
            let spec = &target.spec;
            if let Some(verdict) =
                target
                    .tracker
                    .record(ok, spec.healthy_threshold, spec.unhealthy_threshold)
            {
                metrics.transition(&report.key.cluster, verdict);
                let word = match verdict {
                    Verdict::Healthy => "healthy",
                    Verdict::Unhealthy => "unhealthy",
                };
                let why = match &report.result {
                    Ok(()) => String::new(),
                    Err(e) => format!(": {e}"),
                };
                crate::events::record(
                    crate::events::NewEvent::new(
                        crate::events::Kind::Health,
                        format!(
                            "{} in {} is {word}{why}",
                            report.key.address, report.key.cluster
                        ),
                    )
                    .cluster(report.key.cluster.clone())
                    .endpoint(report.key.address),
                );
                match &report.result {
                    Ok(()) => info!(cluster = %report.key.cluster, endpoint = %report.key.address,
                        verdict = ?verdict, "endpoint health changed"),
                    Err(e) => warn!(cluster = %report.key.cluster, endpoint = %report.key.address,
                        verdict = ?verdict, error = %e, "endpoint health changed"),
                }
                changes.verdicts.insert(report.key.clone(), Some(verdict));
            }
            let status = table.entry(report.key.clone()).or_default();
            status.verdict = target.tracker.verdict();
            status.last_latency_ms = Some(report.latency.as_secs_f64() * 1000.0);
            status.smoothed_latency_ms = target.smoothed.get().map(|d| d.as_secs_f64() * 1000.0);
            status.last_error = report.result.err().map(|e| e.to_string());
            status.last_probe = Some(SystemTime::now());
            status.consecutive_failures = target.tracker.consecutive_failures();
        }
        changes
    }

    /// Publishes verdict changes and, for least_response_time clusters whose latencies moved,
    /// new weights; nothing is published if no verdict changed and no weight level moved.
    fn publish(&mut self, changes: Changes) {
        let mut weights: BTreeMap<EndpointKey, u32> = BTreeMap::new();
        let mut weights_changed = false;
        for cluster in &changes.weights_of {
            let mut members: Vec<(&EndpointKey, &mut Target)> = self
                .targets
                .iter_mut()
                .filter(|(k, t)| k.cluster == *cluster && t.measured)
                .collect();
            members.sort_by(|a, b| a.0.cmp(b.0));
            let latencies: Vec<Option<Duration>> =
                members.iter().map(|(_, t)| t.smoothed.get()).collect();
            let current: Vec<u32> = members.iter().map(|(_, t)| t.level).collect();
            let levels = latency::levels(&latencies, &current);
            for ((key, target), level) in members.into_iter().zip(levels) {
                weights_changed |= target.level != level;
                target.level = level;
                let w = target
                    .configured_weight
                    .saturating_mul(latency::level_weight(level))
                    .max(1);
                weights.insert(key.clone(), w);
            }
        }
        if changes.verdicts.is_empty() && !weights_changed {
            return;
        }
        // The overlay learns them from the runtime, this replica's like every other's.
        if weights_changed {
            self.publish_facts(changes.verdicts.keys().chain(weights.keys()), &weights);
        } else {
            self.publish_facts(changes.verdicts.keys(), &weights);
        }
    }
}

async fn probe_loop(
    key: EndpointKey,
    id: u64,
    spec: Arc<HealthCheck>,
    mut prober: Prober,
    reports: mpsc::Sender<Report>,
    permits: Arc<Semaphore>,
) {
    // Spread first probes over one interval so that many endpoints never fire together.
    let interval_ms = spec.interval.as_millis() as u64;
    tokio::time::sleep(Duration::from_millis(fastrand::u64(0..interval_ms.max(1)))).await;
    loop {
        let started = Instant::now();
        let result = {
            let Ok(_permit) = permits.acquire().await else {
                return;
            };
            let probe_start = Instant::now();
            let outcome = match tokio::time::timeout(spec.timeout, prober.probe()).await {
                Ok(r) => r,
                Err(_) => Err(ProbeError::Timeout(spec.timeout)),
            };
            (outcome, probe_start.elapsed())
        };
        let (result, latency) = result;
        if reports
            .send(Report {
                key: key.clone(),
                id,
                latency,
                result,
            })
            .await
            .is_err()
        {
            return;
        }
        let jitter_ms = spec.jitter.as_millis() as i64;
        let offset = if jitter_ms > 0 {
            fastrand::i64(-jitter_ms..=jitter_ms)
        } else {
            0
        };
        let next = Duration::from_millis((interval_ms as i64 + offset).max(10) as u64);
        tokio::time::sleep_until((started + next).into()).await;
    }
}
