//! The command line: argument parsing and the small commands that are not the server.

mod admin_client;
pub(crate) mod certs;
pub(crate) mod diff;
pub(crate) mod gitops;
pub(crate) mod sidecar;
mod tls_args;

#[cfg(test)]
mod docs_tests;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use flotilla::config;
use flotilla::envoy::bootstrap::{self, BootstrapOptions};
use flotilla::envoy::{json, yaml};
use flotilla::grpc_bootstrap;
use flotilla::render;
use flotilla::serve::ServeOptions;
use flotilla::translate::Transport;
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(
    name = "flotilla",
    version,
    about = "An Envoy xDS control plane: YAML in git, health-checked, served over ADS"
)]
pub(crate) struct Cli {
    /// Log format for `serve` (logs go to stderr).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "FLOTILLA_LOG_FORMAT")]
    pub(crate) log_format: LogFormat,
    /// Routes one virtual host may hold. Envoy tries a host's routes in order for every
    /// request, so past the default spread them over `hosts` rather than raise this.
    #[arg(long, global = true, default_value_t = config::limits::DEFAULT_ROUTES_PER_HOST as u64,
          value_parser = clap::value_parser!(u64).range(1..=config::limits::CEILING as u64),
          env = "FLOTILLA_MAX_ROUTES_PER_HOST")]
    pub(crate) max_routes_per_host: u64,
    /// Virtual hosts one listener may hold. They reach Envoy as one RouteConfiguration, sent
    /// whole to every Envoy of the fleet when any of its routes changes.
    #[arg(long, global = true, default_value_t = config::limits::DEFAULT_HOSTS_PER_LISTENER as u64,
          value_parser = clap::value_parser!(u64).range(1..=config::limits::CEILING as u64),
          env = "FLOTILLA_MAX_HOSTS_PER_LISTENER")]
    pub(crate) max_hosts_per_listener: u64,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum Format {
    Json,
    Yaml,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum XdsTransport {
    Ads,
    Sotw,
    Delta,
}

impl From<XdsTransport> for Transport {
    fn from(t: XdsTransport) -> Transport {
        match t {
            XdsTransport::Ads => Transport::Ads,
            XdsTransport::Sotw => Transport::Sotw,
            XdsTransport::Delta => Transport::Delta,
        }
    }
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Check configuration files; print every error as path:line:col: field: message.
    Validate {
        /// YAML files or directories of them (each PATH is one configuration).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        files: ConfigFilesArgs,
    },
    /// Print the Envoy resources a fleet receives, as Envoy's /config_dump shows them.
    Render {
        path: PathBuf,
        /// The fleet (Envoy node.cluster) to render for; every resource when omitted.
        #[arg(long)]
        fleet: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
        /// How the receiving Envoy reaches flotilla: resources point their EDS/RDS at it.
        #[arg(long, value_enum, default_value_t = XdsTransport::Ads)]
        transport: XdsTransport,
        #[command(flatten)]
        files: ConfigFilesArgs,
    },
    /// Print an Envoy bootstrap (YAML) that connects an Envoy to flotilla; with --grpc, the
    /// JSON bootstrap a proxyless gRPC client reads from GRPC_XDS_BOOTSTRAP.
    Bootstrap(BootstrapArgs),
    /// Serve xDS to Envoys from a configuration file or directory.
    Serve(Box<ServeArgs>),
    /// Run COMMAND and keep it registered in a cluster while it runs; on SIGTERM drain it from
    /// every Envoy first, then pass the signal on. Exits with COMMAND's status.
    Register(RegisterArgs),
    /// Create a local CA and certificates for the xDS port and its clients (mTLS).
    #[command(subcommand)]
    Certs(certs::CertsCommand),
    /// What a mesh sidecar's host needs besides Envoy (the iptables redirection of a
    /// transparent sidecar).
    #[command(subcommand)]
    Sidecar(sidecar::SidecarCommand),
    /// Per fleet: the revision served, whether every Envoy took it (Synced, Progressing,
    /// OutOfSync) and its health. Exit 0 all Synced, 1 not (with --wait: timed out or
    /// rejected), 2 error.
    Status(gitops::StatusArgs),
    /// What a config change does to each fleet's Envoy resources: NEW --against URL (the
    /// running flotilla), or OLD NEW. Exit 0 no change, 1 changes, 2 error.
    Diff(diff::DiffArgs),
    /// The last 100 applied configs: revision, time, trigger, author, what changed, and how
    /// each fleet took it.
    History(gitops::HistoryArgs),
    /// Print the JSON Schema (draft 2020-12) of the YAML configuration, for editors
    /// (`# yaml-language-server: $schema=<file>` at the top of a config file).
    Schema,
    /// Run the quickstart: flotilla, three demo backends and an Envoy (Ctrl-C stops all).
    Quickstart {
        /// The Envoy binary (scripts/quickstart installs one into tools/).
        #[arg(long, env = "ENVOY_BIN", default_value = "tools/envoy-1.40.0/envoy")]
        envoy: PathBuf,
    },
}

/// Where the files a config names may be (`serve`, `validate`, `render`).
#[derive(clap::Args, Debug, Default)]
pub(crate) struct ConfigFilesArgs {
    /// A directory (absolute) whose certificate and key files the config may name, besides
    /// the config's own directory (repeatable). Paths are checked after symlinks.
    #[arg(long = "secrets-dir", value_name = "DIR")]
    pub(crate) secrets_dirs: Vec<PathBuf>,
    /// A directory (absolute) Envoy may write access logs under (repeatable; default
    /// /var/log/envoy/). /dev/stdout and /dev/stderr are always accepted.
    #[arg(long = "access-log-dir", value_name = "DIR")]
    pub(crate) access_log_dirs: Vec<PathBuf>,
}

impl ConfigFilesArgs {
    /// The load policy these flags describe, checked.
    pub(crate) fn policy(&self) -> anyhow::Result<config::LoadPolicy> {
        let policy = config::LoadPolicy {
            secrets_dirs: self.secrets_dirs.clone(),
            access_log_dirs: self.access_log_dirs.clone(),
            ..config::LoadPolicy::default()
        };
        policy.check().map_err(anyhow::Error::msg)?;
        Ok(policy)
    }
}

#[derive(clap::Args, Debug)]
pub(crate) struct ServeArgs {
    #[arg(long)]
    pub(crate) config: PathBuf,
    #[arg(long, default_value = "127.0.0.1:18000")]
    pub(crate) xds_listen: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:18080")]
    pub(crate) admin_listen: SocketAddr,
    /// Do not watch the config files (SIGHUP still reloads).
    #[arg(long)]
    pub(crate) no_watch: bool,
    /// Quiet time that ends a burst of config file changes before reloading.
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    pub(crate) debounce: std::time::Duration,
    /// Bearer token for the mutating admin calls (drain, weight, registrations). Without one
    /// they are accepted only while the admin server listens on loopback.
    #[arg(long, env = "FLOTILLA_ADMIN_TOKEN", hide_env_values = true)]
    pub(crate) admin_token: Option<String>,
    /// A `Host` name the admin API answers to besides loopback names and --admin-listen
    /// (repeatable; `*` for any). Other names are refused, against DNS rebinding.
    #[arg(long = "admin-allowed-host", value_name = "HOST")]
    pub(crate) admin_allowed_hosts: Vec<String>,
    /// Where drains and weight overrides are stored to survive restarts.
    #[arg(long, default_value = "flotilla-state.json")]
    pub(crate) state_file: PathBuf,
    /// Where the history of applied configs is kept across restarts (default: beside
    /// --state-file, NAME.history.json). Give it with --store, which keeps no state file:
    /// otherwise the history lands beside the default state file, in the working directory.
    #[arg(long, env = "FLOTILLA_HISTORY_FILE", value_name = "FILE")]
    pub(crate) history_file: Option<PathBuf>,
    /// Share drains, weight overrides and registrations with other replicas through etcd
    /// (`etcd://host:port[,host:port…][/prefix]`) instead of the state file.
    #[arg(long, value_parser = parse_store)]
    pub(crate) store: Option<flotilla::etcd::StoreUrl>,
    /// CA certificates (PEM) that sign etcd's server certificate; turns on TLS to etcd (as
    /// etcdctl's --cacert). With only --store-cert/--store-key, the system roots are trusted.
    #[arg(long, requires = "store", value_name = "FILE")]
    pub(crate) store_cacert: Option<PathBuf>,
    /// Client certificate chain (PEM) for etcd's --client-cert-auth (as etcdctl's --cert).
    #[arg(long, requires_all = ["store", "store_key"], value_name = "FILE")]
    pub(crate) store_cert: Option<PathBuf>,
    /// The private key (PEM) of --store-cert (as etcdctl's --key).
    #[arg(long, requires_all = ["store", "store_cert"], value_name = "FILE")]
    pub(crate) store_key: Option<PathBuf>,
    /// This replica's name among those sharing --store (1..=64 of A-Z a-z 0-9 . _ -); default
    /// the host name and process id.
    #[arg(long, requires = "store", value_parser = parse_replica_id)]
    pub(crate) replica_id: Option<String>,
    /// A DNS server (ip:port, port 53 if left out) to resolve hostname endpoints with;
    /// repeatable (at most 8). Envoys are told to use the same servers for the names they
    /// resolve themselves (resolve: envoy, JWKS URLs). Default: the system's resolver
    /// configuration (/etc/resolv.conf; Envoy's host's own for Envoy).
    #[arg(long = "dns-server", value_name = "ADDR", value_parser = parse_dns_server)]
    pub(crate) dns_servers: Vec<std::net::SocketAddr>,
    /// Silence after which flotilla sends an HTTP/2 PING on an xDS connection (100ms..=1h). A
    /// client whose network vanished is found within interval + timeout, and its registered
    /// endpoints leave every Envoy.
    #[arg(long, default_value = "1s", value_parser = flotilla::xds::parse_keepalive)]
    pub(crate) xds_keepalive_interval: std::time::Duration,
    /// How long an xDS connection may leave that PING unanswered before it is closed as dead
    /// (100ms..=1h).
    #[arg(long, default_value = "10s", value_parser = flotilla::xds::parse_keepalive)]
    pub(crate) xds_keepalive_timeout: std::time::Duration,
    /// An xDS connection that has not begun its first request this long after it was accepted
    /// is closed (idle or stalled TCP connections do not pile up).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) xds_handshake_timeout: std::time::Duration,
    /// Open xDS connections at most (one per Envoy); beyond it new ones are closed at once.
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub(crate) xds_max_connections: u32,
    /// HTTP/2 streams one xDS connection may have open at once.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) xds_max_streams_per_connection: u32,
    /// Longest node.id and node.cluster accepted from an Envoy, in bytes.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    pub(crate) xds_max_node_id_bytes: u32,
    /// Largest node description (metadata included, encoded) accepted, in bytes.
    #[arg(long, default_value_t = 262_144, value_parser = clap::value_parser!(u32).range(1..=4_194_304))]
    pub(crate) xds_max_node_bytes: u32,
    /// A file whose first line is the revision being deployed (re-read on every reload);
    /// else the git commit of the config path, else $FLOTILLA_REVISION.
    #[arg(long, value_name = "FILE")]
    pub(crate) revision_file: Option<PathBuf>,
    /// Request bytes the xDS streams of one connection may hold buffered (unfinished messages).
    #[arg(long, default_value_t = 64 << 20, value_parser = clap::value_parser!(u64).range(4_194_309..=1 << 40))]
    pub(crate) xds_max_buffered_bytes_per_connection: u64,
    /// Request bytes all xDS streams together may hold buffered (unfinished messages).
    #[arg(long, default_value_t = 1 << 30, value_parser = clap::value_parser!(u64).range(4_194_309..=1 << 40))]
    pub(crate) xds_max_buffered_bytes: u64,
    #[command(flatten)]
    pub(crate) xds_tls: tls_args::XdsTlsArgs,
    #[command(flatten)]
    pub(crate) admin_tls: tls_args::AdminTlsArgs,
    /// Longest a client of the admin port may take to send a request's head.
    #[arg(long, default_value = "10s", value_parser = parse_admin_timeout)]
    pub(crate) admin_header_timeout: std::time::Duration,
    /// An admin connection with no byte read or written this long is closed.
    #[arg(long, default_value = "30s", value_parser = parse_admin_timeout)]
    pub(crate) admin_idle_timeout: std::time::Duration,
    /// Open admin connections at most; the last 16 serve only /healthz and /readyz.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(32..=1_000_000))]
    pub(crate) admin_max_connections: u32,
    #[command(flatten)]
    pub(crate) files: ConfigFilesArgs,
    /// Serve private keys (TLS listeners, upstream client certificates) over a plaintext xDS
    /// port beyond loopback. Without it such a config is refused: plaintext xDS hands every
    /// key to whoever reaches the port.
    #[arg(long)]
    pub(crate) allow_plaintext_secrets: bool,
    /// The CA that signs the mesh's workload certificates (PEM; the signer first, then CAs
    /// still trusted during a rotation). Needs --xds-client-ca. Re-read when it changes.
    #[arg(
        long,
        env = "FLOTILLA_MESH_CA_CERT",
        requires = "mesh_ca_key",
        value_name = "FILE"
    )]
    pub(crate) mesh_ca_cert: Option<PathBuf>,
    /// The private key (PEM, PKCS#8) of the first certificate of --mesh-ca-cert.
    #[arg(
        long,
        env = "FLOTILLA_MESH_CA_KEY",
        requires = "mesh_ca_cert",
        value_name = "FILE"
    )]
    pub(crate) mesh_ca_key: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub(crate) struct RegisterArgs {
    /// flotilla's xDS address (host:port), where the registration API is served.
    #[arg(long, default_value = "127.0.0.1:18000")]
    registry: String,
    /// The cluster to join (a cluster of flotilla's config).
    #[arg(long)]
    cluster: String,
    /// The address (ip:port) COMMAND serves on.
    #[arg(long)]
    address: String,
    #[arg(long, default_value_t = 1)]
    weight: u32,
    /// Locality zone of the instance.
    #[arg(long)]
    zone: Option<String>,
    /// A label shown by the admin API (KEY=VALUE; repeatable).
    #[arg(long = "metadata", value_parser = parse_label)]
    metadata: Vec<(String, String)>,
    /// Longest wait for requests in flight to finish before COMMAND gets the signal.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    drain_deadline: std::time::Duration,
    /// Longest wait for COMMAND to accept connections on ADDRESS before registering anyway.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    ready_timeout: std::time::Duration,
    /// flotilla's xDS port serves TLS: trust this CA (PEM).
    #[arg(long, value_name = "FILE")]
    registry_ca: Option<PathBuf>,
    /// The client certificate (mTLS; a spiffe://<trust-domain>/fleet/… identity).
    #[arg(long, value_name = "FILE", requires_all = ["registry_ca", "registry_key"])]
    registry_cert: Option<PathBuf>,
    #[arg(long, value_name = "FILE", requires = "registry_cert")]
    registry_key: Option<PathBuf>,
    /// flotilla's admin token: a plaintext xDS port beyond loopback takes registrations only
    /// with it.
    #[arg(long, env = "FLOTILLA_REGISTRY_TOKEN", hide_env_values = true)]
    registry_token: Option<String>,
    /// The instance to run.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    let (k, v) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not KEY=VALUE"))?;
    Ok((k.to_string(), v.to_string()))
}

pub(crate) fn register(a: RegisterArgs) -> anyhow::Result<ExitCode> {
    use flotilla::registry::command::{self, RegisterOptions};
    let runtime = tokio::runtime::Runtime::new().context("start the async runtime")?;
    let code = runtime.block_on(command::run(RegisterOptions {
        registry: a.registry,
        endpoint: flotilla::registry::proto::Endpoint {
            cluster: a.cluster,
            address: a.address,
            weight: a.weight,
            zone: a.zone.unwrap_or_default(),
            metadata: a.metadata.into_iter().collect(),
        },
        drain_deadline: a.drain_deadline,
        ready_timeout: a.ready_timeout,
        command: a.command,
        tls: a.registry_ca.map(|ca| flotilla::tls::ClientTls {
            ca: Some(ca),
            cert_and_key: a.registry_cert.zip(a.registry_key),
        }),
        token: a.registry_token,
    }))?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

fn parse_dns_server(text: &str) -> Result<std::net::SocketAddr, String> {
    text.parse::<std::net::SocketAddr>()
        .or_else(|_| {
            text.parse::<std::net::IpAddr>()
                .map(|ip| std::net::SocketAddr::new(ip, 53))
        })
        .map_err(|_| format!("`{text}` is not ip, ip:port or [ipv6]:port"))
}

fn parse_replica_id(text: &str) -> Result<String, String> {
    flotilla::runtime::replicated::check_replica_id(text).map(str::to_string)
}

fn parse_store(text: &str) -> Result<flotilla::etcd::StoreUrl, String> {
    flotilla::etcd::StoreUrl::parse(text).map_err(|e| e.to_string())
}

pub(crate) fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    config::duration::parse(text)
}

/// An admin port timeout: 100ms..=1h.
fn parse_admin_timeout(text: &str) -> Result<std::time::Duration, String> {
    let d = config::duration::parse(text)?;
    let range = std::time::Duration::from_millis(100)..=std::time::Duration::from_secs(3600);
    if !range.contains(&d) {
        return Err(format!("{text} is out of range (100ms..=1h)"));
    }
    Ok(d)
}

pub(crate) fn validate(paths: &[PathBuf], files: &ConfigFilesArgs) -> anyhow::Result<ExitCode> {
    let policy = files.policy()?;
    let mut ok = true;
    for path in paths {
        match config::load_with(path, &policy) {
            Ok(loaded) => {
                let c = &loaded.config;
                let shown = config::escape_controls(&path.display().to_string());
                if let Some(warning) = config::empty::warning(c) {
                    let _ = writeln!(std::io::stderr(), "{shown}: {warning}");
                }
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                for warning in flotilla::tls::metrics::expiring(c, now) {
                    let _ = writeln!(std::io::stderr(), "{shown}: {warning}");
                }
                let line = format!(
                    "{shown}: ok ({} clusters, {} listeners, {} fleets)\n",
                    c.clusters.len(),
                    c.listeners.len(),
                    c.fleets.len()
                );
                let _ = std::io::stdout().write_all(line.as_bytes());
            }
            Err(e) => {
                ok = false;
                let mut stderr = std::io::stderr().lock();
                for line in e.lines() {
                    let _ = writeln!(stderr, "{line}");
                }
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub(crate) fn render(
    path: &std::path::Path,
    fleet: Option<&str>,
    format: Format,
    transport: XdsTransport,
    files: &ConfigFilesArgs,
) -> anyhow::Result<ExitCode> {
    let loaded = match config::load_with(path, &files.policy()?) {
        Ok(l) => l,
        Err(e) => {
            let mut stderr = std::io::stderr().lock();
            for line in e.lines() {
                let _ = writeln!(stderr, "{line}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let snapshot = render::snapshot(&loaded.config, fleet, transport.into());
    let value = render::to_json(&snapshot, fleet, &loaded.config.secrets)?;
    print_document(&value, format)?;
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args, Debug)]
pub(crate) struct BootstrapArgs {
    #[arg(long)]
    node_id: String,
    /// Reported as node.cluster; picks which fleet's resources the Envoy receives.
    #[arg(long, default_value = "default")]
    fleet: String,
    /// flotilla's xDS address (host:port), or several comma-separated (replicas sharing
    /// etcd; Envoy moves to another if its replica fails).
    #[arg(long, default_value = "127.0.0.1:18000")]
    xds: String,
    /// The bootstrap of a proxyless gRPC client (JSON, for GRPC_XDS_BOOTSTRAP), not Envoy's.
    #[arg(long, conflicts_with_all = ["delta", "no_ads", "admin_port", "admin_address", "stats_flush_interval", "no_stats_sink"])]
    grpc: bool,
    /// Use the incremental (delta) xDS protocol.
    #[arg(long)]
    delta: bool,
    /// One gRPC stream per resource type instead of ADS.
    #[arg(long)]
    no_ads: bool,
    #[arg(long, default_value_t = 9901)]
    admin_port: u16,
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    admin_address: IpAddr,
    /// How often Envoy streams its stats to flotilla (the dashboard's traffic view).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    stats_flush_interval: std::time::Duration,
    /// Do not stream Envoy's stats (and load reports) to flotilla.
    #[arg(long)]
    no_stats_sink: bool,
    /// Connect to flotilla over TLS, trusting this CA (PEM; the path as the client sees it).
    #[arg(long, value_name = "FILE")]
    xds_ca: Option<String>,
    /// The client certificate (mTLS) whose SPIFFE ID allows this node and fleet.
    #[arg(long, value_name = "FILE", requires_all = ["xds_ca", "xds_key"])]
    xds_cert: Option<String>,
    /// The client certificate's private key.
    #[arg(long, value_name = "FILE", requires = "xds_cert")]
    xds_key: Option<String>,
    /// A mesh sidecar of --service: its fleet is the service (in place of --fleet); with an inbound listener it
    /// becomes an instance of the service while connected. Needs --xds-cert (a fleet
    /// certificate for the service: `flotilla certs issue --fleet S`).
    #[arg(long, requires_all = ["service", "xds_cert"], conflicts_with = "grpc")]
    sidecar: bool,
    /// The mesh service this sidecar belongs to.
    #[arg(long, requires = "sidecar", value_name = "S")]
    service: Option<String>,
    /// Where the sidecar's inbound listener listens (mTLS from the mesh, to the app's port);
    /// on 0.0.0.0 callers reach it at the address flotilla sees the sidecar connect from.
    #[arg(
        long,
        requires = "sidecar",
        default_value = "0.0.0.0:15006",
        value_name = "ADDR"
    )]
    inbound: std::net::SocketAddr,
    /// No inbound listener: the service only calls others.
    #[arg(long, requires = "sidecar", conflicts_with = "inbound")]
    no_inbound: bool,
    /// An outbound listener on 127.0.0.1:--outbound-port that takes the app's connections
    /// redirected by iptables (`flotilla sidecar iptables`) and sends those to a called
    /// service's vip to that service over mTLS; others per `mesh.outbound`.
    #[arg(long, requires = "sidecar")]
    transparent: bool,
    /// The port of the transparent outbound listener.
    #[arg(long, requires = "transparent", default_value_t = flotilla::envoy::transparent::DEFAULT_OUTBOUND_PORT, value_parser = clap::value_parser!(u16).range(1..))]
    outbound_port: u16,
}

pub(crate) fn bootstrap(a: BootstrapArgs) -> anyhow::Result<ExitCode> {
    let BootstrapArgs {
        node_id,
        fleet,
        xds,
        grpc,
        delta,
        no_ads,
        admin_address,
        admin_port,
        stats_flush_interval,
        no_stats_sink,
        xds_ca,
        xds_cert,
        xds_key,
        sidecar,
        service,
        inbound,
        no_inbound,
        transparent,
        outbound_port,
    } = a;
    let fleet = match (sidecar, service) {
        (true, Some(service)) => service,
        _ => fleet,
    };
    let inbound = (sidecar && !no_inbound).then_some(inbound);
    let xds_tls = xds_ca.map(|ca| flotilla::envoy::xds_tls::XdsClientTls {
        ca,
        cert_and_key: xds_cert.zip(xds_key),
    });
    let stats_flush = (!no_stats_sink).then_some(stats_flush_interval);
    let xds_addresses = bootstrap::split_xds_list(&xds)?;
    if grpc {
        anyhow::ensure!(
            xds_addresses.len() == 1,
            "--xds: --grpc takes one xDS address (a load-balanced name for several replicas)"
        );
        let b = grpc_bootstrap::grpc_bootstrap(&node_id, &fleet, &xds, xds_tls.as_ref());
        let value = serde_json::to_value(&b).context("render gRPC bootstrap")?;
        print_document(&value, Format::Json)?;
        return Ok(ExitCode::SUCCESS);
    }
    let options = BootstrapOptions {
        node_id,
        fleet,
        xds: xds_addresses,
        delta,
        ads: !no_ads,
        admin_address,
        admin_port,
        stats_flush,
        xds_tls,
        inbound,
        transparent: (sidecar && transparent).then_some(outbound_port),
    };
    options.check()?;
    let b = bootstrap::bootstrap(&options);
    let value = json::message_to_json(&b).context("render bootstrap")?;
    print_document(&value, Format::Yaml)?;
    Ok(ExitCode::SUCCESS)
}

fn print_document(value: &serde_json::Value, format: Format) -> anyhow::Result<()> {
    let text = match format {
        Format::Json => serde_json::to_string_pretty(value)? + "\n",
        Format::Yaml => yaml::to_string(value),
    };
    std::io::stdout()
        .write_all(text.as_bytes())
        .context("write to stdout")?;
    Ok(())
}

pub(crate) fn schema() -> anyhow::Result<ExitCode> {
    print_document(&config::schema::json_schema(), Format::Json)?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn serve(mut args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut load_policy = args.files.policy()?;
    // flotilla's own keys: never servable to Envoys, wherever they are.
    load_policy.own_keys = [
        args.xds_tls.xds_tls_key.clone(),
        args.admin_tls.admin_tls_key.clone(),
        args.store_key.clone(),
        args.mesh_ca_key.clone(),
    ]
    .into_iter()
    .flatten()
    .collect();
    let xds_tls = std::mem::take(&mut args.xds_tls)
        .options()
        .map_err(anyhow::Error::msg)?;
    if let Some(store) = &mut args.store {
        store.tls = flotilla::tls::ClientPem::load_flags(
            flotilla::etcd::STORE_TLS_FLAGS,
            args.store_cacert.as_deref(),
            args.store_cert.as_deref(),
            args.store_key.as_deref(),
        )?;
    }
    let runtime = tokio::runtime::Runtime::new().context("start the async runtime")?;
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        flotilla::serve::run(
            ServeOptions {
                config: args.config,
                xds_listen: args.xds_listen,
                admin_listen: args.admin_listen,
                watch: !args.no_watch,
                debounce: args.debounce,
                admin_token: args.admin_token,
                admin_allowed_hosts: args.admin_allowed_hosts,
                state_file: args.state_file,
                history_file: args.history_file,
                store: args.store,
                replica_id: args.replica_id,
                dns_servers: args.dns_servers,
                xds_limits: flotilla::xds::Limits {
                    keepalive_interval: args.xds_keepalive_interval,
                    keepalive_timeout: args.xds_keepalive_timeout,
                    handshake_timeout: args.xds_handshake_timeout,
                    max_connections: args.xds_max_connections as usize,
                    max_streams_per_connection: args.xds_max_streams_per_connection,
                    max_node_id_bytes: args.xds_max_node_id_bytes as usize,
                    max_node_bytes: args.xds_max_node_bytes as usize,
                    max_buffered_bytes_per_connection: args.xds_max_buffered_bytes_per_connection
                        as usize,
                    max_buffered_bytes: args.xds_max_buffered_bytes as usize,
                },
                xds_tls,
                admin_tls: args.admin_tls.files(),
                admin_public_read: args.admin_tls.admin_public_read,
                revisions: flotilla::gitops::revision::RevisionSources {
                    file: args.revision_file,
                    env: std::env::var("FLOTILLA_REVISION").ok(),
                },
                admin_limits: flotilla::admin::AdminLimits {
                    header_timeout: args.admin_header_timeout,
                    idle_timeout: args.admin_idle_timeout,
                    max_connections: args.admin_max_connections as usize,
                },
                load_policy,
                allow_plaintext_secrets: args.allow_plaintext_secrets,
                mesh_ca: args
                    .mesh_ca_cert
                    .zip(args.mesh_ca_key)
                    .map(|(cert, key)| flotilla::identity::issuer::MeshCaFiles { cert, key }),
            },
            shutdown,
        )
        .await
    })?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn quickstart(envoy: PathBuf) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("start the async runtime")?;
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        flotilla::quickstart::run(envoy, shutdown, |running| {
            let _ = std::io::stdout().write_all(running.banner().as_bytes());
        })
        .await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM or Ctrl-C starts a graceful shutdown: streams end with UNAVAILABLE, servers stop.
async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: shutting down"),
    }
    shutdown.cancel();
}
