//! Envoy's metrics_service stat sink: each Envoy streams its stats to flotilla.
//!
//! Only the handful of cluster stats the traffic view needs are read; everything else in a
//! flush is skipped at the cost of a name comparison. A stream that sends garbage ends with an
//! error and takes nothing else down with it (it is its own gRPC stream, apart from xDS).

use std::collections::HashMap;
use std::sync::Arc;

use envoy_types::pb::envoy::service::metrics::v3::{
    StreamMetricsMessage, StreamMetricsResponse, metrics_service_server::MetricsService,
};
use envoy_types::pb::io::prometheus::client::{Metric, MetricFamily};
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info};

use super::aggregate::{ClusterReport, Latency, TrafficAggregate};

#[derive(Clone)]
pub struct MetricsSink {
    pub traffic: Arc<TrafficAggregate>,
    /// Longest node id and cluster accepted (as on the xDS streams).
    pub max_node_id_bytes: usize,
    /// Ends open streams on shutdown (a stats stream never ends by itself).
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Binds the reporting node to the connection's client certificate.
    pub authorizer: crate::identity::Authorizer,
}

#[tonic::async_trait]
impl MetricsService for MetricsSink {
    async fn stream_metrics(
        &self,
        req: Request<Streaming<StreamMetricsMessage>>,
    ) -> Result<Response<StreamMetricsResponse>, Status> {
        let peer = req.extensions().get::<crate::identity::XdsPeer>().cloned();
        let mut stream = req.into_inner();
        let Some(first) = stream.message().await? else {
            return Ok(Response::new(StreamMetricsResponse {}));
        };
        let (node, fleet) = identity(
            first.identifier.as_ref().and_then(|i| i.node.as_ref()),
            self.max_node_id_bytes,
        )
        .ok_or_else(|| {
            Status::invalid_argument(format!(
                "the first stats message must identify the Envoy node (an id of at most {} bytes)",
                self.max_node_id_bytes
            ))
        })?;
        self.authorizer
            .check(peer.as_ref(), "stats sink", &fleet, &node)?;
        let reporter = Reporting::new(self.traffic.clone(), &node, &fleet);
        let max = super::window::max_count(peer.as_ref());
        let reporter_fleet = fleet.clone();
        info!(node = %node, "Envoy stats stream opened");
        let result = match self.absorb(reporter.id, &reporter_fleet, &first, max) {
            Err(status) => Err(status),
            Ok(()) => loop {
                let message = tokio::select! {
                    () = self.shutdown.cancelled() => break Err(Status::unavailable("flotilla is shutting down")),
                    m = stream.message() => m,
                };
                match message {
                    Ok(Some(message)) => {
                        if let Err(status) =
                            self.absorb(reporter.id, &reporter_fleet, &message, max)
                        {
                            break Err(status);
                        }
                    }
                    Ok(None) => break Ok(()),
                    Err(status) => break Err(status),
                }
            },
        };
        info!(node = %node, "Envoy stats stream closed");
        result.map(|()| Response::new(StreamMetricsResponse {}))
    }
}

/// Keeps a reporter registered for the life of a stream.
struct Reporting {
    traffic: Arc<TrafficAggregate>,
    id: u64,
}

impl Reporting {
    fn new(traffic: Arc<TrafficAggregate>, node: &str, fleet: &str) -> Reporting {
        let id = traffic.reporter(node, fleet, true);
        traffic.metrics().sink_streams(1);
        Reporting { traffic, id }
    }
}

impl Drop for Reporting {
    fn drop(&mut self) {
        self.traffic.reporter_gone(self.id);
        self.traffic.metrics().sink_streams(-1);
    }
}

impl MetricsSink {
    /// Takes one flush, each count at most `max`; Err ends the stream (it reports more names
    /// than an Envoy would).
    fn absorb(
        &self,
        reporter: u64,
        fleet: &str,
        message: &StreamMetricsMessage,
        max: u64,
    ) -> Result<(), Status> {
        let calls = self
            .traffic
            .mesh_calls
            .absorb(fleet, &message.envoy_metrics);
        self.traffic
            .metrics()
            .mesh_calls(fleet, calls.allowed, calls.denied);
        let reports = cluster_reports(&message.envoy_metrics);
        debug!(clusters = reports.len(), "stats flush");
        for mut report in reports {
            report.cap(max);
            self.traffic
                .cluster_report(reporter, report)
                .map_err(cut_off)?;
        }
        Ok(())
    }
}

/// The status that ends a stream sending more names than an Envoy would.
pub(super) fn cut_off(why: super::aggregate::CutOff) -> Status {
    tracing::warn!(error = %why, "traffic report stream cut off");
    Status::resource_exhausted(format!("stream cut off: {why}"))
}

/// The node id and fleet (`node.cluster`) of a reporting Envoy, if present and not too long.
pub(super) fn identity(
    node: Option<&envoy_types::pb::envoy::config::core::v3::Node>,
    max: usize,
) -> Option<(String, String)> {
    let node = node?;
    (!node.id.is_empty() && node.id.len() <= max && node.cluster.len() <= max)
        .then(|| (node.id.clone(), node.cluster.clone()))
}

const CLUSTER: &str = "envoy.cluster_name";
const CLASS: &str = "envoy.response_code_class";

fn label<'a>(m: &'a Metric, name: &str) -> Option<&'a str> {
    m.label.iter().find(|l| l.name() == name).map(|l| l.value())
}

/// The traffic numbers per cluster in one flush. flotilla's own clusters are left out.
pub fn cluster_reports(families: &[MetricFamily]) -> Vec<ClusterReport> {
    let mut by_cluster: HashMap<String, ClusterReport> = HashMap::new();
    for family in families {
        let field: fn(&mut ClusterReport, &Metric) = match family.name() {
            "cluster.upstream_rq_xx" => |r, m| {
                let class = label(m, CLASS).and_then(|c| c.parse::<usize>().ok());
                if let (Some(c @ 1..=5), Some(v)) = (class, counter(m)) {
                    r.by_class[c - 1] = r.by_class[c - 1].saturating_add(v);
                }
            },
            "cluster.upstream_rq_retry" => {
                |r, m| r.retries = r.retries.saturating_add(counter(m).unwrap_or(0))
            }
            "cluster.upstream_rq_active" => |r, m| r.active_requests = gauge(m),
            "cluster.upstream_cx_active" => |r, m| r.active_connections = gauge(m),
            "cluster.outlier_detection.ejections_active" => |r, m| r.ejections_active = gauge(m),
            "cluster.upstream_rq_time" => |r, m| {
                if let Some(h) = &m.histogram {
                    r.latency = Some(Latency {
                        bounds: h.bucket.iter().map(|b| b.upper_bound()).collect(),
                        cumulative: h.bucket.iter().map(|b| b.cumulative_count()).collect(),
                        count: h.sample_count(),
                        sum: h.sample_sum(),
                    });
                }
            },
            _ => continue,
        };
        for m in &family.metric {
            let Some(cluster) = label(m, CLUSTER) else {
                continue;
            };
            if cluster.starts_with(crate::config::RESERVED_PREFIX) {
                continue;
            }
            let report = by_cluster
                .entry(cluster.to_string())
                .or_insert_with(|| ClusterReport {
                    cluster: cluster.to_string(),
                    ..ClusterReport::default()
                });
            field(report, m);
        }
    }
    let mut out: Vec<ClusterReport> = by_cluster.into_values().collect();
    out.sort_by(|a, b| a.cluster.cmp(&b.cluster));
    out
}

impl ClusterReport {
    /// Bounds every count of the report by `max` (see [`super::window::max_count`]).
    pub fn cap(&mut self, max: u64) {
        for n in &mut self.by_class {
            *n = (*n).min(max);
        }
        self.retries = self.retries.min(max);
        if let Some(l) = &mut self.latency {
            l.count = l.count.min(max);
            for c in &mut l.cumulative {
                *c = (*c).min(max);
            }
        }
    }
}

fn counter(m: &Metric) -> Option<u64> {
    m.counter
        .as_ref()
        .map(|c| (c.value().max(0.0) as u64).min(super::window::MAX_COUNT))
}

fn gauge(m: &Metric) -> Option<f64> {
    m.gauge.as_ref().map(|g| g.value())
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::io::prometheus::client::{Bucket, Counter, Gauge, Histogram, LabelPair};

    fn metric(labels: &[(&str, &str)]) -> Metric {
        Metric {
            label: labels
                .iter()
                .map(|(n, v)| LabelPair {
                    name: Some(n.to_string()),
                    value: Some(v.to_string()),
                })
                .collect(),
            ..Metric::default()
        }
    }

    fn family(name: &str, metrics: Vec<Metric>) -> MetricFamily {
        MetricFamily {
            name: Some(name.to_string()),
            metric: metrics,
            ..MetricFamily::default()
        }
    }

    #[test]
    fn reads_the_cluster_stats_the_traffic_view_needs() {
        let mut ok = metric(&[(CLASS, "2"), (CLUSTER, "web")]);
        ok.counter = Some(Counter {
            value: Some(9.0),
            ..Counter::default()
        });
        let mut bad = metric(&[(CLASS, "5"), (CLUSTER, "web")]);
        bad.counter = Some(Counter {
            value: Some(1.0),
            ..Counter::default()
        });
        let mut own = metric(&[(CLASS, "2"), (CLUSTER, "flotilla_xds")]);
        own.counter = ok.counter.clone();
        let mut active = metric(&[(CLUSTER, "web")]);
        active.gauge = Some(Gauge { value: Some(3.0) });
        let mut time = metric(&[(CLUSTER, "web")]);
        time.histogram = Some(Histogram {
            sample_count: Some(10),
            sample_sum: Some(25.0),
            bucket: vec![
                Bucket {
                    cumulative_count: Some(4),
                    upper_bound: Some(1.0),
                    ..Bucket::default()
                },
                Bucket {
                    cumulative_count: Some(10),
                    upper_bound: Some(5.0),
                    ..Bucket::default()
                },
            ],
            ..Histogram::default()
        });
        let reports = cluster_reports(&[
            family("cluster.upstream_rq_xx", vec![ok, bad, own]),
            family("cluster.upstream_rq_active", vec![active]),
            family("cluster.upstream_rq_time", vec![time]),
            family(
                "cluster.upstream_cx_total",
                vec![metric(&[(CLUSTER, "web")])],
            ),
        ]);
        assert_eq!(reports.len(), 1, "flotilla's own cluster is left out");
        let web = &reports[0];
        assert_eq!(web.by_class, [0, 9, 0, 0, 1]);
        assert_eq!(web.active_requests, Some(3.0));
        let l = web.latency.as_ref().unwrap();
        assert_eq!(
            (l.bounds.clone(), l.cumulative.clone(), l.count),
            (vec![1.0, 5.0], vec![4, 10], 10)
        );
    }

    /// Issue 27: an unauthenticated stats stream reported 2^40 5xx for a real cluster.
    #[test]
    fn an_unauthenticated_report_is_capped_at_what_one_envoy_can_send() {
        let mut bad = metric(&[(CLASS, "5"), (CLUSTER, "web")]);
        bad.counter = Some(Counter {
            value: Some(2f64.powi(40)),
            ..Counter::default()
        });
        let mut reports = cluster_reports(&[family("cluster.upstream_rq_xx", vec![bad])]);
        assert_eq!(reports[0].by_class[4], crate::traffic::window::MAX_COUNT);
        reports[0].cap(crate::traffic::window::max_count(None));
        assert_eq!(
            reports[0].by_class[4],
            crate::traffic::window::MAX_UNAUTHENTICATED_COUNT
        );
    }
}
