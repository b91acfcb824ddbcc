//! Fleet traffic: what every Envoy reports about the traffic it forwards, brought together.
//!
//! Two streams per Envoy, both over the connection it uses for xDS: the metrics_service stat
//! sink (`sink`: per-cluster requests by class, retries, latency histograms, active requests
//! and connections, ejections) and load reports (`lrs`: per-endpoint requests and requests in
//! flight, which stat sinks do not carry). `fleet` aggregates them with bounded memory for the
//! admin API, the dashboard and Prometheus.

mod fleet;
mod lrs;
mod metrics;
mod sink;
pub mod window;

pub use fleet::{
    ClusterReport, ClusterTraffic, EndpointReport, EndpointTraffic, FleetTraffic, Latency,
    TrafficView,
};
pub use lrs::{INTERVAL as LOAD_REPORT_INTERVAL, LoadReports, endpoint_reports};
pub use metrics::TrafficMetrics;
pub use sink::{MetricsSink, cluster_reports};
