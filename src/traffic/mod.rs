//! Traffic: what every Envoy reports about the traffic it forwards, brought together.
//!
//! Two streams per Envoy, both over the connection it uses for xDS: the metrics_service stat
//! sink (`sink`: per-cluster requests by class, retries, latency histograms, active requests
//! and connections, ejections) and load reports (`lrs`: per-endpoint requests and requests in
//! flight, which stat sinks do not carry). `aggregate` sums them over every Envoy, of every
//! fleet, with bounded memory for the admin API, the dashboard and Prometheus.

mod aggregate;
mod lrs;
mod metrics;
mod sink;
pub mod window;

pub use aggregate::{
    ClusterReport, ClusterTraffic, EndpointReport, EndpointTraffic, Latency, TrafficAggregate,
    TrafficView,
};
pub use lrs::{INTERVAL as LOAD_REPORT_INTERVAL, LoadReports, endpoint_reports};
pub use metrics::TrafficMetrics;
pub use sink::{MetricsSink, cluster_reports};
