//! The aggregate, over every Envoy of every fleet, of what each reports about its upstream
//! traffic.
//!
//! Reports arrive per Envoy stream: cluster counters as deltas, cluster histograms as
//! cumulative buckets (turned into deltas here, per stream), gauges as current values, and
//! per-endpoint request counts from load reports. Rates live in one-second slots over the last
//! minute; gauges are summed over the streams that report them and vanish with their stream.
//!
//! Memory and work are bounded: a stream may report only on names its fleet was sent
//! (`known`), at most [`Limits`] clusters and endpoints per stream and in all, and anything
//! quiet for [`IDLE`] is forgotten, its Prometheus series with it. Ingesting a report costs
//! O(its size); the view the admin API serves is computed once a second by [`refresh`]
//! (O(clusters + endpoints + reported gauges)), off the request path.
//!
//! [`refresh`]: TrafficAggregate::refresh

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::known::{Known, KnownNames};
use super::metrics::TrafficMetrics;
use super::view::{self, TrafficView};
use super::window::{BucketRates, Rate};
use crate::cache::SnapshotCache;

/// Clusters, or endpoints, quiet this long are forgotten (and their series removed).
pub const IDLE: Duration = Duration::from_secs(300);
/// The window `/api/v1/traffic` reports rates over.
pub const WINDOW_SECONDS: u64 = 10;

/// How many names reports may bring in: in all, per fleet (so that one fleet's Envoys cannot
/// fill the view for everyone), and per reporting stream.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub clusters: usize,
    pub endpoints: usize,
    pub clusters_per_fleet: usize,
    pub endpoints_per_fleet: usize,
    /// Past these a stream is cut off with an error: no Envoy reports more.
    pub clusters_per_reporter: usize,
    pub endpoints_per_reporter: usize,
    /// Distinct names a stream may report that its fleet was never sent before it is cut off
    /// (a few are normal around a config change; thousands are not an Envoy).
    pub unknown_names_per_reporter: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            clusters: 20_000,
            endpoints: 200_000,
            clusters_per_fleet: 10_000,
            endpoints_per_fleet: 100_000,
            clusters_per_reporter: 10_000,
            endpoints_per_reporter: 100_000,
            unknown_names_per_reporter: 1_000,
        }
    }
}

/// Why a reporting stream is cut off.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CutOff {
    #[error("more than {0} distinct names this Envoy's fleet was never sent")]
    Unknown(usize),
    #[error("more than {0} clusters on one stats stream")]
    Clusters(usize),
    #[error("more than {0} endpoints in one load report")]
    Endpoints(usize),
}

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
pub(super) struct ClusterAgg {
    pub(super) by_class: [Rate; 5],
    pub(super) retries: Rate,
    pub(super) latency: BucketRates,
    last: Option<Instant>,
    /// The fleet that brought the name in, whose limit it counts against.
    fleet: Arc<str>,
}

#[derive(Default)]
pub(super) struct EndpointAgg {
    pub(super) successful: Rate,
    pub(super) errors: Rate,
    last: Option<Instant>,
    fleet: Arc<str>,
}

#[derive(Default, Clone, Copy)]
pub(super) struct Gauges {
    pub(super) active_requests: f64,
    pub(super) active_connections: f64,
    pub(super) ejections_active: f64,
}

pub(super) struct Reporter {
    pub(super) node: String,
    fleet: Arc<str>,
    /// Distinct names reported that the fleet was never sent (up to the limit).
    unknown: std::collections::HashSet<String>,
    /// A stats (metrics sink) stream, as opposed to a load-report stream.
    pub(super) stats: bool,
    /// The names this stream may report on (`None`: any, when not following a cache).
    known: Option<Known>,
    /// Per cluster reported on: its gauges (the set of this stream's clusters).
    pub(super) gauges: HashMap<String, Gauges>,
    /// Per cluster, the last per-bucket latency counts and sum (for deltas).
    latency: HashMap<String, (Vec<u64>, f64)>,
    pub(super) in_progress: HashMap<(String, String), u64>,
    /// When the last load report arrived.
    last_load_report: Option<Instant>,
}

#[derive(Default)]
pub(super) struct Inner {
    pub(super) clusters: HashMap<String, ClusterAgg>,
    /// Per cluster, its endpoints: a cluster's endpoints are found without a scan.
    pub(super) endpoints: HashMap<String, HashMap<String, EndpointAgg>>,
    endpoint_count: usize,
    /// Per fleet: the clusters and endpoints it brought in.
    per_fleet: HashMap<Arc<str>, (usize, usize)>,
    pub(super) reporters: HashMap<ReporterId, Reporter>,
    next_id: ReporterId,
}

/// Traffic numbers from every Envoy, shared by the sinks (writers) and the admin API.
#[derive(Default)]
pub struct TrafficAggregate {
    inner: Mutex<Inner>,
    known: KnownNames,
    limits: Limits,
    latest: Mutex<Arc<TrafficView>>,
    metrics: TrafficMetrics,
    /// Mesh calls allowed and denied by the sidecars' RBAC.
    pub mesh_calls: super::mesh_calls::MeshCalls,
}

pub(super) fn now_second() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TrafficAggregate {
    pub fn new(metrics: TrafficMetrics) -> Arc<TrafficAggregate> {
        Arc::new(TrafficAggregate {
            metrics,
            ..TrafficAggregate::default()
        })
    }

    pub(super) fn metrics(&self) -> &TrafficMetrics {
        &self.metrics
    }

    pub fn with_limits(limits: Limits) -> TrafficAggregate {
        TrafficAggregate {
            limits,
            ..TrafficAggregate::default()
        }
    }

    /// From now on, reports are accepted only on names in the snapshots of `cache`.
    pub fn follow(&self, cache: Arc<SnapshotCache>) {
        self.known.follow(cache);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new reporting stream from Envoy `node` of `fleet`: its stats stream (`stats`) or its
    /// load reports.
    pub fn reporter(&self, node: &str, fleet: &str, stats: bool) -> ReporterId {
        let known = self.known.for_fleet(fleet);
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        inner.reporters.insert(
            id,
            Reporter {
                node: node.to_string(),
                fleet: fleet.into(),
                unknown: Default::default(),
                stats,
                known,
                gauges: HashMap::new(),
                latency: HashMap::new(),
                in_progress: HashMap::new(),
                last_load_report: None,
            },
        );
        id
    }

    /// A stream ended: its gauges no longer count.
    pub fn reporter_gone(&self, id: ReporterId) {
        self.lock().reporters.remove(&id);
    }

    /// Takes one cluster's numbers from a stats stream; Err: the stream must be cut off.
    pub fn cluster_report(&self, id: ReporterId, mut report: ClusterReport) -> Result<(), CutOff> {
        let second = now_second();
        let now = Instant::now();
        let metrics = &self.metrics;
        let mut inner = self.lock();
        let inner = &mut *inner;
        let Some(reporter) = inner.reporters.get_mut(&id) else {
            return Ok(());
        };
        if let Some(known) = reporter.known.as_mut() {
            match known.current(&self.known).cluster(&report.cluster) {
                None => return unknown(&mut reporter.unknown, report.cluster, &self.limits),
                Some(name) if name != report.cluster => report.cluster = name.to_string(),
                Some(_) => {}
            }
        }
        let new_here = !reporter.gauges.contains_key(&report.cluster);
        if new_here && reporter.gauges.len() >= self.limits.clusters_per_reporter {
            return Err(CutOff::Clusters(self.limits.clusters_per_reporter));
        }
        if !inner.clusters.contains_key(&report.cluster) {
            let fleet = inner.per_fleet.entry(reporter.fleet.clone()).or_default();
            if inner.clusters.len() >= self.limits.clusters
                || fleet.0 >= self.limits.clusters_per_fleet
            {
                return Ok(());
            }
            fleet.0 += 1;
        }
        let agg = inner
            .clusters
            .entry(report.cluster.clone())
            .or_insert_with(|| {
                metrics.cluster_seen(&report.cluster);
                ClusterAgg {
                    fleet: reporter.fleet.clone(),
                    ..ClusterAgg::default()
                }
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
        let g = reporter.gauges.entry(report.cluster).or_default();
        if let Some(v) = report.active_requests {
            g.active_requests = v;
        }
        if let Some(v) = report.active_connections {
            g.active_connections = v;
        }
        if let Some(v) = report.ejections_active {
            g.ejections_active = v;
        }
        Ok(())
    }

    /// Takes one load report; Err: the stream must be cut off.
    pub fn endpoint_reports(
        &self,
        id: ReporterId,
        reports: Vec<EndpointReport>,
    ) -> Result<(), CutOff> {
        let second = now_second();
        let now = Instant::now();
        let metrics = &self.metrics;
        let mut inner = self.lock();
        let inner = &mut *inner;
        let Some(reporter) = inner.reporters.get_mut(&id) else {
            return Ok(());
        };
        if reports.len() > self.limits.endpoints_per_reporter {
            return Err(CutOff::Endpoints(self.limits.endpoints_per_reporter));
        }
        reporter.in_progress.clear();
        reporter.last_load_report = Some(now);
        let known = reporter.known.as_mut().map(|k| k.current(&self.known));
        for r in reports {
            if known.is_some_and(|k| !k.endpoint(&r.cluster, &r.endpoint)) {
                unknown(
                    &mut reporter.unknown,
                    format!("{}/{}", r.cluster, r.endpoint),
                    &self.limits,
                )?;
                continue;
            }
            let cluster = inner.endpoints.entry(r.cluster.clone()).or_default();
            if !cluster.contains_key(&r.endpoint) {
                let fleet = inner.per_fleet.entry(reporter.fleet.clone()).or_default();
                if inner.endpoint_count >= self.limits.endpoints
                    || fleet.1 >= self.limits.endpoints_per_fleet
                {
                    continue;
                }
                fleet.1 += 1;
                inner.endpoint_count += 1;
            }
            reporter
                .in_progress
                .insert((r.cluster.clone(), r.endpoint.clone()), r.in_progress);
            let agg = cluster
                .entry(r.endpoint.clone())
                .or_insert_with(|| EndpointAgg {
                    fleet: reporter.fleet.clone(),
                    ..EndpointAgg::default()
                });
            agg.last = Some(now);
            if r.successful > 0 {
                agg.successful.add(second, r.successful);
            }
            if r.errors > 0 {
                agg.errors.add(second, r.errors);
            }
            metrics.endpoint_requests(&r.cluster, &r.endpoint, r.successful, r.errors);
        }
        inner.endpoints.retain(|_, e| !e.is_empty());
        Ok(())
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

    /// Rates over the last `window` seconds, summed over every reporting Envoy, computed now.
    pub fn view(&self, window: u64) -> TrafficView {
        view::compute(&self.lock(), now_second(), window)
    }

    /// The view as of the last [`refresh`](TrafficAggregate::refresh) (what the admin API
    /// serves: reading it costs a clone, however many reports arrive).
    pub fn latest(&self) -> Arc<TrafficView> {
        self.latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Forgets what went quiet (and its Prometheus series), publishes the summed gauges and
    /// precomputes the view. Called once a second, off the async runtime's workers.
    pub fn refresh(&self) {
        self.refresh_at(Instant::now());
    }

    fn refresh_at(&self, now: Instant) {
        let view = {
            let mut inner = self.lock();
            forget_idle(&mut inner, &self.metrics, now);
            let view = view::compute(&inner, now_second(), WINDOW_SECONDS);
            let metrics = &self.metrics;
            let gauges = view::gauges(&inner);
            for cluster in inner.clusters.keys() {
                let g = gauges.get(cluster.as_str()).copied().unwrap_or_default();
                metrics.gauges(
                    cluster,
                    g.active_requests,
                    g.active_connections,
                    g.ejections_active,
                );
            }
            view
        };
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(view);
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

/// Remembers a name the reporter's fleet was never sent; Err once there are too many.
fn unknown(
    seen: &mut std::collections::HashSet<String>,
    name: String,
    limits: &Limits,
) -> Result<(), CutOff> {
    if seen.contains(&name) {
        return Ok(());
    }
    if seen.len() >= limits.unknown_names_per_reporter {
        return Err(CutOff::Unknown(limits.unknown_names_per_reporter));
    }
    seen.insert(name);
    Ok(())
}

fn forget_idle(inner: &mut Inner, metrics: &TrafficMetrics, now: Instant) {
    let fresh = |last: Option<Instant>| last.is_some_and(|l| now.duration_since(l) < IDLE);
    let per_fleet = &mut inner.per_fleet;
    inner.clusters.retain(|name, a| {
        let keep = fresh(a.last);
        if !keep {
            metrics.cluster_forget(name);
            if let Some(f) = per_fleet.get_mut(&a.fleet) {
                f.0 = f.0.saturating_sub(1);
            }
        }
        keep
    });
    let mut count = 0;
    inner.endpoints.retain(|cluster, endpoints| {
        endpoints.retain(|endpoint, a| {
            let keep = fresh(a.last);
            if !keep {
                metrics.endpoint_forget(cluster, endpoint);
                if let Some(f) = per_fleet.get_mut(&a.fleet) {
                    f.1 = f.1.saturating_sub(1);
                }
            }
            keep
        });
        count += endpoints.len();
        !endpoints.is_empty()
    });
    inner.endpoint_count = count;
    per_fleet.retain(|_, n| *n != (0, 0));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_flight(cluster: &str, endpoint: &str, n: u64) -> EndpointReport {
        EndpointReport {
            cluster: cluster.into(),
            endpoint: endpoint.into(),
            in_progress: n,
            ..Default::default()
        }
    }

    #[test]
    fn in_flight_since_waits_for_every_load_reporter_and_sums_them() {
        let t = TrafficAggregate::default();
        let key = [("web".to_string(), "127.0.0.1:1".to_string())];
        let before = Instant::now();
        assert_eq!(
            t.in_flight_since(&key, before),
            Some(0),
            "no reporter: nothing to wait for"
        );
        let _stats = t.reporter("edge-1", "edge", true);
        assert_eq!(
            t.in_flight_since(&key, before),
            Some(0),
            "stats streams carry no in-flight counts"
        );
        let a = t.reporter("edge-1", "edge", false);
        let b = t.reporter("edge-2", "edge", false);
        assert_eq!(t.in_flight_since(&key, before), None, "no report yet");
        t.endpoint_reports(a, vec![in_flight("web", "127.0.0.1:1", 2)])
            .unwrap();
        assert_eq!(t.in_flight_since(&key, before), None, "b has not reported");
        t.endpoint_reports(
            b,
            vec![
                in_flight("web", "127.0.0.1:1", 3),
                in_flight("web", "127.0.0.1:2", 9),
            ],
        )
        .unwrap();
        assert_eq!(t.in_flight_since(&key, before), Some(5));
        t.endpoint_reports(a, vec![]).unwrap();
        t.endpoint_reports(b, vec![in_flight("web", "127.0.0.1:2", 9)])
            .unwrap();
        assert_eq!(
            t.in_flight_since(&key, before),
            Some(0),
            "absent from a report: idle"
        );
        let later = Instant::now() + Duration::from_secs(1);
        assert_eq!(
            t.in_flight_since(&key, later),
            None,
            "reports older than `since` do not count"
        );
        t.reporter_gone(a);
        t.reporter_gone(b);
        assert_eq!(
            t.in_flight_since(&key, later),
            Some(0),
            "gone Envoys are not waited for"
        );
    }

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
    fn absurd_counts_do_not_overflow_the_view() {
        // Found by the stats_sink fuzz target: counts of u64::MAX in several classes
        // overflowed the cluster's total.
        let t = TrafficAggregate::default();
        let a = t.reporter("edge-1", "edge", true);
        let b = t.reporter("edge-1", "edge", false);
        for _ in 0..2 {
            t.cluster_report(
                a,
                ClusterReport {
                    cluster: "web".into(),
                    by_class: [u64::MAX; 5],
                    ..ClusterReport::default()
                },
            )
            .unwrap();
            let endpoint = EndpointReport {
                cluster: "web".into(),
                endpoint: "10.0.0.1:80".into(),
                successful: u64::MAX,
                errors: u64::MAX,
                in_progress: u64::MAX,
            };
            t.endpoint_reports(b, vec![endpoint]).unwrap();
        }
        let v = t.view(10);
        assert_eq!(v.clusters.len(), 1);
    }

    #[test]
    fn sums_over_envoys_and_turns_cumulative_buckets_into_rates() {
        let t = TrafficAggregate::default();
        let a = t.reporter("edge-1", "edge", true);
        let b = t.reporter("edge-2", "edge", true);
        // Baselines: history before flotilla saw the Envoy is not counted as latency.
        t.cluster_report(a, report("web", 10, 0, vec![100, 100, 100], 100))
            .unwrap();
        t.cluster_report(b, report("web", 10, 0, vec![0, 0, 0], 0))
            .unwrap();
        t.cluster_report(a, report("web", 30, 10, vec![120, 140, 140], 140))
            .unwrap();
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
        let a = t.reporter("edge-1", "edge", true);
        t.endpoint_reports(
            a,
            vec![EndpointReport {
                cluster: "web".into(),
                endpoint: "127.0.0.1:1".into(),
                successful: 18,
                errors: 2,
                in_progress: 1,
            }],
        )
        .unwrap();
        t.cluster_report(a, report("web", 20, 0, vec![0, 0, 0], 0))
            .unwrap();
        let v = t.view(10);
        let e = &v.clusters[0].endpoints[0];
        assert_eq!(e.rps, 2.0);
        assert_eq!(e.success_rate, Some(0.9));
        assert_eq!(e.active_requests, 1);
    }

    fn fleet_config() -> crate::cache::Inputs {
        let yaml = "version: 1
clusters:
  web: { endpoints: [127.0.0.1:8081] }
  internal: { endpoints: [127.0.0.1:8082] }
listeners:
  public: { address: 127.0.0.1:10000, routes: [ { to: web } ] }
  private: { address: 127.0.0.1:10001, routes: [ { to: internal } ] }
fleets:
  edge: { listeners: [public] }
";
        crate::cache::Inputs {
            config: Arc::new(
                crate::config::parse_str("t.yaml", yaml).unwrap_or_else(|e| panic!("{e}")),
            ),
            overlay: Arc::new(crate::overlay::Overlay::default()),
        }
    }

    fn endpoint(cluster: &str, endpoint: &str) -> EndpointReport {
        EndpointReport {
            cluster: cluster.into(),
            endpoint: endpoint.into(),
            successful: 5,
            ..EndpointReport::default()
        }
    }

    #[test]
    fn only_names_the_reporters_fleet_was_sent_are_accepted() {
        let cache = Arc::new(SnapshotCache::new());
        cache.update(fleet_config());
        let t = TrafficAggregate::default();
        t.follow(cache.clone());
        let edge = t.reporter("edge-1", "edge", true);
        for name in ["web", "internal", "fake-1", "fake-2"] {
            t.cluster_report(edge, report(name, 10, 5, vec![0, 0, 0], 0))
                .unwrap();
        }
        t.endpoint_reports(
            edge,
            vec![
                endpoint("web", "127.0.0.1:8081"),
                endpoint("web", "10.9.9.9:1"),
                endpoint("internal", "127.0.0.1:8082"),
            ],
        )
        .unwrap();
        let v = t.view(10);
        let names: Vec<&str> = v.clusters.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["web"], "edge was sent web only");
        let endpoints: Vec<&str> = v.clusters[0]
            .endpoints
            .iter()
            .map(|e| e.address.as_str())
            .collect();
        assert_eq!(endpoints, ["127.0.0.1:8081"]);
        // An Envoy of an undeclared fleet was sent nothing: all its reports are noise.
        let rogue = t.reporter("rogue", "typo", true);
        t.cluster_report(rogue, report("internal", 10, 0, vec![0, 0, 0], 0))
            .unwrap();
        assert_eq!(t.view(10).clusters.len(), 1);
    }

    #[test]
    fn a_reporter_and_all_reporters_are_held_to_their_limits() {
        let t = TrafficAggregate::with_limits(Limits {
            clusters: 5,
            endpoints: 6,
            clusters_per_fleet: 5,
            endpoints_per_fleet: 6,
            clusters_per_reporter: 3,
            endpoints_per_reporter: 10,
            unknown_names_per_reporter: 10,
        });
        let a = t.reporter("a", "edge", true);
        let b = t.reporter("b", "edge", true);
        for i in 0..3 {
            t.cluster_report(a, report(&format!("limit-a-{i}"), 1, 0, vec![0, 0, 0], 0))
                .unwrap();
        }
        // A stream bringing more clusters than any Envoy has is cut off.
        let cut = t.cluster_report(a, report("limit-a-3", 1, 0, vec![0, 0, 0], 0));
        assert_eq!(cut, Err(CutOff::Clusters(3)));
        for i in 0..3 {
            t.cluster_report(b, report(&format!("limit-b-{i}"), 1, 0, vec![0, 0, 0], 0))
                .unwrap();
        }
        // 3 from a, then b's first 2 fill the total of 5.
        assert_eq!(t.view(10).clusters.len(), 5);
        let reports = |cluster: &str, n: usize| -> Vec<EndpointReport> {
            (0..n)
                .map(|i| endpoint(cluster, &format!("10.0.0.{i}:1")))
                .collect()
        };
        t.endpoint_reports(a, reports("limit-a-0", 4)).unwrap();
        t.endpoint_reports(b, reports("limit-b-0", 10)).unwrap();
        let endpoints: usize = t.view(10).clusters.iter().map(|c| c.endpoints.len()).sum();
        assert_eq!(endpoints, 6, "4 from a, 2 from b");
        let cut = t.endpoint_reports(b, reports("limit-b-0", 11));
        assert_eq!(cut, Err(CutOff::Endpoints(10)));
    }

    #[test]
    fn one_fleet_cannot_fill_the_view_for_the_others() {
        let t = TrafficAggregate::with_limits(Limits {
            clusters: 6,
            clusters_per_fleet: 4,
            ..Limits::default()
        });
        let edge = t.reporter("e", "edge", true);
        let mesh = t.reporter("m", "mesh", true);
        for i in 0..6 {
            t.cluster_report(edge, report(&format!("edge-{i}"), 1, 0, vec![0, 0, 0], 0))
                .unwrap();
        }
        for i in 0..2 {
            t.cluster_report(mesh, report(&format!("mesh-{i}"), 1, 0, vec![0, 0, 0], 0))
                .unwrap();
        }
        let names: Vec<String> = t.view(10).clusters.iter().map(|c| c.name.clone()).collect();
        assert_eq!(names.iter().filter(|n| n.starts_with("edge")).count(), 4);
        assert_eq!(names.iter().filter(|n| n.starts_with("mesh")).count(), 2);
    }

    #[test]
    fn a_stream_reporting_many_names_it_was_never_sent_is_cut_off() {
        let t = TrafficAggregate::with_limits(Limits {
            unknown_names_per_reporter: 3,
            ..Limits::default()
        });
        let cache = Arc::new(SnapshotCache::new());
        cache.update(fleet_config());
        t.follow(cache);
        let a = t.reporter("a", "edge", true);
        for i in 0..3 {
            t.cluster_report(a, report(&format!("fake-{i}"), 1, 0, vec![0, 0, 0], 0))
                .unwrap();
        }
        // The same names again are no new evidence.
        t.cluster_report(a, report("fake-0", 1, 0, vec![0, 0, 0], 0))
            .unwrap();
        let cut = t.cluster_report(a, report("fake-3", 1, 0, vec![0, 0, 0], 0));
        assert_eq!(cut, Err(CutOff::Unknown(3)));
        assert!(t.view(10).clusters.is_empty());
    }

    #[test]
    fn quiet_clusters_and_endpoints_are_forgotten_with_their_series() {
        let mut registry = prometheus_client::registry::Registry::default();
        let t = TrafficAggregate::new(TrafficMetrics::register(&mut registry));
        let encode = || {
            let mut out = String::new();
            prometheus_client::encoding::text::encode(&mut out, &registry).expect("encode");
            out
        };
        let a = t.reporter("a", "edge", true);
        t.cluster_report(a, report("quiet-cluster", 3, 1, vec![0, 0, 0], 0))
            .unwrap();
        t.endpoint_reports(a, vec![endpoint("quiet-cluster", "10.7.7.7:80")])
            .unwrap();
        t.refresh();
        let metrics = encode();
        assert!(metrics.contains("cluster=\"quiet-cluster\""), "{metrics}");
        assert_eq!(t.latest().clusters.len(), 1, "the precomputed view");
        t.refresh_at(Instant::now() + IDLE + Duration::from_secs(1));
        let metrics = encode();
        assert!(!metrics.contains("quiet-cluster"), "{metrics}");
        assert!(t.latest().clusters.is_empty());
    }

    #[test]
    fn per_bucket_counts_include_the_overflow() {
        assert_eq!(per_bucket(&[2, 5, 5], 9), vec![2, 3, 0, 4]);
    }
}
