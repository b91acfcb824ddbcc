//! Calls into each mesh service that its sidecars' RBAC allowed and denied, summed from the
//! stats they flush (counters arrive as deltas).
//!
//! A sidecar counts its inbound decisions under `http.mesh_inbound_<service>.rbac.*` (HTTP)
//! or `mesh_inbound_<service>.rbac.*` (TCP); with tags as labels the prefix arrives as a
//! label instead. A report counts only for the reporter's own service (its fleet): a sidecar
//! cannot fill another service's numbers.
//!
//! Denied calls are also counted per caller (an edge of the mesh graph) from the shadow
//! rules `translate::mesh_edges` adds per declared caller (`…rbac.mesh_from_<caller>.
//! shadow_denied`).

use std::collections::BTreeMap;
use std::sync::Mutex;

use envoy_types::pb::io::prometheus::client::MetricFamily;

use crate::translate::mesh_edges::caller_of;

/// Services tracked at most (one per mesh service: bounded like the mesh itself).
const MAX_SERVICES: usize = 10_000;
/// Edges (caller, callee) tracked at most: a mesh's `calls:` entries are bounded by
/// services × calls per service; a sidecar naming callers that do not exist fills this
/// bound at worst, and the graph shows declared edges only.
const MAX_EDGES: usize = 100_000;

/// Allowed and denied calls, per service.
#[derive(Debug, Default)]
pub struct MeshCalls {
    counts: Mutex<BTreeMap<String, Decisions>>,
    /// Denied calls per (caller, callee).
    denied_edges: Mutex<BTreeMap<(String, String), u64>>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Decisions {
    pub allowed: u64,
    pub denied: u64,
}

impl MeshCalls {
    /// Adds what one flush of a sidecar of `fleet` says about calls into it, and returns what
    /// it added (nothing for a service past the bound).
    pub fn absorb(&self, fleet: &str, families: &[MetricFamily]) -> Decisions {
        let prefix = crate::translate::mesh::inbound_stat_prefix(fleet);
        let mut add = Decisions::default();
        let mut edges: BTreeMap<String, u64> = BTreeMap::new();
        for family in families {
            let name = family.name();
            if name.ends_with("shadow_denied") {
                for m in &family.metric {
                    let labels: Vec<&str> = m.label.iter().map(|l| l.value()).collect();
                    let ours =
                        name.contains(&format!("{prefix}.")) || labels.iter().any(|l| *l == prefix);
                    let v = m.counter.as_ref().and_then(|c| c.value).unwrap_or(0.0);
                    if let Some(caller) = caller_of(name, &labels)
                        && ours
                        && v.is_finite()
                        && v > 0.0
                    {
                        let e = edges.entry(caller).or_default();
                        *e = e.saturating_add(v as u64);
                    }
                }
                continue;
            }
            let slot = if name.ends_with("rbac.allowed") {
                &mut add.allowed
            } else if name.ends_with("rbac.denied") {
                &mut add.denied
            } else {
                continue;
            };
            for m in &family.metric {
                let ours = name.contains(&format!("{prefix}."))
                    || m.label.iter().any(|l| l.value() == prefix);
                if ours {
                    let v = m.counter.as_ref().and_then(|c| c.value).unwrap_or(0.0);
                    if v.is_finite() && v > 0.0 {
                        *slot = slot.saturating_add(v as u64);
                    }
                }
            }
        }
        if !edges.is_empty() {
            let mut denied = self.denied_edges.lock().unwrap_or_else(|e| e.into_inner());
            for (caller, n) in edges {
                let key = (caller, fleet.to_string());
                if !denied.contains_key(&key) && denied.len() >= MAX_EDGES {
                    continue;
                }
                let d = denied.entry(key).or_default();
                *d = d.saturating_add(n);
            }
        }
        if add == Decisions::default() {
            return add;
        }
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if !counts.contains_key(fleet) && counts.len() >= MAX_SERVICES {
            return Decisions::default();
        }
        let d = counts.entry(fleet.to_string()).or_default();
        d.allowed = d.allowed.saturating_add(add.allowed);
        d.denied = d.denied.saturating_add(add.denied);
        add
    }

    /// The calls from `caller` into `callee` its sidecars denied, since flotilla started.
    pub fn denied_from(&self, caller: &str, callee: &str) -> u64 {
        self.denied_edges
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(caller.to_string(), callee.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// The totals of `service` since flotilla started.
    pub fn of(&self, service: &str) -> Decisions {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(service)
            .copied()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::io::prometheus::client::{Counter, LabelPair, Metric};

    fn family(name: &str, label: Option<&str>, value: f64) -> MetricFamily {
        MetricFamily {
            name: Some(name.to_string()),
            metric: vec![Metric {
                label: label
                    .map(|v| LabelPair {
                        name: Some("envoy.http_conn_manager_prefix".into()),
                        value: Some(v.into()),
                    })
                    .into_iter()
                    .collect(),
                counter: Some(Counter {
                    value: Some(value),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn counts_a_sidecars_own_decisions_only() {
        let calls = MeshCalls::default();
        calls.absorb(
            "payments",
            &[
                family("http.rbac.allowed", Some("mesh_inbound_payments"), 3.0),
                family("http.rbac.denied", Some("mesh_inbound_payments"), 1.0),
                family("http.mesh_inbound_payments.rbac.denied", None, 2.0),
                // Another service's prefix, reported by a payments sidecar: ignored.
                family("http.rbac.allowed", Some("mesh_inbound_orders"), 50.0),
                family("http.rbac.allowed", Some("mesh_inbound_payments"), f64::NAN),
            ],
        );
        assert_eq!(
            calls.of("payments"),
            Decisions {
                allowed: 3,
                denied: 3
            }
        );
        assert_eq!(calls.of("orders"), Decisions::default());
    }

    #[test]
    fn counts_denied_calls_per_caller() {
        let calls = MeshCalls::default();
        calls.absorb(
            "payments",
            &[
                family(
                    "http.mesh_inbound_payments.rbac.mesh_from_frontend.shadow_denied",
                    None,
                    2.0,
                ),
                family(
                    "http.rbac.shadow_denied",
                    Some("mesh_inbound_payments"),
                    0.0,
                ),
                // Another service's inbound, reported by a payments sidecar: ignored.
                family(
                    "http.mesh_inbound_orders.rbac.mesh_from_frontend.shadow_denied",
                    None,
                    9.0,
                ),
            ],
        );
        calls.absorb(
            "payments",
            &[family(
                "http.mesh_inbound_payments.rbac.mesh_from_frontend.shadow_denied",
                None,
                1.0,
            )],
        );
        assert_eq!(calls.denied_from("frontend", "payments"), 3);
        assert_eq!(calls.denied_from("frontend", "orders"), 0);
    }
}
