//! What the checker counts: probes by result, probe latency, verdict changes.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::probe::ProbeError;
use crate::overlay::Verdict;

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

/// The checker's families; clones record into the same series.
#[derive(Clone, Debug)]
pub struct HealthMetrics {
    probes: Family<ProbeLabels, Counter>,
    probe_duration: Family<ClusterLabel, Histogram, fn() -> Histogram>,
    transitions: Family<TransitionLabels, Counter>,
}

fn probe_duration_histogram() -> Histogram {
    // 0.25 ms … ~8 s
    Histogram::new(exponential_buckets(0.00025, 2.0, 16))
}

impl Default for HealthMetrics {
    fn default() -> HealthMetrics {
        HealthMetrics {
            probes: Family::default(),
            probe_duration: Family::new_with_constructor(probe_duration_histogram),
            transitions: Family::default(),
        }
    }
}

impl HealthMetrics {
    pub fn register(registry: &mut Registry) -> HealthMetrics {
        let m = HealthMetrics::default();
        registry.register(
            "health_probes",
            "Active health probes run by flotilla, by cluster and result (ok, failed, timeout)",
            m.probes.clone(),
        );
        registry.register(
            "health_probe_duration_seconds",
            "Latency of active health probes, by cluster",
            m.probe_duration.clone(),
        );
        registry.register(
            "health_transitions",
            "Endpoint health verdict changes, by cluster and new verdict",
            m.transitions.clone(),
        );
        m
    }

    pub(super) fn probe(&self, cluster: &str, result: &Result<(), ProbeError>, latency: Duration) {
        let result = match result {
            Ok(()) => "ok",
            Err(ProbeError::Timeout(_)) => "timeout",
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

    pub(super) fn transition(&self, cluster: &str, to: Verdict) {
        self.transitions
            .get_or_create(&TransitionLabels {
                cluster: cluster.to_string(),
                to: match to {
                    Verdict::Healthy => "healthy",
                    Verdict::Unhealthy => "unhealthy",
                },
            })
            .inc();
    }
}
