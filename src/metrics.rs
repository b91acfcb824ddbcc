//! Prometheus metrics, recorded where things happen and served by the admin server.
//!
//! One process-wide registry (prometheus-client): every subsystem records into it and `/metrics`
//! encodes it. Label sets are small and bounded: resource types, modes, fleets, results,
//! clusters.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::cache::ResourceType;
use crate::control::ReloadResult;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StreamLabels {
    /// `ads`, or the one type a per-type stream carries.
    pub(crate) r#type: &'static str,
    pub(crate) mode: &'static str,
    pub(crate) fleet: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabels {
    r#type: &'static str,
    mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FleetLabel {
    fleet: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeLabels {
    cluster: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabel {
    cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransitionLabels {
    cluster: String,
    to: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    cluster: String,
    /// healthy, unhealthy, unknown (not probed or no verdict yet: served), draining.
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

pub struct Metrics {
    registry: Registry,
    config_reloads: Family<ResultLabel, Counter>,
    config_version: Family<VersionLabel, Gauge>,
    last_reload_ok: Gauge,
    nodes: Family<FleetLabel, Gauge>,
    nodes_out_of_sync: Family<FleetLabel, Gauge>,
    streams: Family<StreamLabels, Gauge>,
    responses: Family<TypeLabels, Counter>,
    acks: Family<TypeLabels, Counter>,
    nacks: Family<TypeLabels, Counter>,
    push_latency: Family<TypeLabels, Histogram>,
    probes: Family<ProbeLabels, Counter>,
    probe_duration: Family<ClusterLabel, Histogram>,
    transitions: Family<TransitionLabels, Counter>,
    endpoints: Family<EndpointLabels, Gauge>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("flotilla");
        let build: Family<BuildLabels, Gauge> = Family::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "flotilla build, as a label", build);
        let m = Metrics {
            config_reloads: Family::default(),
            config_version: Family::default(),
            last_reload_ok: Gauge::default(),
            nodes: Family::default(),
            nodes_out_of_sync: Family::default(),
            streams: Family::default(),
            responses: Family::default(),
            acks: Family::default(),
            nacks: Family::default(),
            push_latency: Family::new_with_constructor(|| {
                // 1 ms … ~33 s
                Histogram::new(exponential_buckets(0.001, 2.0, 16))
            }),
            probes: Family::default(),
            probe_duration: Family::new_with_constructor(|| {
                // 0.25 ms … ~8 s
                Histogram::new(exponential_buckets(0.00025, 2.0, 16))
            }),
            transitions: Family::default(),
            endpoints: Family::default(),
            registry,
        };
        let mut m = m;
        m.registry.register(
            "config_reloads",
            "Attempts to load the configuration, by result (applied, unchanged, invalid)",
            m.config_reloads.clone(),
        );
        m.registry.register(
            "config_version_info",
            "The live config version (content hash of every resource), as a label",
            m.config_version.clone(),
        );
        m.registry.register(
            "config_last_reload_successful",
            "1 if the last attempt to load the config succeeded (applied or unchanged), else 0",
            m.last_reload_ok.clone(),
        );
        m.registry.register(
            "xds_nodes",
            "Connected Envoys (distinct node ids), by fleet",
            m.nodes.clone(),
        );
        m.registry.register(
            "xds_nodes_out_of_sync",
            "Connected Envoys not running the current snapshot (pending, or rejected it), by fleet",
            m.nodes_out_of_sync.clone(),
        );
        m.registry.register(
            "xds_streams",
            "Open xDS streams, by type (ads or the type of a per-type stream), mode and fleet",
            m.streams.clone(),
        );
        m.registry.register(
            "xds_responses",
            "xDS responses sent, by resource type and mode",
            m.responses.clone(),
        );
        m.registry.register(
            "xds_acks",
            "xDS responses acknowledged by Envoy",
            m.acks.clone(),
        );
        m.registry.register(
            "xds_nacks",
            "xDS responses rejected by Envoy",
            m.nacks.clone(),
        );
        m.registry.register(
            "health_probes",
            "Active health probes run by flotilla, by cluster and result (ok, failed, timeout)",
            m.probes.clone(),
        );
        m.registry.register(
            "health_probe_duration_seconds",
            "Latency of active health probes, by cluster",
            m.probe_duration.clone(),
        );
        m.registry.register(
            "health_transitions",
            "Endpoint health verdict changes, by cluster and new verdict",
            m.transitions.clone(),
        );
        m.registry.register(
            "endpoints",
            "Endpoints by cluster and state (healthy, unhealthy, unknown, draining)",
            m.endpoints.clone(),
        );
        m.registry.register(
            "xds_push_latency_seconds",
            "From a snapshot's creation to Envoy's ACK of the response carrying it",
            m.push_latency.clone(),
        );
        m
    }

    /// Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    pub fn config_reloads(&self, result: ReloadResult) {
        self.last_reload_ok
            .set(i64::from(result != ReloadResult::Invalid));
        self.config_reloads
            .get_or_create(&ResultLabel {
                result: result.as_str(),
            })
            .inc();
    }

    pub fn config_version(&self, version: &str) {
        self.config_version.clear();
        self.config_version
            .get_or_create(&VersionLabel {
                version: version.to_string(),
            })
            .set(1);
    }

    /// Counts an open stream until the returned guard drops.
    pub(crate) fn stream_opened(&'static self, labels: StreamLabels) -> StreamGauge {
        self.streams.get_or_create(&labels).inc();
        StreamGauge { labels }
    }

    pub(crate) fn response_sent(&self, t: ResourceType, mode: &'static str) {
        self.responses
            .get_or_create(&TypeLabels {
                r#type: t.short_name(),
                mode,
            })
            .inc();
    }

    pub(crate) fn ack(
        &self,
        t: ResourceType,
        mode: &'static str,
        since_snapshot: Option<Duration>,
    ) {
        let labels = TypeLabels {
            r#type: t.short_name(),
            mode,
        };
        self.acks.get_or_create(&labels).inc();
        if let Some(d) = since_snapshot {
            self.push_latency
                .get_or_create(&labels)
                .observe(d.as_secs_f64());
        }
    }

    pub(crate) fn nack(&self, t: ResourceType, mode: &'static str) {
        self.nacks
            .get_or_create(&TypeLabels {
                r#type: t.short_name(),
                mode,
            })
            .inc();
    }
}

impl Metrics {
    pub(crate) fn probe(
        &self,
        cluster: &str,
        result: &Result<(), crate::health::ProbeError>,
        latency: Duration,
    ) {
        let result = match result {
            Ok(()) => "ok",
            Err(crate::health::ProbeError::Timeout(_)) => "timeout",
            Err(_) => "failed",
        };
        self.probes
            .get_or_create(&ProbeLabels {
                cluster: cluster.to_string(),
                result,
            })
            .inc();
        self.probe_duration
            .get_or_create(&ClusterLabel {
                cluster: cluster.to_string(),
            })
            .observe(latency.as_secs_f64());
    }

    pub(crate) fn health_transition(&self, cluster: &str, to: crate::translate::Verdict) {
        self.transitions
            .get_or_create(&TransitionLabels {
                cluster: cluster.to_string(),
                to: match to {
                    crate::translate::Verdict::Healthy => "healthy",
                    crate::translate::Verdict::Unhealthy => "unhealthy",
                },
            })
            .inc();
    }

    /// Recomputes the endpoint gauges from what is being served.
    pub(crate) fn endpoints(
        &self,
        config: &crate::config::Config,
        overlay: &crate::translate::Overlay,
    ) {
        use crate::translate::{EndpointKey, Verdict};
        self.endpoints.clear();
        for c in config.clusters.values() {
            let registered = overlay
                .registered
                .get(&c.name)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let mut counts = [0i64; 4];
            for e in c.endpoints.iter().chain(registered) {
                let key = EndpointKey::new(c.name.clone(), e.address);
                let i = if overlay.draining.contains(&key) {
                    3
                } else {
                    match overlay.verdicts.get(&key) {
                        Some(Verdict::Healthy) => 0,
                        Some(Verdict::Unhealthy) => 1,
                        None => 2,
                    }
                };
                counts[i] += 1;
            }
            for (state, n) in ["healthy", "unhealthy", "unknown", "draining"]
                .into_iter()
                .zip(counts)
            {
                self.endpoints
                    .get_or_create(&EndpointLabels {
                        cluster: c.name.clone(),
                        state,
                    })
                    .set(n);
            }
        }
    }
}

impl Metrics {
    /// Sets the per-fleet node gauges from (fleet, in sync) of every connected Envoy.
    pub fn nodes<'a>(&self, nodes: impl IntoIterator<Item = (&'a str, bool)>) {
        let mut counts: std::collections::BTreeMap<&str, (i64, i64)> =
            std::collections::BTreeMap::new();
        for (fleet, in_sync) in nodes {
            let c = counts.entry(fleet).or_default();
            c.0 += 1;
            c.1 += i64::from(!in_sync);
        }
        self.nodes.clear();
        self.nodes_out_of_sync.clear();
        for (fleet, (n, out)) in counts {
            let label = FleetLabel {
                fleet: fleet.to_string(),
            };
            self.nodes.get_or_create(&label).set(n);
            self.nodes_out_of_sync.get_or_create(&label).set(out);
        }
    }
}

/// Decrements the open-stream gauge when a stream ends.
pub(crate) struct StreamGauge {
    labels: StreamLabels,
}

impl Drop for StreamGauge {
    fn drop(&mut self) {
        get().streams.get_or_create(&self.labels).dec();
    }
}
