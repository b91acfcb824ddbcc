//! What the fleet's Envoys report, re-exported as flotilla's own series: upstream requests,
//! retries, latency and gauges per cluster, requests per endpoint, reporting streams.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::metrics::MergedHistogram;

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabel {
    cluster: String,
}

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
struct MeshCallLabels {
    service: String,
    /// allowed, denied (the callee's sidecar RBAC decision).
    decision: &'static str,
}

type SummedGauge = Family<ClusterLabel, Gauge<f64, AtomicU64>>;

/// The traffic families; clones record into the same series.
#[derive(Clone, Debug, Default)]
pub struct TrafficMetrics {
    upstream_requests: Family<ClassLabels, Counter>,
    upstream_retries: Family<ClusterLabel, Counter>,
    upstream_duration: Family<ClusterLabel, MergedHistogram>,
    upstream_active_requests: SummedGauge,
    upstream_active_connections: SummedGauge,
    upstream_ejections: SummedGauge,
    endpoint_requests: Family<EndpointResultLabels, Counter>,
    sink_streams: Gauge,
    mesh_calls: Family<MeshCallLabels, Counter>,
}

impl TrafficMetrics {
    pub fn register(registry: &mut Registry) -> TrafficMetrics {
        let m = TrafficMetrics::default();
        registry.register(
            "upstream_requests",
            "Upstream requests completed by every Envoy, by cluster and response class",
            m.upstream_requests.clone(),
        );
        registry.register(
            "upstream_retries",
            "Upstream request retries by every Envoy, by cluster",
            m.upstream_retries.clone(),
        );
        registry.register(
            "upstream_request_duration_seconds",
            "Upstream request time across every Envoy (Envoy's upstream_rq_time), by cluster",
            m.upstream_duration.clone(),
        );
        registry.register(
            "upstream_active_requests",
            "Requests in flight to a cluster, summed over every Envoy",
            m.upstream_active_requests.clone(),
        );
        registry.register(
            "upstream_active_connections",
            "Open upstream connections to a cluster, summed over every Envoy",
            m.upstream_active_connections.clone(),
        );
        registry.register(
            "upstream_ejections_active",
            "Hosts currently ejected by outlier detection, summed over every Envoy",
            m.upstream_ejections.clone(),
        );
        registry.register(
            "endpoint_requests",
            "Upstream requests per endpoint from Envoy's load reports, by result (success, error)",
            m.endpoint_requests.clone(),
        );
        registry.register(
            "mesh_calls",
            "Calls into a mesh service that its sidecars' authorization allowed or denied, by service and decision",
            m.mesh_calls.clone(),
        );
        registry.register(
            "metrics_sink_streams",
            "Envoys streaming their stats to flotilla",
            m.sink_streams.clone(),
        );
        m
    }

    /// Creates a cluster's traffic counters at 0 (first report), so rates see the first 5xx.
    /// Calls into `service` its sidecars allowed and denied in one flush.
    pub(super) fn mesh_calls(&self, service: &str, allowed: u64, denied: u64) {
        for (decision, n) in [("allowed", allowed), ("denied", denied)] {
            if n > 0 {
                self.mesh_calls
                    .get_or_create(&MeshCallLabels {
                        service: service.to_string(),
                        decision,
                    })
                    .inc_by(n);
            }
        }
    }

    pub(super) fn cluster_seen(&self, cluster: &str) {
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

    pub(super) fn requests(&self, cluster: &str, class_index: usize, n: u64) {
        self.upstream_requests
            .get_or_create(&ClassLabels {
                cluster: cluster.to_string(),
                class: CLASSES[class_index.min(4)],
            })
            .inc_by(n);
    }

    pub(super) fn retries(&self, cluster: &str, n: u64) {
        self.upstream_retries
            .get_or_create(&ClusterLabel {
                cluster: cluster.to_string(),
            })
            .inc_by(n);
    }

    /// Adds per-bucket increments of Envoy's request-time histogram (bounds in ms).
    pub(super) fn latency(
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

    pub(super) fn gauges(&self, cluster: &str, requests: f64, connections: f64, ejections: f64) {
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

    pub(super) fn endpoint_requests(
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

    /// Drops a quiet cluster's series, so /metrics does not keep every name ever reported.
    pub(super) fn cluster_forget(&self, cluster: &str) {
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
    pub(super) fn endpoint_forget(&self, cluster: &str, endpoint: &str) {
        for result in ["success", "error"] {
            self.endpoint_requests.remove(&EndpointResultLabels {
                cluster: cluster.to_string(),
                endpoint: endpoint.to_string(),
                result,
            });
        }
    }

    pub(super) fn sink_streams(&self, delta: i64) {
        self.sink_streams.inc_by(delta);
    }
}
