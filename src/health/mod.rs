//! flotilla's active health checker: one checker for the whole fleet, instead of every Envoy
//! probing every backend.
//!
//! `probe` runs one HTTP, TCP or gRPC check; `verdict` turns results into healthy/unhealthy
//! with thresholds; `latency` turns measured latency into least_response_time weights;
//! `checker` schedules probes and publishes verdicts and weights to the runtime, which writes
//! them to the store and serves what the store holds (every replica's findings) in the
//! controller's overlay; Envoy gets them as EDS health status and endpoint weights.

mod checker;
pub mod latency;
mod metrics;
pub mod ownership;
mod probe;
pub(crate) use probe::error_chain;
mod targets;
mod tls;
pub mod verdict;

pub use checker::{HealthOptions, HealthTable, ProbeStatus, spawn};
pub use metrics::HealthMetrics;
pub use probe::{ProbeError, Prober};
