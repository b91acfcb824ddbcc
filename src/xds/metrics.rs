//! What the xDS server counts: streams, responses, ACKs and NACKs, push latency, and the
//! connected Envoys per fleet.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use tokio_util::sync::CancellationToken;

use super::nodes::{NodeRegistry, StreamInfo};
use crate::cache::ResourceType;

/// Fleets remembered for the node gauges (fleet names come from Envoys: bounded on purpose).
pub const MAX_FLEETS: usize = 1000;

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

type PushLatency = Family<TypeLabels, Histogram, fn() -> Histogram>;

/// The xDS server's families; clones record into the same series.
#[derive(Clone, Debug)]
pub struct XdsMetrics {
    nodes: Family<FleetLabel, Gauge>,
    nodes_out_of_sync: Family<FleetLabel, Gauge>,
    fleets_seen: Arc<Mutex<BTreeSet<String>>>,
    streams: Family<StreamLabels, Gauge>,
    responses: Family<TypeLabels, Counter>,
    acks: Family<TypeLabels, Counter>,
    nacks: Family<TypeLabels, Counter>,
    push_latency: PushLatency,
}

fn push_latency_histogram() -> Histogram {
    // 1 ms … ~33 s
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Default for XdsMetrics {
    fn default() -> XdsMetrics {
        XdsMetrics {
            nodes: Family::default(),
            nodes_out_of_sync: Family::default(),
            fleets_seen: Arc::default(),
            streams: Family::default(),
            responses: Family::default(),
            acks: Family::default(),
            nacks: Family::default(),
            push_latency: Family::new_with_constructor(push_latency_histogram),
        }
    }
}

impl XdsMetrics {
    pub fn register(registry: &mut Registry) -> XdsMetrics {
        let m = XdsMetrics::default();
        registry.register(
            "xds_nodes",
            "Connected Envoys (distinct node ids), by fleet",
            m.nodes.clone(),
        );
        registry.register(
            "xds_nodes_out_of_sync",
            "Connected Envoys not running the current snapshot (pending, or rejected it), by fleet",
            m.nodes_out_of_sync.clone(),
        );
        registry.register(
            "xds_streams",
            "Open xDS streams, by type (ads or the type of a per-type stream), mode and fleet",
            m.streams.clone(),
        );
        registry.register(
            "xds_responses",
            "xDS responses sent, by resource type and mode",
            m.responses.clone(),
        );
        registry.register(
            "xds_acks",
            "xDS responses acknowledged by Envoy",
            m.acks.clone(),
        );
        registry.register(
            "xds_nacks",
            "xDS responses rejected by Envoy",
            m.nacks.clone(),
        );
        registry.register(
            "xds_push_latency_seconds",
            "From a snapshot's creation to Envoy's ACK of the response carrying it",
            m.push_latency.clone(),
        );
        m
    }

    /// Counts an open stream until the returned guard drops. Its types' response, ACK and
    /// NACK counters exist from now on at 0, so that `increase()` sees the first NACK.
    pub(crate) fn stream_opened(
        &self,
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
        StreamGauge {
            streams: self.streams.clone(),
            labels,
        }
    }

    pub(crate) fn response_sent(&self, t: ResourceType, mode: &'static str) {
        self.responses
            .get_or_create(&TypeLabels {
                r#type: t.short_name(),
                mode,
            })
            .inc();
    }

    pub(crate) fn ack(&self, t: ResourceType, mode: &'static str, since_snapshot: Duration) {
        let labels = TypeLabels {
            r#type: t.short_name(),
            mode,
        };
        self.acks.get_or_create(&labels).inc();
        self.push_latency
            .get_or_create(&labels)
            .observe(since_snapshot.as_secs_f64());
    }

    pub(crate) fn nack(&self, t: ResourceType, mode: &'static str) {
        self.nacks
            .get_or_create(&TypeLabels {
                r#type: t.short_name(),
                mode,
            })
            .inc();
    }

    /// Sets the per-fleet node gauges from every open stream: an Envoy (a node id) is in sync
    /// when all its streams are. A fleet whose Envoys have all gone reads 0 (not absent), up
    /// to [`MAX_FLEETS`] fleets.
    fn nodes(&self, streams: &[StreamInfo]) {
        let mut by_node: BTreeMap<&str, (&str, bool)> = BTreeMap::new();
        for s in streams {
            let node = by_node.entry(&s.node_id).or_insert((&s.fleet, true));
            node.1 &= s.in_sync;
        }
        let mut counts: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for (fleet, in_sync) in by_node.into_values() {
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

/// Keeps the per-fleet node gauges current (once a second: they feed alerts, not latency).
pub async fn node_gauges(
    nodes: Arc<NodeRegistry>,
    metrics: XdsMetrics,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        metrics.nodes(&nodes.streams());
    }
}

/// Decrements the open-stream gauge when a stream ends.
pub(crate) struct StreamGauge {
    streams: Family<StreamLabels, Gauge>,
    labels: StreamLabels,
}

impl Drop for StreamGauge {
    fn drop(&mut self) {
        self.streams.get_or_create(&self.labels).dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xds::Mode;

    fn stream(node: &str, fleet: &str, in_sync: bool) -> StreamInfo {
        StreamInfo {
            identity: None,
            node_id: node.into(),
            fleet: fleet.into(),
            envoy_version: String::new(),
            mode: Mode::Sotw,
            ads: false,
            connected_at: std::time::SystemTime::now(),
            snapshot_version: String::new(),
            in_sync,
            types: Default::default(),
        }
    }

    fn gauges(metrics: &XdsMetrics, streams: &[StreamInfo]) -> Vec<String> {
        let mut registry = Registry::default();
        registry.register("n", "", metrics.nodes.clone());
        registry.register("o", "", metrics.nodes_out_of_sync.clone());
        metrics.nodes(streams);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn an_envoy_is_in_sync_only_when_all_its_streams_are() {
        let m = XdsMetrics::default();
        let got = gauges(
            &m,
            &[stream("e1", "edge", true), stream("e1", "edge", false)],
        );
        assert_eq!(got, ["n{fleet=\"edge\"} 1", "o{fleet=\"edge\"} 1"]);
    }

    #[test]
    fn a_fleet_whose_envoys_left_reads_zero() {
        let m = XdsMetrics::default();
        gauges(&m, &[stream("e1", "edge", true)]);
        let got = gauges(&m, &[]);
        assert_eq!(got, ["n{fleet=\"edge\"} 0", "o{fleet=\"edge\"} 0"]);
    }
}
