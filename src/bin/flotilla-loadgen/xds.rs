//! `flotilla-loadgen xds`: N simulated Envoys on one flotilla, then a series of config changes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tonic::transport::{Channel, Endpoint};
use tracing::{info, warn};

use crate::expect;
use crate::limits;
use crate::procfs::{Probe, Usage};
use crate::report::{KindSummary, Percentiles, PhaseReport, Report};
use crate::run_args::RunArgs;
use crate::scenario::{self, ChangeKind, Scenario, Shape};
use crate::server::{self, Flotilla};
use crate::shared::Shared;
use crate::stream::{self, Identity, Mode};

#[derive(Debug, clap::Args)]
pub(crate) struct XdsArgs {
    /// Concurrent ADS streams, each a distinct Envoy node.
    #[arg(long, default_value_t = 1000)]
    streams: usize,
    #[arg(long, value_enum, default_value = "sotw")]
    mode: Mode,
    /// Streams are spread round-robin over this many fleets (node.cluster).
    #[arg(long, default_value_t = 4)]
    fleets: usize,
    #[arg(long, default_value_t = 1000)]
    clusters: usize,
    /// Endpoints per cluster.
    #[arg(long, default_value_t = 10)]
    endpoints: usize,
    /// HTTP/2 connections carry this many streams each (a real Envoy has one connection of its
    /// own; 10,000 connections would need 20,000 file descriptors on one machine).
    #[arg(long, default_value_t = 100)]
    streams_per_connection: usize,
    /// The changes, in order: `endpoint=N,cluster=N,rewrite=N`.
    #[arg(long, default_value = "endpoint=5,cluster=3,rewrite=2")]
    changes: String,
    #[command(flatten)]
    run: RunArgs,
    /// Serve and connect over mTLS (certificates made for the run; every connection presents
    /// a client certificate allowing every fleet).
    #[arg(long)]
    tls: bool,
}

/// Runs the benchmark; returns whether every stream reached every target.
pub(crate) async fn run(args: XdsArgs) -> Result<bool> {
    let kinds = scenario::parse_changes(&args.changes).map_err(anyhow::Error::msg)?;
    let shape = Shape {
        clusters: args.clusters,
        endpoints: args.endpoints,
        fleets: args.fleets,
        // No Envoy binds these: the streams are simulated.
        listener_port: 20000,
    };
    Scenario::check(&shape).map_err(anyhow::Error::msg)?;
    let mut scenario = Scenario::new(shape);
    let mut yamls = vec![scenario.yaml()];
    for kind in &kinds {
        scenario.apply(*kind);
        yamls.push(scenario.yaml());
    }
    let fleet_names: Vec<String> = (0..args.fleets).map(scenario::fleet_name).collect();
    let started = Instant::now();
    let (names, targets) = expect::targets(&yamls, &fleet_names)?;
    info!(elapsed = ?started.elapsed(), states = yamls.len(), "targets computed");

    let mut connections = args.streams.div_ceil(args.streams_per_connection.max(1));
    if args.tls {
        // A connection presents one fleet's certificate: a multiple of the fleet count keeps
        // stream i (fleet i % fleets) on connection i % connections of its own fleet.
        connections = connections.next_multiple_of(args.fleets.max(1));
    }
    limits::open_files(args.streams, connections)?;
    let dir = tempfile::tempdir()?;
    std::fs::create_dir(dir.path().join("config"))?;
    let config = dir.path().join("config/loadgen.yaml");
    std::fs::write(&config, &yamls[0])?;
    let binary = args
        .run
        .flotilla
        .clone()
        .unwrap_or_else(server::default_binary);
    let pki = match args.tls {
        true => Some(crate::mtls::Pki::create(dir.path(), &fleet_names)?),
        false => None,
    };
    let mut flotilla = Flotilla::start(
        &binary,
        &config,
        &args.run.debounce,
        &dir.path().join("flotilla.log"),
        pki.as_ref().map_or(&[][..], |p| p.serve_flags.as_slice()),
    )
    .await?;
    let probe = Probe::new(flotilla.pid);
    let me = Probe::new(std::process::id());
    let shared = Arc::new(Shared::new(names, targets));

    let mut channels = Vec::with_capacity(connections);
    let connecting = (Instant::now(), probe.sample()?);
    for c in 0..connections {
        let tls = pki.as_ref().map(|p| &p.clients[c % p.clients.len()]);
        channels.push(connect(flotilla.xds, tls, None).await?);
    }
    let connect_s = connecting.0.elapsed().as_secs_f64();
    let connect_cpu_s = probe.sample()?.cpu_s - connecting.1.cpu_s;
    info!(
        connections,
        connect_s,
        connect_cpu_s,
        tls = args.tls,
        "connected"
    );

    let mut phases = Vec::new();
    for (k, yaml) in yamls.iter().enumerate() {
        let name = match k {
            0 => "initial config".to_string(),
            _ => format!("{k}: {}", kinds[k - 1].name()),
        };
        let before = (shared.traffic.count(), probe.sample()?, me.sample()?);
        shared.start(k);
        if k == 0 {
            for i in 0..args.streams {
                let who = Identity {
                    node_id: format!("loadgen-{i}"),
                    fleet: i % args.fleets,
                    fleet_name: fleet_names[i % args.fleets].clone(),
                };
                let channel = channels[i % connections].clone();
                tokio::spawn(stream::run(channel, who, args.mode, shared.clone()));
            }
        } else {
            server::write_atomically(&config, yaml)?;
        }
        let deadline = Instant::now() + Duration::from_secs(args.run.timeout_secs);
        let mut watched = Instant::now();
        // Streams that failed will never arrive: waiting for them would only wait out the
        // deadline.
        while shared.done_count(k)
            + (shared.failed.load(std::sync::atomic::Ordering::Relaxed) as usize)
            < args.streams
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if watched.elapsed() >= Duration::from_millis(200) {
                watched = Instant::now();
                watch(&mut flotilla, &probe, &me, &name)?;
            }
        }
        let latencies = shared.latencies(k);
        if latencies.len() < args.streams {
            warn!(phase = %name, done = latencies.len(), "not every stream reached the target");
        }
        tokio::time::sleep(Duration::from_millis(args.run.settle_ms)).await;
        let after: (_, Usage, Usage) = (shared.traffic.count(), probe.sample()?, me.sample()?);
        let report = PhaseReport {
            name,
            completed: latencies.len(),
            latency: Percentiles::of(&latencies),
            traffic: after.0.since(&before.0),
            flotilla_cpu_s: after.1.cpu_s - before.1.cpu_s,
            loadgen_cpu_s: after.2.cpu_s - before.2.cpu_s,
            flotilla_after: after.1,
            latencies,
        };
        info!(phase = %report.name, done = report.completed, p50_ms = report.latency.p50_ms,
            p99_ms = report.latency.p99_ms, max_ms = report.latency.max_ms,
            bytes = report.traffic.total_bytes(), flotilla_cpu_s = report.flotilla_cpu_s,
            rss_mib = report.flotilla_after.rss_mib, "phase done");
        phases.push(report);
    }

    let by_kind = [
        ChangeKind::Endpoint,
        ChangeKind::Cluster,
        ChangeKind::Rewrite,
    ]
    .into_iter()
    .filter_map(|kind| {
        let of_kind: Vec<&PhaseReport> = phases[1..]
            .iter()
            .zip(&kinds)
            .filter(|(_, k)| **k == kind)
            .map(|(p, _)| p)
            .collect();
        (!of_kind.is_empty()).then(|| KindSummary::of(kind.name(), &of_kind, args.streams))
    })
    .collect();
    let report = Report {
        mode: args.mode,
        streams: args.streams,
        connections,
        clusters: args.clusters,
        endpoints: args.endpoints,
        fleets: args.fleets,
        debounce: args.run.debounce.clone(),
        failed_streams: shared.failed.load(std::sync::atomic::Ordering::Relaxed),
        tls: args.tls,
        connect_s,
        connect_cpu_s,
        flotilla_peak_rss_mib: probe.sample()?.peak_rss_mib,
        phases,
        by_kind,
    };
    print!("{}", report.table());
    if let Some(path) = &args.run.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("write {}", path.display()))?;
    }
    let complete =
        report.failed_streams == 0 && report.phases.iter().all(|p| p.completed == args.streams);
    if let Some(error) = shared.first_error() {
        warn!(failed = report.failed_streams, first_error = %error, "streams failed");
    }
    Ok(complete)
}

/// Ends the run, naming the limit, when flotilla has exited or the machine's memory is about
/// to run out (before the out-of-memory killer picks a process).
fn watch(flotilla: &mut Flotilla, probe: &Probe, me: &Probe, phase: &str) -> Result<()> {
    if let Some(status) = flotilla.exited() {
        anyhow::bail!(
            "flotilla exited during phase \"{phase}\": {status}{}",
            limits::exit_hint(&status)
        );
    }
    let memory = limits::Memory::read()?;
    if memory.exhausted() {
        let (f, l) = (probe.sample()?, me.sample()?);
        anyhow::bail!(
            "memory ran out during phase \"{phase}\": {:.0} MiB of {:.0} MiB available, \
             flotilla holds {:.0} MiB and the load generator {:.0} MiB; run fewer streams",
            memory.available_mib,
            memory.total_mib,
            f.rss_mib,
            l.rss_mib
        );
    }
    Ok(())
}

/// One HTTP/2 connection, from local address `source` if given (a simulated host of its
/// own). Windows as large as Envoy's defaults would make flow control irrelevant; these are
/// large enough that it never limits a response of this benchmark.
pub(crate) async fn connect(
    addr: std::net::SocketAddr,
    tls: Option<&flotilla::tls::ClientTls>,
    source: Option<std::net::IpAddr>,
) -> Result<Channel> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .local_address(source)
        .initial_stream_window_size(4 << 20)
        .initial_connection_window_size(32 << 20);
    let channel = match tls {
        None => endpoint.connect().await,
        Some(tls) => {
            let mut connector = tls.connector(&addr.ip().to_string(), addr.port())?;
            if let Some(ip) = source {
                connector = connector.from_source(ip);
            }
            endpoint.connect_with_connector(connector).await
        }
    };
    channel.with_context(|| format!("connect to flotilla at {addr}"))
}
