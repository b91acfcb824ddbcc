//! `flotilla-loadgen replicas`: N simulated Envoys split over two flotilla replicas sharing
//! one etcd, then a series of drains through replica A's admin API.
//!
//! For each drain it measures, from the moment before the API call:
//! - every stream on A and on B holding the drained endpoint as `DRAINING` (the EDS target is
//!   computed with flotilla's translation and the same drain, as `xds` does for config edits);
//! - the API call answering 200, which flotilla does only once etcd committed the transaction;
//! - the transaction itself, from replica A's `flotilla_store_write_seconds` (read before and
//!   after the drains);
//! - the write reaching an etcd watch on the state prefix, held by this process as the replicas
//!   hold theirs (same client code, same machine): etcd's watch delivery in the path.
//!
//! Streams with an even index go to A, odd ones to B.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use flotilla::overlay::{EndpointKey, Overlay};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::expect;
use crate::http;
use crate::procfs::{Probe, Usage};
use crate::report::Percentiles;
use crate::run_args::RunArgs;
use crate::scenario::{self, Scenario, Shape};
use crate::scrape;
use crate::server::{self, Flotilla};
use crate::shared::Shared;
use crate::stream::{self, Identity, Mode};

#[derive(Debug, clap::Args)]
pub(crate) struct ReplicasArgs {
    /// The etcd both replicas share, as `flotilla serve --store` takes it.
    #[arg(long)]
    store: String,
    /// Concurrent ADS streams in all, half on each replica.
    #[arg(long, default_value_t = 10_000)]
    streams: usize,
    #[arg(long, value_enum, default_value = "sotw")]
    mode: Mode,
    #[arg(long, default_value_t = 4)]
    fleets: usize,
    #[arg(long, default_value_t = 100)]
    clusters: usize,
    /// Endpoints per cluster.
    #[arg(long, default_value_t = 10)]
    endpoints: usize,
    /// Drains, one after the other: drain k drains the first endpoint of cluster k.
    #[arg(long, default_value_t = 10)]
    drains: usize,
    #[arg(long, default_value_t = 100)]
    streams_per_connection: usize,
    #[command(flatten)]
    run: RunArgs,
}

/// One replica's side of the run.
#[derive(Debug, Clone, serde::Serialize)]
struct ReplicaReport {
    name: &'static str,
    streams: usize,
    /// Every stream's drain latency, over every drain.
    drain: Percentiles,
    /// The slowest stream of each drain, in order.
    drain_max_ms: Vec<f64>,
    connected: Usage,
    after: Usage,
}

#[derive(Debug, Clone, serde::Serialize)]
struct Report {
    streams: usize,
    mode: Mode,
    clusters: usize,
    endpoints: usize,
    fleets: usize,
    drains: usize,
    debounce: String,
    failed_streams: u64,
    /// API call → 200 (etcd committed), over the drains.
    api: Percentiles,
    /// API call → the write seen by an etcd watch, over the drains.
    watch: Percentiles,
    /// The etcd transactions replica A timed during the drains.
    etcd_write: EtcdWrites,
    replicas: Vec<ReplicaReport>,
    loadgen: Usage,
}

/// From replica A's `flotilla_store_write_seconds`: bucket bounds, not exact percentiles.
#[derive(Debug, Clone, serde::Serialize)]
struct EtcdWrites {
    count: f64,
    mean_ms: f64,
    p50_at_most_ms: f64,
    p99_at_most_ms: f64,
}

const WRITE_METRIC: &str = "flotilla_store_write_seconds";

async fn writes(replica: &Flotilla) -> Result<scrape::Histogram> {
    Ok(scrape::histogram(
        &http::get(replica.admin, "/metrics").await?,
        WRITE_METRIC,
    ))
}

/// Runs the benchmark; returns whether every stream reached every drain.
pub(crate) async fn run(args: ReplicasArgs) -> Result<bool> {
    if args.drains > args.clusters {
        bail!("--drains {} > --clusters {}", args.drains, args.clusters);
    }
    let url = flotilla::etcd::StoreUrl::parse(&args.store)?;
    let shape = Shape {
        clusters: args.clusters,
        endpoints: args.endpoints,
        fleets: args.fleets,
        listener_port: 20000,
    };
    Scenario::check(&shape).map_err(anyhow::Error::msg)?;
    let scenario = Scenario::new(shape);
    let yaml = scenario.yaml();
    let fleet_names: Vec<String> = (0..args.fleets).map(scenario::fleet_name).collect();
    let mut overlays = vec![Overlay::default()];
    for k in 0..args.drains {
        let mut next = overlays[k].clone();
        next.draining.insert(drained(k));
        overlays.push(next);
    }
    let states: Vec<(&str, &Overlay)> = overlays.iter().map(|o| (yaml.as_str(), o)).collect();
    let (names, targets) = expect::targets_with(&states, &fleet_names)?;

    let dir = tempfile::tempdir()?;
    std::fs::create_dir(dir.path().join("config"))?;
    let config = dir.path().join("config/loadgen.yaml");
    std::fs::write(&config, &yaml)?;
    let binary = args
        .run
        .flotilla
        .clone()
        .unwrap_or_else(server::default_binary);
    let mut replicas = Vec::new();
    for name in ["a", "b"] {
        let extra = ["--store", &args.store, "--replica-id", name].map(String::from);
        let log = dir.path().join(format!("flotilla-{name}.log"));
        replicas.push(Flotilla::start(&binary, &config, &args.run.debounce, &log, &extra).await?);
    }
    let probes: Vec<Probe> = replicas.iter().map(|r| Probe::new(r.pid)).collect();
    let shared: Vec<Arc<Shared>> = (0..2)
        .map(|_| Arc::new(Shared::new(names.clone(), targets.clone())))
        .collect();
    let half = [args.streams.div_ceil(2), args.streams / 2];

    let mut channels = [Vec::new(), Vec::new()];
    for (r, replica) in replicas.iter().enumerate() {
        for _ in 0..half[r].div_ceil(args.streams_per_connection.max(1)) {
            channels[r].push(crate::xds::connect(replica.xds, None, None).await?);
        }
    }
    for s in &shared {
        s.start(0);
    }
    let mut tasks = Vec::with_capacity(args.streams);
    for i in 0..args.streams {
        let r = i % 2;
        let who = Identity {
            node_id: format!("loadgen-{i}"),
            fleet: i % args.fleets,
            fleet_name: fleet_names[i % args.fleets].clone(),
        };
        let channel = channels[r][(i / 2) % channels[r].len()].clone();
        tasks.push(tokio::spawn(stream::run(
            channel,
            who,
            args.mode,
            shared[r].clone(),
        )));
    }
    wait_all(&shared, &half, 0, args.run.timeout_secs).await;
    let connected: Vec<Usage> = probes.iter().map(Probe::sample).collect::<Result<_>>()?;
    info!(
        streams = args.streams,
        rss_a_mib = connected[0].rss_mib,
        rss_b_mib = connected[1].rss_mib,
        "every stream holds the initial config"
    );

    let mut events = watch(&url).await?;
    let writes_before = writes(&replicas[0]).await?;
    let (mut api, mut watched) = (Vec::new(), Vec::new());
    let mut drain_max_ms = [Vec::new(), Vec::new()];
    for k in 1..=args.drains {
        let key = drained(k - 1);
        let path = format!(
            "/api/v1/clusters/{}/endpoints/{}/drain",
            key.cluster, key.address
        );
        while events.try_recv().is_ok() {}
        for s in &shared {
            s.start(k);
        }
        let called = Instant::now();
        http::post(replicas[0].admin, &path).await?;
        api.push(called.elapsed());
        match tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
            Ok(Some(at)) => watched.push(at.saturating_duration_since(called)),
            _ => warn!(drain = k, "the etcd watch saw no event within 5 s"),
        }
        wait_all(&shared, &half, k, args.run.timeout_secs).await;
        for (r, s) in shared.iter().enumerate() {
            drain_max_ms[r].push(Percentiles::of(&s.latencies(k)).max_ms);
        }
        info!(
            drain = k,
            api_ms = ms(api[k - 1]),
            "drain reached every stream"
        );
        tokio::time::sleep(Duration::from_millis(args.run.settle_ms)).await;
    }

    let written = writes(&replicas[0]).await?.since(&writes_before);
    let mut reports = Vec::new();
    for (r, name) in ["A (took the API calls)", "B"].into_iter().enumerate() {
        let all: Vec<Duration> = (1..=args.drains)
            .flat_map(|k| shared[r].latencies(k))
            .collect();
        reports.push(ReplicaReport {
            name,
            streams: half[r],
            drain: Percentiles::of(&all),
            drain_max_ms: drain_max_ms[r].clone(),
            connected: connected[r],
            after: probes[r].sample()?,
        });
    }
    let report = Report {
        streams: args.streams,
        mode: args.mode,
        clusters: args.clusters,
        endpoints: args.endpoints,
        fleets: args.fleets,
        drains: args.drains,
        debounce: args.run.debounce.clone(),
        failed_streams: shared
            .iter()
            .map(|s| s.failed.load(std::sync::atomic::Ordering::Relaxed))
            .sum(),
        api: Percentiles::of(&api),
        watch: Percentiles::of(&watched),
        etcd_write: EtcdWrites {
            count: written.count,
            mean_ms: written.mean_ms(),
            p50_at_most_ms: written.quantile_bound_ms(0.5),
            p99_at_most_ms: written.quantile_bound_ms(0.99),
        },
        replicas: reports,
        loadgen: Probe::new(std::process::id()).sample()?,
    };
    // Before the replicas stop: a stream that outlived its server would count as failed.
    tasks.iter().for_each(tokio::task::JoinHandle::abort);
    print!("{}", table(&report));
    if let Some(path) = &args.run.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("write {}", path.display()))?;
    }
    let complete = report.failed_streams == 0
        && report
            .replicas
            .iter()
            .all(|r| r.drain.n == r.streams * args.drains)
        && watched.len() == args.drains;
    Ok(complete)
}

/// The endpoint drain `k` (from 0) drains: the first of cluster `k` (see [`Scenario::yaml`]).
fn drained(k: usize) -> EndpointKey {
    let address = format!("127.{}.{}.1:8080", 1 + k / 256, k % 256);
    EndpointKey::new(
        format!("c{k:04}"),
        address.parse().expect("a socket address"),
    )
}

/// Until every stream of both replicas reached target `k`, or the timeout.
async fn wait_all(shared: &[Arc<Shared>], half: &[usize; 2], k: usize, timeout_secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    while shared.iter().zip(half).any(|(s, n)| s.done_count(k) < *n) {
        if Instant::now() > deadline {
            warn!(
                phase = k,
                a = shared[0].done_count(k),
                b = shared[1].done_count(k),
                "not every stream reached the target"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// An etcd watch on the replicas' state prefix; sends the arrival time of each event batch.
async fn watch(url: &flotilla::etcd::StoreUrl) -> Result<mpsc::UnboundedReceiver<Instant>> {
    let client = flotilla::etcd::Client::new(url)?;
    let prefix = format!("{}state/", url.prefix);
    let mut watch = client.watch_prefix(&prefix, 0).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let _client = client;
        while let Ok(response) = watch.next().await {
            if !response.events.is_empty() && tx.send(Instant::now()).is_err() {
                return;
            }
        }
        warn!("the benchmark's etcd watch ended");
    });
    Ok(rx)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn table(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{} {:?} streams over 2 replicas, {} clusters x {} endpoints, {} fleets, debounce {}, \
         {} drains, failed streams {}",
        r.streams,
        r.mode,
        r.clusters,
        r.endpoints,
        r.fleets,
        r.debounce,
        r.drains,
        r.failed_streams
    );
    let _ = writeln!(
        t,
        "| path | n | p50 ms | p99 ms | max ms |\n| --- | --- | --- | --- | --- |"
    );
    let row = |t: &mut String, name: &str, p: &Percentiles| {
        let _ = writeln!(
            t,
            "| {name} | {} | {:.1} | {:.1} | {:.1} |",
            p.n, p.p50_ms, p.p99_ms, p.max_ms
        );
    };
    row(&mut t, "API call → 200 (etcd committed)", &r.api);
    row(&mut t, "API call → etcd watch event", &r.watch);
    let w = &r.etcd_write;
    let _ = writeln!(
        t,
        "| etcd transaction on A ({WRITE_METRIC}; p50, p99: bucket upper bounds; last column: mean) | {} | ≤ {:.2} | ≤ {:.2} | mean {:.2} |",
        w.count, w.p50_at_most_ms, w.p99_at_most_ms, w.mean_ms
    );
    for rep in &r.replicas {
        row(
            &mut t,
            &format!("API call → every stream on {}", rep.name),
            &rep.drain,
        );
    }
    let _ = writeln!(
        t,
        "\n| replica | streams | RSS connected MiB | RSS after drains MiB | peak RSS MiB | CPU s |\n\
         | --- | --- | --- | --- | --- | --- |"
    );
    for rep in &r.replicas {
        let _ = writeln!(
            t,
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.1} |",
            rep.name,
            rep.streams,
            rep.connected.rss_mib,
            rep.after.rss_mib,
            rep.after.peak_rss_mib,
            rep.after.cpu_s
        );
    }
    let _ = writeln!(
        t,
        "load generator: RSS {:.0} MiB (peak {:.0}), CPU {:.1} s",
        r.loadgen.rss_mib, r.loadgen.peak_rss_mib, r.loadgen.cpu_s
    );
    for rep in &r.replicas {
        let _ = writeln!(
            t,
            "slowest stream per drain on {}: {:?} ms",
            rep.name, rep.drain_max_ms
        );
    }
    t
}
