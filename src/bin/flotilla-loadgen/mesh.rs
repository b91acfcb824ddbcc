//! `flotilla-loadgen mesh`: N simulated sidecars in one mesh (issue 22's benchmark).
//!
//! flotilla serves a mesh of `--services` services; service i calls the `--calls` services
//! after it. Each of the `--instances` sidecars of a service is a delta ADS stream over mTLS
//! (its service's client certificate, as `flotilla certs issue --fleet S` makes) announcing an
//! inbound address in its node metadata, so it joins its service while it lives. Each inbound
//! address is a real TCP listener of this process: flotilla's TCP probes find it up.
//!
//! Each sidecar is a host of its own, as in a real mesh: its own connection, from its own
//! loopback address (127.1.y.z; all of 127.0.0.0/8 is loopback on Linux), where its inbound
//! listener also is. flotilla limits what one source address may open (64 registration
//! streams), so sidecars sharing 127.0.0.1 would stop at 64.
//!
//! Measured:
//! - flotilla's memory per sidecar stream once every stream holds every instance of the
//!   services it calls;
//! - for each of `--rounds` new instances, the time from its stream opening to every stream of
//!   every calling service holding the new address (and to each of them, per stream).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::core::v3::address::Address as AddressKind;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use flotilla::cache::ResourceType;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;
use tracing::{info, warn};

use crate::procfs::{Probe, Usage};
use crate::report::Percentiles;
use crate::run_args::RunArgs;
use crate::server::{self, Flotilla};

#[derive(Debug, clap::Args)]
pub(crate) struct MeshArgs {
    /// Services in the mesh.
    #[arg(long, default_value_t = 100)]
    services: usize,
    /// Sidecars (instances) of each service.
    #[arg(long, default_value_t = 20)]
    instances: usize,
    /// Services each service calls (the next ones, wrapping around).
    #[arg(long, default_value_t = 3)]
    calls: usize,
    /// New instances measured one after another, each of the next service in turn.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    #[command(flatten)]
    run: RunArgs,
}

/// What the run measured.
#[derive(Debug, serde::Serialize)]
struct MeshReport {
    services: usize,
    sidecars: usize,
    calls: usize,
    /// Opening every stream until every stream holds every instance it calls.
    initial_sync_s: f64,
    flotilla_before: Usage,
    flotilla_after: Usage,
    /// (RSS after − RSS before the streams) / sidecars.
    kib_per_sidecar: f64,
    /// New instance → every stream of every caller holds it (one value per round).
    to_every_caller: Percentiles,
    /// New instance → one calling stream holds it (one value per calling stream and round).
    to_each_caller: Percentiles,
    failed_streams: usize,
}

/// State every stream shares with the run.
#[derive(Default)]
struct Watch {
    /// Streams holding at least `instances` addresses in every cluster they call.
    complete: AtomicUsize,
    failed: AtomicUsize,
    /// The address of the instance being measured and when its stream opened.
    probe: Mutex<Option<(SocketAddr, Instant)>>,
    /// When each stream saw the measured address, for the current round.
    seen: Mutex<BTreeMap<usize, Duration>>,
}

fn service(i: usize) -> String {
    format!("s{i}")
}

/// The services service `i` calls.
fn called(i: usize, args: &MeshArgs) -> Vec<usize> {
    (1..=args.calls.min(args.services.saturating_sub(1)))
        .map(|k| (i + k) % args.services)
        .collect()
}

/// The mesh config: every service callable (`port`), calling the next `calls` ones, every
/// call allowed.
fn yaml(args: &MeshArgs) -> String {
    let mut out = String::from("version: 1\nmesh:\n  default: allow\n  services:\n");
    for i in 0..args.services {
        let calls: Vec<String> = called(i, args)
            .iter()
            .enumerate()
            .map(|(k, c)| format!("{}: {}", service(*c), 20_000 + k))
            .collect();
        out.push_str(&format!(
            "    {}: {{ port: 8080, calls: {{ {} }} }}\n",
            service(i),
            calls.join(", ")
        ));
    }
    out
}

pub(crate) async fn run(args: MeshArgs) -> Result<bool> {
    if args.services < 2 || args.instances == 0 {
        bail!("--services must be at least 2 and --instances at least 1");
    }
    let dir = tempfile::tempdir()?;
    let names: Vec<String> = (0..args.services).map(service).collect();
    let pki = crate::mtls::Pki::create(dir.path(), &names)?;
    let config = dir.path().join("flotilla.yaml");
    std::fs::write(&config, yaml(&args))?;
    let mut flags = pki.serve_flags.clone();
    flags.extend([
        "--mesh-ca-cert".to_string(),
        pki.ca.0.display().to_string(),
        "--mesh-ca-key".to_string(),
        pki.ca.1.display().to_string(),
    ]);
    let binary = args
        .run
        .flotilla
        .clone()
        .unwrap_or_else(server::default_binary);
    let flotilla = Flotilla::start(
        &binary,
        &config,
        &args.run.debounce,
        &dir.path().join("flotilla.log"),
        &flags,
    )
    .await?;
    let probe = Probe::new(flotilla.pid);
    let sidecars = args.services * args.instances;
    if sidecars + args.rounds > MAX_HOSTS {
        bail!("at most {MAX_HOSTS} sidecars (one loopback address each)");
    }
    // One connection per sidecar, from its own address, presenting its service's certificate.
    let mut channels = Vec::with_capacity(sidecars);
    for n in 0..sidecars {
        let tls = &pki.clients[n % args.services];
        channels.push(crate::xds::connect(flotilla.xds, Some(tls), Some(host(n))).await?);
    }
    let watch = Arc::new(Watch::default());
    let before = probe.sample()?;
    let started = Instant::now();
    let mut listeners = Vec::new();
    for (n, channel) in channels.into_iter().enumerate() {
        let i = n % args.services;
        let (inbound, accept) = listen(host(n)).await?;
        listeners.push(accept);
        let sidecar = Sidecar {
            index: n,
            service: i,
            node_id: format!("{}-{}", service(i), n / args.services),
            inbound,
            calls: called(i, &args).into_iter().map(service).collect(),
            want: args.instances,
        };
        tokio::spawn(sidecar.run(channel, watch.clone()));
    }
    let deadline = started + Duration::from_secs(args.run.timeout_secs);
    while watch.complete.load(Ordering::Relaxed) < sidecars {
        if Instant::now() > deadline {
            bail!(
                "{} of {sidecars} sidecars hold every instance they call after {} s ({} failed)",
                watch.complete.load(Ordering::Relaxed),
                args.run.timeout_secs,
                watch.failed.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let initial_sync_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(args.run.settle_ms)).await;
    let after = probe.sample()?;
    info!(
        initial_sync_s,
        rss_mib = after.rss_mib,
        "every sidecar in sync"
    );

    let (mut every, mut each) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        let target = round % args.services;
        let callers: BTreeSet<usize> = (0..args.services)
            .filter(|c| called(*c, &args).contains(&target))
            .collect();
        let expected = callers.len() * args.instances;
        let n = sidecars + round;
        let channel =
            crate::xds::connect(flotilla.xds, Some(&pki.clients[target]), Some(host(n))).await?;
        let (inbound, accept) = listen(host(n)).await?;
        listeners.push(accept);
        watch.seen.lock().unwrap_or_else(|e| e.into_inner()).clear();
        *watch.probe.lock().unwrap_or_else(|e| e.into_inner()) = Some((inbound, Instant::now()));
        let sidecar = Sidecar {
            index: n,
            service: target,
            node_id: format!("{}-new-{round}", service(target)),
            inbound,
            calls: Vec::new(),
            want: 0,
        };
        tokio::spawn(sidecar.run(channel, watch.clone()));
        let round_deadline = Instant::now() + Duration::from_secs(args.run.timeout_secs);
        loop {
            let seen = watch.seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let of_callers: Vec<Duration> = seen
                .iter()
                .filter(|(n, _)| **n < sidecars && callers.contains(&(**n % args.services)))
                .map(|(_, d)| *d)
                .collect();
            if of_callers.len() >= expected {
                every.push(of_callers.iter().copied().max().unwrap_or_default());
                each.extend(of_callers);
                break;
            }
            if Instant::now() > round_deadline {
                warn!(
                    round,
                    held = of_callers.len(),
                    expected,
                    "not every caller got the new instance"
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let report = MeshReport {
        services: args.services,
        sidecars,
        calls: args.calls,
        initial_sync_s,
        flotilla_before: before,
        flotilla_after: after,
        kib_per_sidecar: (after.rss_mib - before.rss_mib) * 1024.0 / sidecars as f64,
        to_every_caller: Percentiles::of(&every),
        to_each_caller: Percentiles::of(&each),
        failed_streams: watch.failed.load(Ordering::Relaxed),
    };
    println!(
        "flotilla-loadgen mesh: {} services x {} sidecars, {} calls each\n\
         initial sync {:.2} s; flotilla RSS {:.1} -> {:.1} MiB ({:.1} KiB per sidecar)\n\
         new instance -> every caller: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} rounds)\n\
         new instance -> each caller:  p50 {:.0} ms, p99 {:.0} ms ({} streams)\n\
         failed streams: {}",
        report.services,
        args.instances,
        report.calls,
        report.initial_sync_s,
        before.rss_mib,
        after.rss_mib,
        report.kib_per_sidecar,
        report.to_every_caller.p50_ms,
        report.to_every_caller.p99_ms,
        report.to_every_caller.max_ms,
        report.to_every_caller.n,
        report.to_each_caller.p50_ms,
        report.to_each_caller.p99_ms,
        report.to_each_caller.n,
        report.failed_streams,
    );
    if let Some(path) = &args.run.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    drop(listeners);
    Ok(report.failed_streams == 0 && every.len() == args.rounds)
}

/// Sidecars a run may simulate: one loopback address each.
const MAX_HOSTS: usize = 250 * 250;

/// The loopback address of simulated host `n`: 127.1.y.z, y and z in 1..=250.
fn host(n: usize) -> IpAddr {
    let octet = |v: usize| u8::try_from(v % 250 + 1).unwrap_or(1);
    IpAddr::V4(Ipv4Addr::new(127, 1, octet(n / 250), octet(n)))
}

/// A TCP listener on `ip` that accepts and closes (what flotilla's TCP probe needs), and its
/// task.
async fn listen(ip: IpAddr) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, 0))
        .await
        .with_context(|| format!("listen on {ip}"))?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            drop(conn);
        }
    });
    Ok((addr, task))
}

struct Sidecar {
    index: usize,
    service: usize,
    node_id: String,
    inbound: SocketAddr,
    /// The services it calls.
    calls: Vec<String>,
    /// Instances per called service that make this sidecar complete.
    want: usize,
}

impl Sidecar {
    async fn run(self, channel: Channel, watch: Arc<Watch>) {
        if let Err(e) = self.stream(channel, &watch).await {
            watch.failed.fetch_add(1, Ordering::Relaxed);
            warn!(node = %self.node_id, error = %format!("{e:#}"), "sidecar stream failed");
        }
    }

    fn node(&self) -> Node {
        let mut metadata = Struct::default();
        metadata.fields.insert(
            "flotilla.inbound".to_string(),
            Value {
                kind: Some(Kind::StringValue(self.inbound.to_string())),
            },
        );
        Node {
            id: self.node_id.clone(),
            cluster: service(self.service),
            metadata: Some(metadata),
            ..Default::default()
        }
    }

    /// A delta ADS stream as Envoy runs it: CDS and LDS wildcard, EDS for the clusters CDS
    /// returned, every response ACKed.
    async fn stream(&self, channel: Channel, watch: &Watch) -> Result<()> {
        let mut client =
            AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(64 << 20);
        let (tx, rx) = mpsc::unbounded_channel();
        let request = |t: ResourceType| DeltaDiscoveryRequest {
            type_url: t.type_url().to_string(),
            ..Default::default()
        };
        tx.send(DeltaDiscoveryRequest {
            node: Some(self.node()),
            ..request(ResourceType::Cluster)
        })?;
        tx.send(request(ResourceType::Listener))?;
        let mut responses = client
            .delta_aggregated_resources(UnboundedReceiverStream::new(rx))
            .await?
            .into_inner();
        let mut clusters: BTreeSet<String> = BTreeSet::new();
        let mut subscribed: BTreeSet<String> = BTreeSet::new();
        // Addresses of each held ClusterLoadAssignment of a called service.
        let mut held: BTreeMap<String, BTreeSet<SocketAddr>> = BTreeMap::new();
        let mut complete = false;
        while let Some(resp) = responses
            .message()
            .await
            .context("the stream ended with an error")?
        {
            let t = ResourceType::from_type_url(&resp.type_url)
                .ok_or_else(|| anyhow!("unexpected type {}", resp.type_url))?;
            match t {
                ResourceType::Cluster => {
                    clusters.extend(resp.resources.iter().map(|r| r.name.clone()));
                    for gone in &resp.removed_resources {
                        clusters.remove(gone);
                    }
                    let new: Vec<String> = clusters.difference(&subscribed).cloned().collect();
                    if !new.is_empty() {
                        tx.send(DeltaDiscoveryRequest {
                            resource_names_subscribe: new.clone(),
                            ..request(ResourceType::Endpoint)
                        })?;
                        subscribed.extend(new);
                    }
                }
                ResourceType::Endpoint => {
                    for r in &resp.resources {
                        let Some(body) = &r.resource else { continue };
                        let cla = ClusterLoadAssignment::decode(body.value.as_slice())?;
                        let addrs = addresses(&cla);
                        if let Some((probe, opened)) =
                            *watch.probe.lock().unwrap_or_else(|e| e.into_inner())
                            && addrs.contains(&probe)
                        {
                            watch
                                .seen
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .entry(self.index)
                                .or_insert_with(|| opened.elapsed());
                        }
                        held.insert(r.name.clone(), addrs);
                    }
                    if !complete
                        && self.calls.iter().all(|s| {
                            held.iter().any(|(name, a)| {
                                name.ends_with(&format!(":{s}")) && a.len() >= self.want
                            })
                        })
                    {
                        complete = true;
                        watch.complete.fetch_add(1, Ordering::Relaxed);
                    }
                }
                _ => {}
            }
            tx.send(DeltaDiscoveryRequest {
                response_nonce: resp.nonce,
                ..request(t)
            })?;
        }
        Err(anyhow!("flotilla closed the stream"))
    }
}

fn addresses(cla: &ClusterLoadAssignment) -> BTreeSet<SocketAddr> {
    let mut out = BTreeSet::new();
    for e in cla.endpoints.iter().flat_map(|l| &l.lb_endpoints) {
        let Some(HostIdentifier::Endpoint(ep)) = &e.host_identifier else {
            continue;
        };
        let Some(AddressKind::SocketAddress(sa)) =
            ep.address.as_ref().and_then(|a| a.address.as_ref())
        else {
            continue;
        };
        let port = match sa.port_specifier {
            Some(
                envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(
                    p,
                ),
            ) => p,
            _ => continue,
        };
        if let (Ok(ip), Ok(port)) = (sa.address.parse(), u16::try_from(port)) {
            out.insert(SocketAddr::new(ip, port));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        mesh: MeshArgs,
    }

    #[test]
    fn the_generated_mesh_is_a_valid_config() {
        let args = Cli::parse_from(["x", "--services", "5", "--calls", "3"]).mesh;
        let config = flotilla::config::parse_str("mesh.yaml", &yaml(&args)).expect("valid");
        let mesh = config.mesh.expect("a mesh");
        assert_eq!(mesh.services.len(), 5);
        assert_eq!(called(4, &args), [0, 1, 2]);
    }

    #[test]
    fn every_simulated_host_has_its_own_loopback_address() {
        let hosts: BTreeSet<IpAddr> = (0..MAX_HOSTS).map(host).collect();
        assert_eq!(hosts.len(), MAX_HOSTS);
        assert!(hosts.iter().all(|h| h.is_loopback()));
        assert_eq!(host(0), IpAddr::V4(Ipv4Addr::new(127, 1, 1, 1)));
        assert_eq!(host(251), IpAddr::V4(Ipv4Addr::new(127, 1, 2, 2)));
    }
}
