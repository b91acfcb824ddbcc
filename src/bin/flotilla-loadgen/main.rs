//! flotilla-loadgen: benchmarks flotilla with simulated and real Envoys.
//!
//! `xds` opens N ADS streams that behave like Envoys and measures how long flotilla takes to
//! bring all of them to each new config; `propagation` measures a file write → every real
//! Envoy acknowledging it, next to Envoy's own filesystem subscription; `replicas` measures a
//! drain through one replica reaching the streams of two replicas on etcd; `mesh` measures
//! simulated sidecars of a service mesh. See BENCHMARKS.md.
#![allow(clippy::print_stdout)] // the report is this tool's output

mod envoy;
mod expect;
mod http;
mod limits;
mod mesh;
mod mtls;
mod pathsource;
mod procfs;
mod propagation;
mod replicas;
mod report;
mod run_args;
mod scenario;
mod scrape;
mod server;
mod shared;
mod stream;
mod xds;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(version, about = "Benchmarks for flotilla (see BENCHMARKS.md)")]
struct Cli {
    /// Worker threads of the load generator (it shares the machine with flotilla).
    #[arg(long, default_value_t = 1, global = true)]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// N simulated Envoys (ADS, SotW or delta) and a series of config changes.
    Xds(xds::XdsArgs),
    /// File write → every real Envoy acknowledging it; flotilla next to path_config_source.
    Propagation(propagation::PropagationArgs),
    /// N simulated Envoys split over two replicas on etcd; drains through one replica's API.
    Replicas(replicas::ReplicasArgs),
    /// N simulated mesh sidecars: memory per sidecar, a new instance reaching every caller.
    Mesh(mesh::MeshArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LOADGEN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()?;
    let complete = runtime.block_on(async {
        match cli.command {
            Command::Xds(args) => xds::run(args).await,
            Command::Propagation(args) => propagation::run(args).await,
            Command::Replicas(args) => replicas::run(args).await,
            Command::Mesh(args) => mesh::run(args).await,
        }
    })?;
    // Streams still open belong to the runtime; dropping it ends them without waiting.
    runtime.shutdown_background();
    if !complete {
        anyhow::bail!("not every stream reached every target (see the report)");
    }
    Ok(())
}
