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
struct BuildLabels {
    version: &'static str,
}

pub struct Metrics {
    registry: Registry,
    config_reloads: Family<ResultLabel, Counter>,
    config_version: Family<VersionLabel, Gauge>,
    streams: Family<StreamLabels, Gauge>,
    responses: Family<TypeLabels, Counter>,
    acks: Family<TypeLabels, Counter>,
    nacks: Family<TypeLabels, Counter>,
    push_latency: Family<TypeLabels, Histogram>,
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
            streams: Family::default(),
            responses: Family::default(),
            acks: Family::default(),
            nacks: Family::default(),
            push_latency: Family::new_with_constructor(|| {
                // 1 ms … ~33 s
                Histogram::new(exponential_buckets(0.001, 2.0, 16))
            }),
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

/// Decrements the open-stream gauge when a stream ends.
pub(crate) struct StreamGauge {
    labels: StreamLabels,
}

impl Drop for StreamGauge {
    fn drop(&mut self) {
        get().streams.get_or_create(&self.labels).dec();
    }
}
