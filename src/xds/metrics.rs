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

use super::nodes::{FleetCount, NodeRegistry};
use crate::cache::ResourceType;

/// Declared fleets remembered for the node gauges, which read 0 once their Envoys are gone.
pub const MAX_FLEETS: usize = 1000;
/// Fleet label values at once, when no fleets are declared (fleet names come from Envoys, and
/// an unauthenticated client can make up any number): the streams of further fleets are
/// counted under [`OTHER_FLEETS`].
pub const MAX_FLEET_LABELS: usize = 100;
/// The `fleet` label of streams of undeclared fleets (once fleets are declared), or beyond
/// [`MAX_FLEET_LABELS`].
pub const OTHER_FLEETS: &str = "_other";

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
    /// Declared fleets seen, which read 0 when their Envoys are gone.
    fleets_seen: Arc<Mutex<BTreeSet<String>>>,
    /// The label of every fleet with open streams.
    fleet_labels: Arc<Mutex<FleetLabels>>,
    streams: Family<StreamLabels, Gauge>,
    request_buffer_bytes: Gauge,
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
            fleet_labels: Arc::default(),
            streams: Family::default(),
            request_buffer_bytes: Gauge::default(),
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
            "xds_request_buffer_bytes",
            "Request bytes xDS streams hold buffered (messages not yet whole), over all connections",
            m.request_buffer_bytes.clone(),
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

    /// The gauge of request bytes buffered, which the server's budget keeps.
    pub(crate) fn request_buffer_bytes(&self) -> Gauge {
        self.request_buffer_bytes.clone()
    }

    /// Counts an open stream of `fleet` until the returned guard drops. `declared` says
    /// whether the config declares the fleet (`None`: it declares no fleets); the `fleet`
    /// label is bounded accordingly. Its types' response, ACK and NACK counters exist from
    /// now on at 0, so that `increase()` sees the first NACK.
    pub(crate) fn stream_opened(
        &self,
        r#type: &'static str,
        mode: &'static str,
        fleet: &str,
        declared: Option<bool>,
        types: &[ResourceType],
    ) -> StreamGauge {
        let mut labels_held = self.lock_labels();
        let label = labels_held.open(fleet, declared);
        if declared == Some(true) {
            let mut seen = self.fleets_seen.lock().unwrap_or_else(|e| e.into_inner());
            if seen.len() < MAX_FLEETS {
                seen.insert(fleet.to_string());
            }
        }
        let labels = StreamLabels {
            r#type,
            mode,
            fleet: label,
        };
        self.streams.get_or_create(&labels).inc();
        drop(labels_held);
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
            metrics: self.clone(),
            fleet: fleet.to_string(),
            labels,
        }
    }

    fn lock_labels(&self) -> std::sync::MutexGuard<'_, FleetLabels> {
        self.fleet_labels.lock().unwrap_or_else(|e| e.into_inner())
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
    fn nodes(&self, fleets: &[FleetCount]) {
        let mut counts: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        {
            let labels = self.lock_labels();
            for f in fleets {
                let c = counts
                    .entry(labels.label(&f.fleet).to_string())
                    .or_default();
                c.0 += i64::try_from(f.nodes).unwrap_or(i64::MAX);
                c.1 += i64::try_from(f.out_of_sync).unwrap_or(i64::MAX);
            }
        }
        for fleet in self
            .fleets_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            counts.entry(fleet.clone()).or_default();
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
        metrics.nodes(&nodes.fleet_counts());
    }
}

/// Decrements the open-stream gauge when a stream ends; the series goes with the fleet's
/// last stream.
pub(crate) struct StreamGauge {
    metrics: XdsMetrics,
    fleet: String,
    labels: StreamLabels,
}

impl Drop for StreamGauge {
    fn drop(&mut self) {
        // Under the labels' lock, so that no stream opens on the series while it goes.
        let mut labels = self.metrics.lock_labels();
        let last = self.metrics.streams.get_or_create(&self.labels).dec() == 1;
        if last {
            self.metrics.streams.remove(&self.labels);
        }
        labels.close(&self.fleet);
    }
}

/// The `fleet` label of each fleet with open streams, and how many streams it has.
#[derive(Debug, Default)]
struct FleetLabels {
    /// fleet → (label, streams)
    open: std::collections::HashMap<String, (String, usize)>,
    /// Fleets labelled with their own name.
    own: usize,
}

impl FleetLabels {
    fn open(&mut self, fleet: &str, declared: Option<bool>) -> String {
        if let Some((label, streams)) = self.open.get_mut(fleet) {
            *streams += 1;
            return label.clone();
        }
        let own = match declared {
            Some(declared) => declared,
            None => self.own < MAX_FLEET_LABELS,
        };
        let label = if own { fleet } else { OTHER_FLEETS };
        self.own += usize::from(label == fleet);
        self.open.insert(fleet.to_string(), (label.to_string(), 1));
        label.to_string()
    }

    fn close(&mut self, fleet: &str) {
        let Some((label, streams)) = self.open.get_mut(fleet) else {
            return;
        };
        *streams -= 1;
        if *streams == 0 {
            self.own -= usize::from(label == fleet);
            self.open.remove(fleet);
        }
    }

    fn label<'a>(&'a self, fleet: &str) -> &'a str {
        self.open
            .get(fleet)
            .map_or(OTHER_FLEETS, |(l, _)| l.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xds::Mode;
    use crate::xds::nodes::{StreamInfo, fleet_counts};

    fn stream(node: &str, fleet: &str, in_sync: bool) -> StreamInfo {
        StreamInfo {
            stream_id: 0,
            connection: 0,
            peer: None,
            identity: None,
            node_id: node.into(),
            fleet: fleet.into(),
            envoy_version: String::new(),
            mode: Mode::Sotw,
            ads: false,
            connected_at: std::time::SystemTime::now(),
            snapshot_version: String::new(),
            in_sync,
            acked_snapshot: None,
            types: Default::default(),
            envoy_admin: Vec::new(),
        }
    }

    fn gauges(metrics: &XdsMetrics, streams: &[StreamInfo]) -> Vec<String> {
        let mut registry = Registry::default();
        registry.register("n", "", metrics.nodes.clone());
        registry.register("o", "", metrics.nodes_out_of_sync.clone());
        metrics.nodes(&fleet_counts(streams.iter()));
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
        let _open = m.stream_opened("ads", "sotw", "edge", Some(true), &[]);
        let got = gauges(
            &m,
            &[stream("e1", "edge", true), stream("e1", "edge", false)],
        );
        assert_eq!(got, ["n{fleet=\"edge\"} 1", "o{fleet=\"edge\"} 1"]);
    }

    #[test]
    fn a_declared_fleet_whose_envoys_left_reads_zero() {
        let m = XdsMetrics::default();
        let gauge = m.stream_opened("ads", "sotw", "edge", Some(true), &[]);
        gauges(&m, &[stream("e1", "edge", true)]);
        drop(gauge);
        let got = gauges(&m, &[]);
        assert_eq!(got, ["n{fleet=\"edge\"} 0", "o{fleet=\"edge\"} 0"]);
    }

    fn series(m: &XdsMetrics, streams: &[StreamInfo]) -> Vec<String> {
        let mut registry = Registry::default();
        registry.register("s", "", m.streams.clone());
        let mut lines = gauges(m, streams);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        lines.extend(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .map(str::to_string),
        );
        lines
    }

    /// Issue 27: 100,000 made-up `node.cluster` values left 100,954 permanent series.
    #[test]
    fn made_up_fleets_share_one_label_and_leave_no_series_behind() {
        let m = XdsMetrics::default();
        // Fleets declared: an undeclared one is `_other`.
        let streams: Vec<StreamInfo> = (0..300)
            .map(|i| stream(&format!("n{i}"), &format!("made-up-{i}"), true))
            .collect();
        let guards: Vec<StreamGauge> = streams
            .iter()
            .map(|s| m.stream_opened("ads", "sotw", &s.fleet, Some(false), &[]))
            .collect();
        let got = series(&m, &streams);
        assert_eq!(
            got,
            [
                "n{fleet=\"_other\"} 300",
                "o{fleet=\"_other\"} 0",
                "s{type=\"ads\",mode=\"sotw\",fleet=\"_other\"} 300"
            ]
        );
        drop(guards);
        assert_eq!(series(&m, &[]), Vec::<String>::new(), "nothing left");

        // No fleets declared: the first MAX_FLEET_LABELS have their own label, the rest
        // share one; a label is free again once its streams are gone.
        let guards: Vec<StreamGauge> = streams
            .iter()
            .map(|s| m.stream_opened("ads", "sotw", &s.fleet, None, &[]))
            .collect();
        let got = series(&m, &streams);
        assert_eq!(got.len(), 3 * (MAX_FLEET_LABELS + 1), "{got:?}");
        assert!(got.contains(&"n{fleet=\"_other\"} 200".to_string()));
        drop(guards);
        assert_eq!(series(&m, &[]), Vec::<String>::new(), "nothing left");
        let again = m.stream_opened("ads", "sotw", "made-up-299", None, &[]);
        assert_eq!(m.lock_labels().label("made-up-299"), "made-up-299");
        drop(again);
    }
}
