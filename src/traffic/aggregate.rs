//! The aggregate, over every Envoy of every fleet, of what each reports about its upstream
//! traffic.
//!
//! Reports arrive per Envoy stream: cluster counters as deltas, cluster histograms as
//! cumulative buckets (turned into deltas here, per stream), gauges as current values, and
//! per-endpoint request counts from load reports. Rates live in one-second slots over the last
//! minute; gauges are summed over the streams that report them and vanish with their stream.
//! Memory is bounded: at most [`MAX_CLUSTERS`] clusters and [`MAX_ENDPOINTS`] endpoints, and
//! anything quiet for [`IDLE`] is forgotten.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::metrics::TrafficMetrics;
use super::window::{BucketRates, Rate};

pub(super) const MAX_CLUSTERS: usize = 10_000;
pub(super) const MAX_ENDPOINTS: usize = 100_000;
pub(super) const IDLE: Duration = Duration::from_secs(300);

/// Identifies one reporting stream (a metrics sink stream or a load-report stream).
pub(super) type ReporterId = u64;

/// One cluster's numbers from one Envoy's stats flush.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterReport {
    pub cluster: String,
    /// Upstream requests completed since the last flush, by response class 1xx…5xx.
    pub by_class: [u64; 5],
    pub retries: u64,
    /// `upstream_rq_time` as Envoy keeps it: cumulative since Envoy started.
    pub latency: Option<Latency>,
    pub active_requests: Option<f64>,
    pub active_connections: Option<f64>,
    pub ejections_active: Option<f64>,
}

/// A latency histogram: bucket upper bounds (ms), cumulative counts (values ≤ each bound),
/// the number of samples and their sum (ms).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Latency {
    pub bounds: Vec<f64>,
    pub cumulative: Vec<u64>,
    pub count: u64,
    pub sum: f64,
}

/// One endpoint's requests over one load-report interval.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointReport {
    pub cluster: String,
    pub endpoint: String,
    pub successful: u64,
    pub errors: u64,
    pub in_progress: u64,
}

#[derive(Default)]
struct ClusterAgg {
    by_class: [Rate; 5],
    retries: Rate,
    latency: BucketRates,
    last: Option<Instant>,
}

#[derive(Default)]
struct EndpointAgg {
    successful: Rate,
    errors: Rate,
    last: Option<Instant>,
}

#[derive(Default, Clone, Copy)]
struct Gauges {
    active_requests: f64,
    active_connections: f64,
    ejections_active: f64,
}

#[derive(Default)]
struct Reporter {
    node: String,
    /// A stats (metrics sink) stream, as opposed to a load-report stream.
    stats: bool,
    gauges: HashMap<String, Gauges>,
    /// Per cluster, the last per-bucket latency counts and sum (for deltas).
    latency: HashMap<String, (Vec<u64>, f64)>,
    in_progress: HashMap<(String, String), u64>,
    /// When the last load report arrived.
    last_load_report: Option<Instant>,
}

#[derive(Default)]
struct Inner {
    clusters: HashMap<String, ClusterAgg>,
    endpoints: HashMap<(String, String), EndpointAgg>,
    reporters: HashMap<ReporterId, Reporter>,
    next_id: ReporterId,
}

/// Traffic numbers from every Envoy, shared by the sinks (writers) and the admin API.
#[derive(Default)]
pub struct TrafficAggregate {
    inner: Mutex<Inner>,
    metrics: TrafficMetrics,
}

fn now_second() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TrafficAggregate {
    pub fn new(metrics: TrafficMetrics) -> Arc<TrafficAggregate> {
        Arc::new(TrafficAggregate {
            inner: Mutex::default(),
            metrics,
        })
    }

    pub(super) fn metrics(&self) -> &TrafficMetrics {
        &self.metrics
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new reporting stream from Envoy `node`: its stats stream (`stats`) or its load reports.
    pub fn reporter(&self, node: &str, stats: bool) -> ReporterId {
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        inner.reporters.insert(
            id,
            Reporter {
                node: node.to_string(),
                stats,
                ..Reporter::default()
            },
        );
        id
    }

    /// A stream ended: its gauges no longer count.
    pub fn reporter_gone(&self, id: ReporterId) {
        self.lock().reporters.remove(&id);
    }

    /// Envoys currently streaming stats.
    pub fn reporting_envoys(&self) -> usize {
        let inner = self.lock();
        let mut nodes: Vec<&str> = inner
            .reporters
            .values()
            .filter(|r| r.stats)
            .map(|r| r.node.as_str())
            .collect();
        nodes.sort_unstable();
        nodes.dedup();
        nodes.len()
    }

    pub fn cluster_report(&self, id: ReporterId, report: ClusterReport) {
        let second = now_second();
        let now = Instant::now();
        let metrics = &self.metrics;
        let mut inner = self.lock();
        let inner = &mut *inner;
        if !inner.clusters.contains_key(&report.cluster) && inner.clusters.len() >= MAX_CLUSTERS {
            return;
        }
        let Some(reporter) = inner.reporters.get_mut(&id) else {
            return;
        };
        let agg = inner
            .clusters
            .entry(report.cluster.clone())
            .or_insert_with(|| {
                metrics.cluster_seen(&report.cluster);
                ClusterAgg::default()
            });
        agg.last = Some(now);
        for (class, n) in report.by_class.iter().enumerate() {
            if *n > 0 {
                agg.by_class[class].add(second, *n);
                metrics.requests(&report.cluster, class, *n);
            }
        }
        if report.retries > 0 {
            agg.retries.add(second, report.retries);
            metrics.retries(&report.cluster, report.retries);
        }
        if let Some(l) = &report.latency {
            let now_buckets = per_bucket(&l.cumulative, l.count);
            let previous = reporter
                .latency
                .insert(report.cluster.clone(), (now_buckets.clone(), l.sum));
            let increments = match previous {
                // The first report of a stream is a baseline: what came before is history.
                None => None,
                Some((prev, prev_sum))
                    if prev.len() == now_buckets.len()
                        && prev.iter().zip(&now_buckets).all(|(p, n)| n >= p) =>
                {
                    let inc: Vec<u64> = now_buckets.iter().zip(&prev).map(|(n, p)| n - p).collect();
                    Some((inc, (l.sum - prev_sum).max(0.0)))
                }
                // Envoy restarted its histogram: everything in it is new.
                Some(_) => Some((now_buckets, l.sum)),
            };
            if let Some((inc, sum)) = increments
                && inc.iter().any(|n| *n > 0)
            {
                agg.latency.add(second, &l.bounds, &inc);
                metrics.latency(&report.cluster, &l.bounds, &inc, sum);
            }
        }
        let g = reporter.gauges.entry(report.cluster.clone()).or_default();
        if let Some(v) = report.active_requests {
            g.active_requests = v;
        }
        if let Some(v) = report.active_connections {
            g.active_connections = v;
        }
        if let Some(v) = report.ejections_active {
            g.ejections_active = v;
        }
        let sums = sum_gauges(inner.reporters.values(), &report.cluster);
        metrics.gauges(
            &report.cluster,
            sums.active_requests,
            sums.active_connections,
            sums.ejections_active,
        );
        forget_idle(inner, now);
    }

    pub fn endpoint_reports(&self, id: ReporterId, reports: Vec<EndpointReport>) {
        let second = now_second();
        let now = Instant::now();
        let metrics = &self.metrics;
        let mut inner = self.lock();
        let inner = &mut *inner;
        let Some(reporter) = inner.reporters.get_mut(&id) else {
            return;
        };
        reporter.in_progress.clear();
        reporter.last_load_report = Some(now);
        for r in reports {
            let key = (r.cluster.clone(), r.endpoint.clone());
            reporter.in_progress.insert(key.clone(), r.in_progress);
            if !inner.endpoints.contains_key(&key) && inner.endpoints.len() >= MAX_ENDPOINTS {
                continue;
            }
            let agg = inner.endpoints.entry(key).or_default();
            agg.last = Some(now);
            if r.successful > 0 {
                agg.successful.add(second, r.successful);
            }
            if r.errors > 0 {
                agg.errors.add(second, r.errors);
            }
            metrics.endpoint_requests(&r.cluster, &r.endpoint, r.successful, r.errors);
        }
        forget_idle(inner, now);
    }

    /// Requests in flight to `endpoints` (cluster, address) summed over every Envoy that
    /// reports load, or `None` while some of them has not reported since `since` (its last
    /// numbers may predate a change it has to see, such as a drain).
    pub fn in_flight_since(&self, endpoints: &[(String, String)], since: Instant) -> Option<u64> {
        let inner = self.lock();
        let mut total = 0;
        for r in inner.reporters.values().filter(|r| !r.stats) {
            if r.last_load_report.is_none_or(|t| t < since) {
                return None;
            }
            total += endpoints
                .iter()
                .filter_map(|e| r.in_progress.get(e))
                .sum::<u64>();
        }
        Some(total)
    }

    /// Rates over the last `window` seconds, summed over every reporting Envoy.
    pub fn view(&self, window: u64) -> TrafficView {
        let second = now_second();
        let reporting_envoys = self.reporting_envoys();
        let inner = self.lock();
        let per_s = |n: u64| n as f64 / window as f64;
        let mut clusters: Vec<ClusterTraffic> = inner
            .clusters
            .iter()
            .map(|(name, agg)| {
                let by_class: Vec<u64> =
                    agg.by_class.iter().map(|r| r.sum(second, window)).collect();
                let total: u64 = by_class.iter().sum();
                let gauges = sum_gauges(inner.reporters.values(), name);
                let mut endpoints: Vec<EndpointTraffic> = inner
                    .endpoints
                    .iter()
                    .filter(|((c, _), _)| c == name)
                    .map(|((_, e), a)| {
                        let ok = a.successful.sum(second, window);
                        let err = a.errors.sum(second, window);
                        let in_progress: u64 = inner
                            .reporters
                            .values()
                            .filter_map(|r| r.in_progress.get(&(name.clone(), e.clone())))
                            .sum();
                        EndpointTraffic {
                            address: e.clone(),
                            rps: per_s(ok + err),
                            success_rate: (ok + err > 0).then(|| ok as f64 / (ok + err) as f64),
                            active_requests: in_progress,
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
                    active_connections: gauges.active_connections,
                    active_requests: gauges.active_requests,
                    retries_per_s: per_s(agg.retries.sum(second, window)),
                    ejections_active: gauges.ejections_active,
                    endpoints,
                }
            })
            .collect();
        clusters.sort_by(|a, b| a.name.cmp(&b.name));
        TrafficView {
            window_seconds: window,
            reporting_envoys,
            clusters,
        }
    }
}

/// Cumulative bucket counts (values ≤ each bound) → counts per bucket, plus the overflow.
fn per_bucket(cumulative: &[u64], total: u64) -> Vec<u64> {
    let mut out = Vec::with_capacity(cumulative.len() + 1);
    let mut below = 0;
    for &c in cumulative {
        out.push(c.saturating_sub(below));
        below = below.max(c);
    }
    out.push(total.saturating_sub(below));
    out
}

fn sum_gauges<'a>(reporters: impl Iterator<Item = &'a Reporter>, cluster: &str) -> Gauges {
    reporters
        .filter_map(|r| r.gauges.get(cluster))
        .fold(Gauges::default(), |acc, g| Gauges {
            active_requests: acc.active_requests + g.active_requests,
            active_connections: acc.active_connections + g.active_connections,
            ejections_active: acc.ejections_active + g.ejections_active,
        })
}

fn forget_idle(inner: &mut Inner, now: Instant) {
    let fresh = |last: Option<Instant>| last.is_some_and(|l| now.duration_since(l) < IDLE);
    inner.clusters.retain(|_, a| fresh(a.last));
    inner.endpoints.retain(|_, a| fresh(a.last));
}

#[derive(Debug, Clone, Serialize)]
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

#[cfg(test)]
mod tests {
    use super::*;

    fn report(cluster: &str, ok: u64, err: u64, cumulative: Vec<u64>, total: u64) -> ClusterReport {
        ClusterReport {
            cluster: cluster.into(),
            by_class: [0, ok, 0, 0, err],
            latency: Some(Latency {
                bounds: vec![1.0, 5.0, 10.0],
                cumulative,
                count: total,
                sum: 0.0,
            }),
            active_requests: Some(2.0),
            active_connections: Some(3.0),
            ..ClusterReport::default()
        }
    }

    #[test]
    fn sums_over_envoys_and_turns_cumulative_buckets_into_rates() {
        let t = TrafficAggregate::default();
        let a = t.reporter("edge-1", true);
        let b = t.reporter("edge-2", true);
        // Baselines: history before flotilla saw the Envoy is not counted as latency.
        t.cluster_report(a, report("web", 10, 0, vec![100, 100, 100], 100));
        t.cluster_report(b, report("web", 10, 0, vec![0, 0, 0], 0));
        t.cluster_report(a, report("web", 30, 10, vec![120, 140, 140], 140));
        let v = t.view(10);
        let web = &v.clusters[0];
        assert_eq!(web.rps, 6.0, "60 requests in 10 s");
        assert!((web.success_rate.unwrap() - 50.0 / 60.0).abs() < 1e-9);
        assert_eq!(web.active_requests, 4.0, "2 + 2 from two Envoys");
        assert_eq!(web.active_connections, 6.0);
        // 20 in (0,1], 20 in (1,5]: the median is at the edge of the first bucket.
        assert_eq!(web.p50_ms, Some(1.0));
        assert_eq!(v.reporting_envoys, 2);
        t.reporter_gone(b);
        assert_eq!(
            t.view(10).clusters[0].active_requests,
            2.0,
            "gone with its stream"
        );
    }

    #[test]
    fn endpoint_reports_give_rates_success_and_in_progress() {
        let t = TrafficAggregate::default();
        let a = t.reporter("edge-1", true);
        t.endpoint_reports(
            a,
            vec![EndpointReport {
                cluster: "web".into(),
                endpoint: "127.0.0.1:1".into(),
                successful: 18,
                errors: 2,
                in_progress: 1,
            }],
        );
        t.cluster_report(a, report("web", 20, 0, vec![0, 0, 0], 0));
        let v = t.view(10);
        let e = &v.clusters[0].endpoints[0];
        assert_eq!(e.rps, 2.0);
        assert_eq!(e.success_rate, Some(0.9));
        assert_eq!(e.active_requests, 1);
    }

    #[test]
    fn per_bucket_counts_include_the_overflow() {
        assert_eq!(per_bucket(&[2, 5, 5], 9), vec![2, 3, 0, 4]);
    }
}
