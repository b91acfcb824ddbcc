//! Whether a fleet runs the config applied: the pure rules behind `flotilla status`.
//!
//! Per Envoy: **Synced** when every stream holds the current applied config and nothing
//! waits for an ACK; **OutOfSync** when it rejected what it was sent, or has been waiting for
//! longer than [`Rules::out_of_sync_after`]; **Progressing** otherwise. A fleet is as far as
//! its furthest Envoy (OutOfSync > Progressing > Synced). Health is **Missing** with no Envoy
//! connected, **Degraded** on a rejection or when a cluster the fleet uses has more than
//! [`Rules::unhealthy_fraction`] of its endpoints unhealthy, **Healthy** otherwise.

use std::time::{Duration, SystemTime};

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Sync {
    Synced,
    Progressing,
    OutOfSync,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Health {
    Healthy,
    Degraded,
    Missing,
}

impl Sync {
    pub fn name(self) -> &'static str {
        match self {
            Sync::Synced => "Synced",
            Sync::Progressing => "Progressing",
            Sync::OutOfSync => "OutOfSync",
        }
    }
}

impl Health {
    pub fn name(self) -> &'static str {
        match self {
            Health::Healthy => "Healthy",
            Health::Degraded => "Degraded",
            Health::Missing => "Missing",
        }
    }
}

/// The bounds of the rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    /// An Envoy not in sync this long after it was sent the config (or after the config was
    /// applied, or it connected) is OutOfSync.
    pub out_of_sync_after: Duration,
    /// A cluster with more than this fraction of unhealthy endpoints degrades its fleets.
    pub unhealthy_fraction: f64,
}

impl Default for Rules {
    fn default() -> Rules {
        Rules {
            out_of_sync_after: Duration::from_secs(30),
            unhealthy_fraction: 0.5,
        }
    }
}

/// What one Envoy (all its streams) reports.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeInput {
    /// Every stream holds its snapshot and waits for nothing.
    pub in_sync: bool,
    /// The applied config its snapshot belongs to (None: unknown, e.g. long forgotten).
    pub generation: Option<u64>,
    /// Since when its oldest unacknowledged response has waited.
    pub waiting_since: Option<SystemTime>,
    pub connected_at: SystemTime,
    /// It refused the last response of some type it was sent.
    pub rejected: bool,
}

/// What one fleet is measured against.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetInput {
    /// The current applied config.
    pub generation: u64,
    pub applied_at: SystemTime,
    pub nodes: Vec<NodeInput>,
    /// (unhealthy, total) endpoints of each cluster the fleet uses.
    pub clusters: Vec<(usize, usize)>,
}

/// Where one Envoy stands.
pub fn node(
    n: &NodeInput,
    generation: u64,
    applied_at: SystemTime,
    now: SystemTime,
    rules: &Rules,
) -> Sync {
    if n.rejected {
        return Sync::OutOfSync;
    }
    if n.in_sync && n.generation == Some(generation) {
        return Sync::Synced;
    }
    let since = n
        .waiting_since
        .unwrap_or_else(|| applied_at.max(n.connected_at));
    let waited = now.duration_since(since).unwrap_or_default();
    if waited > rules.out_of_sync_after {
        Sync::OutOfSync
    } else {
        Sync::Progressing
    }
}

/// Where a fleet stands: the furthest of its Envoys, and its health.
pub fn fleet(f: &FleetInput, now: SystemTime, rules: &Rules) -> (Sync, Health) {
    let sync = f
        .nodes
        .iter()
        .map(|n| node(n, f.generation, f.applied_at, now, rules))
        .max()
        .unwrap_or(Sync::Synced);
    let unhealthy = f
        .clusters
        .iter()
        .any(|&(bad, total)| total > 0 && bad as f64 > total as f64 * rules.unhealthy_fraction);
    let health = if f.nodes.is_empty() {
        Health::Missing
    } else if unhealthy || f.nodes.iter().any(|n| n.rejected) {
        Health::Degraded
    } else {
        Health::Healthy
    };
    (sync, health)
}

#[cfg(test)]
mod tests;
