//! Prometheus metrics, recorded where things happen and served by the admin server.
//!
//! One process-wide registry (prometheus-client): every subsystem records into it and `/metrics`
//! encodes it. Label sets are small and bounded: resource types, modes, fleets, results,
//! clusters.

use std::sync::LazyLock;
use std::sync::atomic::AtomicU64;
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

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabels {
    cluster: String,
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointResultLabels {
    cluster: String,
    endpoint: String,
    /// success, error (as Envoy's load reports count them: error = 5xx or no response).
    result: &'static str,
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
    fleets_seen: std::sync::Mutex<std::collections::BTreeSet<String>>,
    streams: Family<StreamLabels, Gauge>,
    responses: Family<TypeLabels, Counter>,
    acks: Family<TypeLabels, Counter>,
    nacks: Family<TypeLabels, Counter>,
    push_latency: Family<TypeLabels, Histogram>,
    probes: Family<ProbeLabels, Counter>,
    probe_duration: Family<ClusterLabel, Histogram>,
    transitions: Family<TransitionLabels, Counter>,
    endpoints: Family<EndpointLabels, Gauge>,
    upstream_requests: Family<ClassLabels, Counter>,
    upstream_retries: Family<ClusterLabel, Counter>,
    upstream_duration: Family<ClusterLabel, MergedHistogram>,
    upstream_active_requests: Family<ClusterLabel, Gauge<f64, AtomicU64>>,
    upstream_active_connections: Family<ClusterLabel, Gauge<f64, AtomicU64>>,
    upstream_ejections: Family<ClusterLabel, Gauge<f64, AtomicU64>>,
    endpoint_requests: Family<EndpointResultLabels, Counter>,
    sink_streams: Gauge,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// Fleets remembered for the node gauges (fleet names come from Envoys: bounded on purpose).
pub const MAX_FLEETS: usize = 1000;

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
            fleets_seen: std::sync::Mutex::default(),
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
            upstream_requests: Family::default(),
            upstream_retries: Family::default(),
            upstream_duration: Family::default(),
            upstream_active_requests: Family::default(),
            upstream_active_connections: Family::default(),
            upstream_ejections: Family::default(),
            endpoint_requests: Family::default(),
            sink_streams: Gauge::default(),
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
            "upstream_requests",
            "Upstream requests completed by every Envoy, by cluster and response class",
            m.upstream_requests.clone(),
        );
        m.registry.register(
            "upstream_retries",
            "Upstream request retries by every Envoy, by cluster",
            m.upstream_retries.clone(),
        );
        m.registry.register(
            "upstream_request_duration_seconds",
            "Upstream request time across every Envoy (Envoy's upstream_rq_time), by cluster",
            m.upstream_duration.clone(),
        );
        m.registry.register(
            "upstream_active_requests",
            "Requests in flight to a cluster, summed over every Envoy",
            m.upstream_active_requests.clone(),
        );
        m.registry.register(
            "upstream_active_connections",
            "Open upstream connections to a cluster, summed over every Envoy",
            m.upstream_active_connections.clone(),
        );
        m.registry.register(
            "upstream_ejections_active",
            "Hosts currently ejected by outlier detection, summed over every Envoy",
            m.upstream_ejections.clone(),
        );
        m.registry.register(
            "endpoint_requests",
            "Upstream requests per endpoint from Envoy's load reports, by result (success, error)",
            m.endpoint_requests.clone(),
        );
        m.registry.register(
            "metrics_sink_streams",
            "Envoys streaming their stats to flotilla",
            m.sink_streams.clone(),
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

    /// Counts an open stream until the returned guard drops. Its types' response, ACK and
    /// NACK counters exist from now on at 0, so that `increase()` sees the first NACK.
    pub(crate) fn stream_opened(
        &'static self,
        labels: StreamLabels,
        types: &[ResourceType],
    ) -> StreamGauge {
        self.streams.get_or_create(&labels).inc();
        for t in types {
            let l = TypeLabels {
                r#type: t.short_name(),
                mode: labels.mode,
            };
            let _ = self.responses.get_or_create(&l);
            let _ = self.acks.get_or_create(&l);
            let _ = self.nacks.get_or_create(&l);
        }
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
    /// Sets the per-fleet node gauges from (fleet, in sync) of every connected Envoy. A fleet
    /// whose Envoys have all gone reads 0 (not absent), up to [`MAX_FLEETS`] fleets.
    pub fn nodes<'a>(&self, nodes: impl IntoIterator<Item = (&'a str, bool)>) {
        let mut counts: std::collections::BTreeMap<String, (i64, i64)> =
            std::collections::BTreeMap::new();
        for (fleet, in_sync) in nodes {
            let c = counts.entry(fleet.to_string()).or_default();
            c.0 += 1;
            c.1 += i64::from(!in_sync);
        }
        {
            let mut seen = self.fleets_seen.lock().unwrap_or_else(|e| e.into_inner());
            for fleet in counts.keys() {
                if seen.len() < MAX_FLEETS {
                    seen.insert(fleet.clone());
                }
            }
            for fleet in seen.iter() {
                counts.entry(fleet.clone()).or_default();
            }
        }
        self.nodes.clear();
        self.nodes_out_of_sync.clear();
        for (fleet, (n, out)) in counts {
            let label = FleetLabel { fleet };
            self.nodes.get_or_create(&label).set(n);
            self.nodes_out_of_sync.get_or_create(&label).set(out);
        }
    }
}

impl Metrics {
    /// Creates a cluster's traffic counters at 0 (first report), so rates see the first 5xx.
    pub(crate) fn upstream_cluster_seen(&self, cluster: &str) {
        for class in CLASSES {
            let _ = self.upstream_requests.get_or_create(&ClassLabels {
                cluster: cluster.to_string(),
                class,
            });
        }
        let _ = self.upstream_retries.get_or_create(&ClusterLabel {
            cluster: cluster.to_string(),
        });
    }

    pub(crate) fn upstream_requests(&self, cluster: &str, class_index: usize, n: u64) {
        self.upstream_requests
            .get_or_create(&ClassLabels {
                cluster: cluster.to_string(),
                class: CLASSES[class_index.min(4)],
            })
            .inc_by(n);
    }

    pub(crate) fn upstream_retries(&self, cluster: &str, n: u64) {
        self.upstream_retries
            .get_or_create(&ClusterLabel {
                cluster: cluster.to_string(),
            })
            .inc_by(n);
    }

    /// Adds per-bucket increments of Envoy's request-time histogram (bounds in ms).
    pub(crate) fn upstream_latency(
        &self,
        cluster: &str,
        bounds_ms: &[f64],
        increments: &[u64],
        sum_ms: f64,
    ) {
        self.upstream_duration
            .get_or_create(&ClusterLabel {
                cluster: cluster.to_string(),
            })
            .add(bounds_ms, increments, sum_ms);
    }

    pub(crate) fn upstream_gauges(
        &self,
        cluster: &str,
        requests: f64,
        connections: f64,
        ejections: f64,
    ) {
        let label = ClusterLabel {
            cluster: cluster.to_string(),
        };
        self.upstream_active_requests
            .get_or_create(&label)
            .set(requests);
        self.upstream_active_connections
            .get_or_create(&label)
            .set(connections);
        self.upstream_ejections.get_or_create(&label).set(ejections);
    }

    pub(crate) fn endpoint_requests(
        &self,
        cluster: &str,
        endpoint: &str,
        successful: u64,
        errors: u64,
    ) {
        for (result, n) in [("success", successful), ("error", errors)] {
            if n > 0 {
                self.endpoint_requests
                    .get_or_create(&EndpointResultLabels {
                        cluster: cluster.to_string(),
                        endpoint: endpoint.to_string(),
                        result,
                    })
                    .inc_by(n);
            }
        }
    }

    /// Drops a quiet cluster's traffic series, so /metrics does not keep every name ever
    /// reported.
    pub(crate) fn upstream_cluster_forget(&self, cluster: &str) {
        for class in CLASSES {
            self.upstream_requests.remove(&ClassLabels {
                cluster: cluster.to_string(),
                class,
            });
        }
        let label = ClusterLabel {
            cluster: cluster.to_string(),
        };
        self.upstream_retries.remove(&label);
        self.upstream_duration.remove(&label);
        self.upstream_active_requests.remove(&label);
        self.upstream_active_connections.remove(&label);
        self.upstream_ejections.remove(&label);
    }

    /// Drops a quiet endpoint's request series.
    pub(crate) fn endpoint_forget(&self, cluster: &str, endpoint: &str) {
        for result in ["success", "error"] {
            self.endpoint_requests.remove(&EndpointResultLabels {
                cluster: cluster.to_string(),
                endpoint: endpoint.to_string(),
                result,
            });
        }
    }

    pub(crate) fn sink_streams(&self, delta: i64) {
        self.sink_streams.inc_by(delta);
    }
}

/// A histogram fed with bucket increments from elsewhere (Envoy's), not with observations:
/// prometheus-client's own histogram can only observe single values.
#[derive(Clone, Debug, Default)]
pub(crate) struct MergedHistogram(std::sync::Arc<std::sync::Mutex<Merged>>);

#[derive(Debug, Default)]
struct Merged {
    /// Upper bounds in seconds; the counts have one more entry, for +Inf.
    bounds: Vec<f64>,
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl MergedHistogram {
    fn add(&self, bounds_ms: &[f64], increments: &[u64], sum_ms: f64) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let bounds: Vec<f64> = bounds_ms.iter().map(|b| b / 1000.0).collect();
        if m.bounds != bounds {
            // Envoy's buckets are fixed; if they ever change, the series starts over.
            *m = Merged {
                counts: vec![0; bounds.len() + 1],
                bounds,
                ..Merged::default()
            };
        }
        for (c, n) in m.counts.iter_mut().zip(increments) {
            *c += n;
        }
        m.count += increments.iter().sum::<u64>();
        m.sum += sum_ms / 1000.0;
    }
}

impl prometheus_client::metrics::TypedMetric for MergedHistogram {
    const TYPE: prometheus_client::metrics::MetricType =
        prometheus_client::metrics::MetricType::Histogram;
}

impl prometheus_client::encoding::EncodeMetric for MergedHistogram {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let buckets: Vec<(f64, u64)> = m
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .zip(m.counts.iter().copied())
            .collect();
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            m.sum, m.count, &buckets, None,
        )
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        prometheus_client::metrics::MetricType::Histogram
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
