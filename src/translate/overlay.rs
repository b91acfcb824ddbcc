//! What flotilla knows about endpoints beyond the YAML: health verdicts, drains, weight
//! overrides and runtime registrations. It is an input to translation like the config itself,
//! so translation stays a pure function of (config, overlay).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use crate::config::model::Endpoint;

/// An endpoint in a cluster: the unit that health, drains and overrides apply to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndpointKey {
    pub cluster: String,
    pub address: SocketAddr,
}

impl EndpointKey {
    pub fn new(cluster: impl Into<String>, address: SocketAddr) -> EndpointKey {
        EndpointKey {
            cluster: cluster.into(),
            address,
        }
    }
}

/// The active checker's verdict on an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Healthy,
    Unhealthy,
}

/// Everything about endpoints that does not come from the YAML. The default (empty) overlay
/// means: no verdicts yet, nothing drained, no overrides, no registrations.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Overlay {
    /// Verdicts of active checks. An endpoint without one is unknown, and Envoy serves unknown
    /// endpoints like healthy ones: a new endpoint takes traffic before its first probe.
    pub verdicts: BTreeMap<EndpointKey, Verdict>,
    /// Endpoints being drained: Envoy sends them no new requests.
    pub draining: BTreeSet<EndpointKey>,
    /// Weights an operator set at run time; they win over everything else.
    pub weights: BTreeMap<EndpointKey, u32>,
    /// Weights least_response_time derived from measured latency; they replace the configured
    /// weight unless an operator override exists.
    pub measured_weights: BTreeMap<EndpointKey, u32>,
    /// Endpoints that registered themselves at runtime, per cluster.
    pub registered: BTreeMap<String, Vec<Endpoint>>,
}

impl Overlay {
    /// The weight Envoy should use for an endpoint configured with `configured`.
    pub fn weight(&self, key: &EndpointKey, configured: u32) -> u32 {
        self.weights
            .get(key)
            .or_else(|| self.measured_weights.get(key))
            .copied()
            .unwrap_or(configured)
    }
}
