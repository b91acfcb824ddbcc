//! Traffic: what every Envoy reports about the traffic it forwards, brought together.
//!
//! Two streams per Envoy, both over the connection it uses for xDS: the metrics_service stat
//! sink (`sink`: per-cluster requests by class, retries, latency histograms, active requests
//! and connections, ejections) and load reports (`lrs`: per-endpoint requests and requests in
//! flight, which stat sinks do not carry). `aggregate` sums them over every Envoy, of every
//! fleet, with bounded memory for the admin API, the dashboard and Prometheus; `known` holds
//! which names each Envoy may report on, `view` what the admin API shows.

mod aggregate;
mod known;
mod lrs;
pub mod mesh_calls;
mod metrics;
mod sink;
mod view;
pub mod window;

pub use aggregate::{
    ClusterReport, CutOff, EndpointReport, IDLE, Latency, Limits, TrafficAggregate, WINDOW_SECONDS,
};
pub use lrs::{INTERVAL as LOAD_REPORT_INTERVAL, LoadReports, endpoint_reports};
pub use metrics::TrafficMetrics;
pub use sink::{MetricsSink, cluster_reports};
pub use view::{ClusterTraffic, EndpointTraffic, TrafficView};
