//! What `/api/v1/traffic` shows: rates per cluster and endpoint over a window, summed over
//! every reporting Envoy. Computed in one pass over clusters, endpoints and reported gauges.

use std::collections::HashMap;

use serde::Serialize;

use super::aggregate::{Gauges, Inner};

#[derive(Debug, Clone, Default, Serialize)]
pub struct TrafficView {
    pub window_seconds: u64,
    pub reporting_envoys: usize,
    pub clusters: Vec<ClusterTraffic>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterTraffic {
    pub name: String,
    pub rps: f64,
    /// Share of requests that did not end in a 5xx (null without requests).
    pub success_rate: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub active_connections: f64,
    pub active_requests: f64,
    pub retries_per_s: f64,
    pub ejections_active: f64,
    pub endpoints: Vec<EndpointTraffic>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EndpointTraffic {
    pub address: String,
    pub rps: f64,
    pub success_rate: Option<f64>,
    pub active_requests: u64,
}

/// Per cluster, its gauges summed over the streams reporting them.
pub(super) fn gauges(inner: &Inner) -> HashMap<&str, Gauges> {
    let mut sums: HashMap<&str, Gauges> = HashMap::new();
    for r in inner.reporters.values() {
        for (cluster, g) in &r.gauges {
            let s = sums.entry(cluster.as_str()).or_default();
            s.active_requests += g.active_requests;
            s.active_connections += g.active_connections;
            s.ejections_active += g.ejections_active;
        }
    }
    sums
}

pub(super) fn compute(inner: &Inner, second: u64, window: u64) -> TrafficView {
    let mut envoys: Vec<&str> = inner
        .reporters
        .values()
        .filter(|r| r.stats)
        .map(|r| r.node.as_str())
        .collect();
    envoys.sort_unstable();
    envoys.dedup();
    let gauges = gauges(inner);
    let mut in_progress: HashMap<(&str, &str), u64> = HashMap::new();
    for r in inner.reporters.values() {
        for ((c, e), n) in &r.in_progress {
            let sum = in_progress.entry((c.as_str(), e.as_str())).or_default();
            *sum = sum.saturating_add(*n);
        }
    }
    let per_s = |n: u64| n as f64 / window as f64;
    let mut clusters: Vec<ClusterTraffic> = inner
        .clusters
        .iter()
        .map(|(name, agg)| {
            let by_class: Vec<u64> = agg.by_class.iter().map(|r| r.sum(second, window)).collect();
            let total = by_class.iter().fold(0u64, |a, n| a.saturating_add(*n));
            let g = gauges.get(name.as_str()).copied().unwrap_or_default();
            let mut endpoints: Vec<EndpointTraffic> = inner
                .endpoints
                .get(name)
                .into_iter()
                .flatten()
                .map(|(e, a)| {
                    let ok = a.successful.sum(second, window);
                    let err = a.errors.sum(second, window);
                    EndpointTraffic {
                        address: e.clone(),
                        rps: per_s(ok.saturating_add(err)),
                        success_rate: (ok.saturating_add(err) > 0)
                            .then(|| ok as f64 / ok.saturating_add(err) as f64),
                        active_requests: in_progress
                            .get(&(name.as_str(), e.as_str()))
                            .copied()
                            .unwrap_or(0),
                    }
                })
                .collect();
            endpoints.sort_by(|a, b| a.address.cmp(&b.address));
            let ms = |q| agg.latency.quantile(second, window, q);
            ClusterTraffic {
                name: name.clone(),
                rps: per_s(total),
                success_rate: (total > 0).then(|| 1.0 - by_class[4] as f64 / total as f64),
                p50_ms: ms(0.5),
                p95_ms: ms(0.95),
                p99_ms: ms(0.99),
                active_connections: g.active_connections,
                active_requests: g.active_requests,
                retries_per_s: per_s(agg.retries.sum(second, window)),
                ejections_active: g.ejections_active,
                endpoints,
            }
        })
        .collect();
    clusters.sort_by(|a, b| a.name.cmp(&b.name));
    TrafficView {
        window_seconds: window,
        reporting_envoys: envoys.len(),
        clusters,
    }
}
