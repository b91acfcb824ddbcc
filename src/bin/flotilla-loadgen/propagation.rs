//! `flotilla-loadgen propagation`: a file write → every real Envoy running the new version.
//!
//! Two ways to get the same 100 edits (one endpoint weight each) into the same Envoys:
//! - flotilla: the YAML is rewritten; flotilla notices (inotify + `--debounce`), translates,
//!   pushes over ADS. Done when flotilla's `/api/v1/nodes` shows every Envoy's acknowledged
//!   version of every type equal to the new config's (computed with flotilla's translation).
//! - Envoy's own filesystem subscription (`path_config_source`, see `pathsource`), the peer
//!   figure: done when every Envoy's `cluster.<name>.update_success` counter moved.
//!
//! Both are polled (`--poll-ms`, `--envoy-poll-ms`). Next to that, for both, the moment each Envoy applied
//! the edit comes from Envoy itself: the edited cluster's `update_time` gauge (wall clock,
//! millisecond resolution), so "applied" is measured the same way for both and does not
//! depend on polling.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tracing::info;

use crate::envoy::{self, Envoy};
use crate::expect::{self, Target};
use crate::http;
use crate::pathsource;
use crate::report::Percentiles;
use crate::scenario::{self, ChangeKind, Scenario, Shape};
use crate::server::{self, Flotilla};

#[derive(Debug, clap::Args)]
pub(crate) struct PropagationArgs {
    /// The Envoy binary.
    #[arg(long, env = "ENVOY_BIN")]
    pub(crate) envoy: PathBuf,
    /// Numbers of Envoys to measure with, one run each.
    #[arg(long, default_value = "1,10", value_delimiter = ',')]
    pub(crate) envoys: Vec<usize>,
    /// flotilla `--debounce` values, one run each.
    #[arg(long, default_value = "100ms,10ms", value_delimiter = ',')]
    pub(crate) debounce: Vec<String>,
    #[arg(long, default_value_t = 100)]
    pub(crate) edits: usize,
    #[arg(long, default_value_t = 100)]
    pub(crate) clusters: usize,
    #[arg(long, default_value_t = 10)]
    pub(crate) endpoints: usize,
    /// The flotilla binary (default: next to this one).
    #[arg(long)]
    pub(crate) flotilla: Option<PathBuf>,
    /// How often flotilla's /api/v1/nodes is read while waiting for the ACKs.
    #[arg(long, default_value_t = 2)]
    pub(crate) poll_ms: u64,
    /// How often every Envoy's /stats is read while waiting. Each read costs Envoy a few ms
    /// of CPU: ten Envoys polled every 20 ms already took most of this machine's two cores and
    /// slowed down what was measured. The "applied" figure does not depend on it.
    #[arg(long, default_value_t = 100)]
    pub(crate) envoy_poll_ms: u64,
    /// Also write the results as JSON here.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
}

#[derive(Debug, serde::Serialize)]
struct Row {
    how: String,
    envoys: usize,
    /// Write → flotilla saw every ACK (flotilla), or every Envoy's counter moved (files).
    done: Percentiles,
    /// Write → the last Envoy applied it, from Envoy's own `update_time`.
    applied: Percentiles,
}

/// Per edit: (observed done, applied by the last Envoy).
pub(crate) type Timings = (Vec<Duration>, Vec<Duration>);

fn row(how: String, envoys: usize, (done, applied): Timings) -> Row {
    Row {
        how,
        envoys,
        done: Percentiles::of(&done),
        applied: Percentiles::of(&applied),
    }
}

/// How long after `start_ms` the last of `admins` applied an update to `cluster`.
pub(crate) async fn applied(
    admins: &[SocketAddr],
    cluster: &str,
    start_ms: u64,
) -> Result<Duration> {
    let times = envoy::stats(admins, &format!("cluster.{cluster}.update_time")).await?;
    let last = times.into_iter().max().unwrap_or(start_ms);
    Ok(Duration::from_millis(last.saturating_sub(start_ms)))
}

/// The cluster the `i`-th endpoint edit touches, as `Scenario::apply` picks it.
pub(crate) fn edited_cluster(i: usize, clusters: usize) -> String {
    format!("c{:04}", (i * 7919) % clusters)
}

pub(crate) async fn run(args: PropagationArgs) -> Result<bool> {
    let shape = |listener_port| Shape {
        clusters: args.clusters,
        endpoints: args.endpoints,
        fleets: 1,
        listener_port,
    };
    let mut rows = Vec::new();
    for &n in &args.envoys {
        for debounce in &args.debounce {
            let timings = via_flotilla(&args, shape(http::free_addr()?.port()), n, debounce)
                .await
                .with_context(|| format!("flotilla, {n} Envoys, --debounce {debounce}"))?;
            rows.push(row(
                format!("flotilla (ADS, --debounce {debounce})"),
                n,
                timings,
            ));
            info!(row = ?rows.last(), "done");
        }
        let timings = pathsource::via_files(&args, shape(20000), n)
            .await
            .with_context(|| format!("path_config_source, {n} Envoys"))?;
        rows.push(row(
            "Envoy path_config_source (CDS + EDS files)".to_string(),
            n,
            timings,
        ));
        info!(row = ?rows.last(), "done");
    }
    println!(
        "{} edits (one endpoint weight each) of {} clusters x {} endpoints; flotilla polled every {} ms, Envoys every {} ms\n",
        args.edits, args.clusters, args.endpoints, args.poll_ms, args.envoy_poll_ms
    );
    println!(
        "| how | Envoys | done: p50 | p99 | max | applied (Envoy's update_time): p50 | p99 | max |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in &rows {
        println!(
            "| {} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.0} ms | {:.0} ms | {:.0} ms |",
            r.how,
            r.envoys,
            r.done.p50_ms,
            r.done.p99_ms,
            r.done.max_ms,
            r.applied.p50_ms,
            r.applied.p99_ms,
            r.applied.max_ms
        );
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&rows)?)?;
    }
    Ok(rows.iter().all(|r| r.done.n == args.edits))
}

/// The scenario's states: the initial config, then one endpoint edit each.
pub(crate) fn states(shape: Shape, edits: usize) -> Vec<String> {
    let mut scenario = Scenario::new(shape);
    let mut out = vec![scenario.yaml()];
    for _ in 0..edits {
        scenario.apply(ChangeKind::Endpoint);
        out.push(scenario.yaml());
    }
    out
}

async fn via_flotilla(
    args: &PropagationArgs,
    shape: Shape,
    n: usize,
    debounce: &str,
) -> Result<Timings> {
    let yamls = states(shape, args.edits);
    let fleet = scenario::fleet_name(0);
    let (_, targets) = expect::targets(&yamls, std::slice::from_ref(&fleet))?;
    let dir = tempfile::tempdir()?;
    std::fs::create_dir(dir.path().join("config"))?;
    let config = dir.path().join("config/flotilla.yaml");
    std::fs::write(&config, &yamls[0])?;
    let binary = args.flotilla.clone().unwrap_or_else(server::default_binary);
    let flotilla = Flotilla::start(
        &binary,
        &config,
        debounce,
        &dir.path().join("flotilla.log"),
        &[],
    )
    .await?;
    let mut envoys = Vec::new();
    for i in 0..n {
        let admin = http::free_addr()?;
        let bootstrap = dir.path().join(format!("envoy-{i}.yaml"));
        let out = std::process::Command::new(&binary)
            .args([
                "bootstrap",
                "--node-id",
                &format!("prop-{i}"),
                "--fleet",
                &fleet,
            ])
            .args(["--xds", &flotilla.xds.to_string()])
            .args(["--admin-port", &admin.port().to_string()])
            .output()?;
        if !out.status.success() {
            bail!(
                "flotilla bootstrap: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::fs::write(&bootstrap, out.stdout)?;
        let log = dir.path().join(format!("envoy-{i}.log"));
        envoys.push(Envoy::start(&args.envoy, &bootstrap, admin, &log).await?);
    }
    let poll = Duration::from_millis(args.poll_ms);
    wait_acked(&flotilla, &targets[0], n, Duration::from_secs(60), poll).await?;
    let admins: Vec<SocketAddr> = envoys.iter().map(|e| e.admin).collect();
    let mut timings: Timings = Default::default();
    for (k, yaml) in yamls.iter().enumerate().skip(1) {
        let (start, start_ms) = (Instant::now(), envoy::unix_ms());
        server::write_atomically(&config, yaml)?;
        wait_acked(&flotilla, &targets[k], n, Duration::from_secs(10), poll).await?;
        timings.0.push(start.elapsed());
        let cluster = edited_cluster(k - 1, args.clusters);
        timings.1.push(applied(&admins, &cluster, start_ms).await?);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(envoys);
    Ok(timings)
}

/// Until every one of `n` Envoys has acknowledged `target` for every type.
async fn wait_acked(
    flotilla: &Flotilla,
    target: &Target,
    n: usize,
    timeout: Duration,
    poll: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let want = &target.fleets[0].sotw;
    loop {
        let nodes: Value =
            serde_json::from_str(&http::get(flotilla.admin, "/api/v1/nodes").await?)?;
        let acked = nodes
            .as_array()
            .into_iter()
            .flatten()
            .filter(|node| {
                ["cds", "eds", "lds", "rds"]
                    .iter()
                    .zip(want)
                    .all(|(t, v)| node["types"][t]["acked_version"].as_str() == Some(v))
            })
            .count();
        if acked == n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{acked} of {n} Envoys acknowledged the new config after {timeout:?}");
        }
        tokio::time::sleep(poll).await;
    }
}
