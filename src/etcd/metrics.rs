//! How long etcd takes to commit this replica's writes. An admin change answers only once its
//! transaction committed, so this is the part of every drain's or override's latency that
//! etcd adds (issue 17's write latency; BENCHMARKS.md section 8).

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The store's families; clones record into the same series. The default records into
/// series no registry exports (a client built without [`StoreMetrics::register`]).
#[derive(Clone, Debug)]
pub struct StoreMetrics {
    write_seconds: Histogram,
    /// Keys read from etcd and skipped because they fail validation, by reason.
    skipped_keys: Family<Vec<(String, String)>, Counter>,
}

fn write_histogram() -> Histogram {
    // 0.25 ms … ~8 s (a call gives up after CALL_TIMEOUT, 2 s)
    Histogram::new(exponential_buckets(0.00025, 2.0, 16))
}

impl Default for StoreMetrics {
    fn default() -> StoreMetrics {
        StoreMetrics {
            write_seconds: write_histogram(),
            skipped_keys: Family::default(),
        }
    }
}

impl StoreMetrics {
    pub fn register(registry: &mut Registry) -> StoreMetrics {
        let m = StoreMetrics::default();
        registry.register(
            "store_write_seconds",
            "Time from sending an etcd transaction to etcd answering it committed (failed calls are not counted)",
            m.write_seconds.clone(),
        );
        registry.register(
            "store_skipped_keys",
            "Keys under flotilla's etcd prefix skipped because they fail validation (written by something other than flotilla, or too large), by reason",
            m.skipped_keys.clone(),
        );
        m
    }

    /// Counts a key read from etcd and skipped.
    pub fn skipped(&self, reason: &'static str) {
        self.skipped_keys
            .get_or_create(&vec![("reason".to_string(), reason.to_string())])
            .inc();
    }

    pub(super) fn write(&self, took: Duration) {
        self.write_seconds.observe(took.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exported(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).expect("encode");
        text
    }

    #[test]
    fn a_write_is_counted_in_its_bucket() {
        let mut registry = Registry::default();
        let metrics = StoreMetrics::register(&mut registry);
        metrics.write(Duration::from_micros(3_000));
        let text = exported(&registry);
        assert!(text.contains("store_write_seconds_count 1"), "{text}");
        assert!(text.contains("store_write_seconds_sum 0.003"), "{text}");
        // 3 ms is above the 2 ms bucket and within the 4 ms one.
        assert!(
            text.contains("store_write_seconds_bucket{le=\"0.002\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("store_write_seconds_bucket{le=\"0.004\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn clones_record_into_the_registered_series() {
        let mut registry = Registry::default();
        let metrics = StoreMetrics::register(&mut registry);
        metrics.clone().write(Duration::from_millis(1));
        metrics.write(Duration::from_millis(1));
        assert!(
            exported(&registry).contains("store_write_seconds_count 2"),
            "{}",
            exported(&registry)
        );
    }
}
