//! The Prometheus registry that `/metrics` encodes, and nothing about what is measured.
//!
//! Each subsystem defines its own families next to the code that records them (`control`,
//! `health::metrics`, `xds::metrics`, `traffic::metrics`) and registers them here once, at
//! start; the families are then passed into the subsystem as values, as linkerd2-proxy does.
//! A subsystem built without a registry (a unit test) records into families nobody encodes.
//! Label sets are small and bounded: resource types, modes, fleets, results, clusters.

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

pub use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// A registry with flotilla's prefix and its build information, for the subsystems to
/// register their families into.
pub fn registry() -> Registry {
    let mut registry = Registry::with_prefix("flotilla");
    let build: Family<BuildLabels, Gauge> = Family::default();
    build
        .get_or_create(&BuildLabels {
            version: env!("CARGO_PKG_VERSION"),
        })
        .set(1);
    registry.register("build_info", "flotilla build, as a label", build);
    registry
}

/// The registry once every subsystem has registered: read-only, shared with the admin server.
#[derive(Clone)]
pub struct Exposition(Arc<Registry>);

impl Exposition {
    pub fn new(registry: Registry) -> Exposition {
        Exposition(Arc::new(registry))
    }

    /// Prometheus (OpenMetrics) text of every registered family.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.0).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Exposition {
    fn default() -> Exposition {
        Exposition::new(registry())
    }
}

/// A histogram fed with bucket increments from elsewhere (Envoy's), not with observations:
/// prometheus-client's own histogram can only observe single values.
#[derive(Clone, Debug, Default)]
pub struct MergedHistogram(Arc<Mutex<Merged>>);

#[derive(Debug, Default)]
struct Merged {
    /// Upper bounds in seconds; the counts have one more entry, for +Inf.
    bounds: Vec<f64>,
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl MergedHistogram {
    /// Adds per-bucket increments (bounds in ms, as Envoy reports them).
    pub fn add(&self, bounds_ms: &[f64], increments: &[u64], sum_ms: f64) {
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
