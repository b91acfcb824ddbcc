//! `flotilla serve`: load the config, open the xDS and admin ports, keep serving.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use std::time::Duration;

use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::admin::{self, AdminState};
use crate::cache::SnapshotCache;
use crate::config;
use crate::control::{ControlMetrics, Controller, Reload, ReloadResult};
use crate::gitops::revision::RevisionSources;
use crate::tls;
use crate::xds::{self, NodeRegistry};

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub config: PathBuf,
    pub xds_listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// Reload when the config files change (SIGHUP always reloads).
    pub watch: bool,
    /// Quiet time that ends a burst of file changes.
    pub debounce: Duration,
    /// Bearer token required by the mutating admin calls.
    pub admin_token: Option<String>,
    /// `Host` names the admin server answers to besides loopback and its listen address.
    pub admin_allowed_hosts: Vec<String>,
    /// Where drains and weight overrides are kept across restarts.
    pub state_file: PathBuf,
    /// Where the config history is kept; None: beside `state_file`.
    pub history_file: Option<PathBuf>,
    /// etcd shared with other replicas, in place of `state_file`.
    pub store: Option<crate::etcd::StoreUrl>,
    /// This replica's name in etcd (default: host name and process id).
    pub replica_id: Option<String>,
    /// DNS servers for hostname endpoints (empty: the system's configuration).
    pub dns_servers: Vec<SocketAddr>,
    /// What one client may cost the xDS port (keepalive timeout included).
    pub xds_limits: xds::Limits,
    /// TLS (and with a client CA, mTLS with identities) on the xDS port; None: plaintext.
    pub xds_tls: Option<xds::tls::XdsTlsOptions>,
    /// TLS for the admin API; None: plain HTTP.
    pub admin_tls: Option<tls::TlsFiles>,
    /// Reads of the admin API need no token even beyond loopback.
    pub admin_public_read: bool,
    /// Where the revision of the config comes from besides git (see [`crate::gitops::revision`]).
    pub revisions: crate::gitops::revision::RevisionSources,
    /// Header and idle timeouts and the connection cap of the admin port.
    pub admin_limits: admin::AdminLimits,
    /// What the config may name on this host: `--secrets-dir`, `--access-log-dir`, and
    /// flotilla's own key files (never servable). A helper adding a key flag (the mesh CA's)
    /// adds its path to `own_keys`.
    pub load_policy: config::LoadPolicy,
    /// Serve private keys over a plaintext xDS port beyond loopback anyway.
    pub allow_plaintext_secrets: bool,
    /// The CA that signs the mesh's workload certificates; a config with `mesh:` needs it.
    pub mesh_ca: Option<crate::identity::issuer::MeshCaFiles>,
}

impl ServeOptions {
    /// The history file: `--history-file`, else beside the state file.
    pub fn history_file(&self) -> crate::gitops::history::HistoryFile {
        match &self.history_file {
            Some(path) => crate::gitops::history::HistoryFile::new(path.clone()),
            None => crate::gitops::history::HistoryFile::beside(&self.state_file),
        }
    }

    /// The load policy in force: the options', and no private keys at all over a plaintext
    /// xDS port beyond loopback (any process that reaches the port could read them) unless
    /// `--allow-plaintext-secrets`.
    pub fn effective_policy(&self) -> config::LoadPolicy {
        let mut policy = self.load_policy.clone();
        policy.dns_servers = self.dns_servers.clone();
        if self.xds_tls.is_none()
            && !self.xds_listen.ip().is_loopback()
            && !self.allow_plaintext_secrets
        {
            policy.no_private_keys = Some(format!(
                "private keys are not served over plaintext xDS on {} (beyond loopback, anyone \
                 who reaches the port reads them): use --xds-tls-cert/--xds-tls-key, or \
                 --allow-plaintext-secrets",
                self.xds_listen
            ));
        }
        policy
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("xDS server failed: {0}")]
    Xds(#[from] tonic::transport::Error),
    #[error("admin server failed: {0}")]
    Admin(#[source] std::io::Error),
    #[error(transparent)]
    Watch(#[from] config::watch::WatchError),
    #[error(transparent)]
    AllowedHosts(#[from] crate::admin::guard::HostsError),
    #[error(transparent)]
    State(#[from] crate::store::StateFileError),
    #[error("xDS TLS: {0}")]
    XdsTls(#[from] tls::TlsFileError),
    #[error(transparent)]
    Etcd(#[from] crate::etcd::EtcdError),
    #[error(transparent)]
    Dns(#[from] crate::dns::lookup::ResolverSetupError),
    #[error("at most {MAX_DNS_SERVERS} --dns-server (got {0})")]
    TooManyDnsServers(usize),
    #[error("mesh CA (--mesh-ca-cert/--mesh-ca-key): {0}")]
    MeshCa(#[from] crate::identity::workload::MeshCaError),
    #[error("{0}")]
    Mesh(String),
}

/// `--dns-server` at most.
pub const MAX_DNS_SERVERS: usize = 8;

/// Why a config with `mesh:` is refused by a serve without `--mesh-ca-*` (at start, serve
/// stops; on reload, the last good config stays).
const NO_MESH_CA: &str = "mesh: this config has a `mesh:` section, which needs the CA that signs workload certificates: start serve with --mesh-ca-cert and --mesh-ca-key (`flotilla certs ca` makes one)";

/// The longest a continuous stream of file changes can delay a reload.
const MAX_DEBOUNCE: Duration = Duration::from_secs(2);

/// Every subsystem's metric families, registered once, before anything records.
struct ServeMetrics {
    control: ControlMetrics,
    health: crate::health::HealthMetrics,
    xds: xds::XdsMetrics,
    traffic: crate::traffic::TrafficMetrics,
    store_available: prometheus_client::metrics::gauge::Gauge<i64>,
    store: crate::etcd::StoreMetrics,
    gitops: crate::gitops::follow::GitopsMetrics,
    dns: crate::dns::DnsMetrics,
    identity: crate::identity::IdentityMetrics,
    mesh: crate::identity::MeshMetrics,
}

impl ServeMetrics {
    fn register(registry: &mut crate::metrics::Registry) -> ServeMetrics {
        let control = ControlMetrics::register(registry);
        let health = crate::health::HealthMetrics::register(registry);
        let xds = xds::XdsMetrics::register(registry);
        let traffic = crate::traffic::TrafficMetrics::register(registry);
        let store_available = prometheus_client::metrics::gauge::Gauge::<i64>::default();
        registry.register(
            "store_available",
            "1 while the runtime store answers (always, with the state file); 0 while this replica cannot reach etcd and refuses changes",
            store_available.clone(),
        );
        let store = crate::etcd::StoreMetrics::register(registry);
        let gitops = crate::gitops::follow::GitopsMetrics::register(registry);
        let dns = crate::dns::DnsMetrics::register(registry);
        let identity = crate::identity::IdentityMetrics::register(registry);
        let mesh = crate::identity::MeshMetrics::register(registry);
        ServeMetrics {
            control,
            health,
            xds,
            traffic,
            store_available,
            store,
            gitops,
            dns,
            identity,
            mesh,
        }
    }
}

/// The registry `serve` exposes on `/metrics`, with every family registered and nothing
/// recorded: what docs/reference/metrics.md is generated from.
pub fn metric_families() -> crate::metrics::Registry {
    let mut registry = crate::metrics::registry();
    ServeMetrics::register(&mut registry);
    registry
}

/// Runs until `shutdown` is cancelled. An invalid config at start-up is logged and the server
/// stays up, not ready, serving nothing, until a valid one is loaded.
pub async fn run(opts: ServeOptions, shutdown: CancellationToken) -> Result<(), ServeError> {
    let mut registry = crate::metrics::registry();
    let ServeMetrics {
        control: control_metrics,
        health: health_metrics,
        xds: xds_metrics,
        traffic: traffic_metrics,
        store_available,
        store: store_metrics,
        gitops: gitops_metrics,
        dns: dns_metrics,
        identity: identity_metrics,
        mesh: mesh_metrics,
    } = ServeMetrics::register(&mut registry);
    // The mesh's checks come first: a server that would hand workload keys to
    // unauthenticated streams, or sign with a key that is not its CA's, does not start.
    let issuer = match &opts.mesh_ca {
        Some(files) => {
            let mutual = opts
                .xds_tls
                .as_ref()
                .is_some_and(|t| t.files.client_ca.is_some());
            if !mutual {
                return Err(ServeError::Mesh(
                    "--mesh-ca-cert: mesh workload certificates are refused on an xDS port \
                     without client-certificate authentication (add --xds-tls-cert, \
                     --xds-tls-key and --xds-client-ca): any client could claim a service and \
                     receive its key"
                        .to_string(),
                ));
            }
            let td = opts
                .xds_tls
                .as_ref()
                .map_or(crate::identity::DEFAULT_TRUST_DOMAIN, |t| {
                    t.identity.trust_domain.as_str()
                });
            Some(crate::identity::issuer::Issuer::new(
                files.clone(),
                td,
                mesh_metrics,
            )?)
        }
        None => None,
    };
    let mesh_ca = issuer.is_some();
    let exposition = crate::metrics::Exposition::new(registry);

    let cache = Arc::new(SnapshotCache::new());
    let controller = Controller::new(cache.clone(), control_metrics);
    let nodes = NodeRegistry::new();

    let me = opts
        .replica_id
        .clone()
        .unwrap_or_else(crate::runtime::replicated::default_replica_id);
    let (link, replica_health) = crate::runtime::replicated::link(me);
    let health = crate::health::spawn(
        controller.clone(),
        crate::health::HealthOptions {
            metrics: health_metrics,
            ..Default::default()
        },
        replica_health,
        shutdown.clone(),
    );
    if opts.dns_servers.len() > MAX_DNS_SERVERS {
        return Err(ServeError::TooManyDnsServers(opts.dns_servers.len()));
    }
    let dns = crate::dns::Dns::new(
        Arc::new(crate::dns::HickoryLookup::new(&opts.dns_servers)?),
        dns_metrics,
    );
    tokio::spawn(dns.clone().run(controller.clone(), shutdown.clone()));
    let revisions = Arc::new(opts.revisions.clone());
    let policy = Arc::new(opts.effective_policy());
    let startup = reload_off_runtime(
        &controller,
        &dns,
        &opts.config,
        &policy,
        &revisions,
        "startup",
        None,
        mesh_ca,
    )
    .await;
    if issuer.is_none()
        && controller
            .last_reload()
            .is_some_and(|r| r.errors.iter().any(|e| e.contains(NO_MESH_CA)))
    {
        return Err(ServeError::Mesh(format!(
            "{}: {NO_MESH_CA}",
            opts.config.display()
        )));
    }
    if let Some(issuer) = issuer {
        tokio::spawn(issuer.run(controller.clone(), shutdown.clone()));
    }
    let store: Arc<dyn crate::store::Store> = match &opts.store {
        Some(url) => {
            info!(store = %url, replica = %link.me, "sharing runtime state through etcd");
            Arc::new(crate::store::EtcdStore::new(url)?.with_metrics(store_metrics))
        }
        None => Arc::new(crate::store::LocalStore::open(
            crate::store::StateFile::new(opts.state_file.clone()),
        )?),
    };
    let runtime = crate::runtime::Runtime::start(controller.clone(), store, link, shutdown.clone());
    tokio::spawn(follow_store(
        runtime.store_available(),
        store_available,
        shutdown.clone(),
    ));
    let watcher = if opts.watch {
        Some(config::watch::watch(
            &opts.config,
            opts.debounce,
            MAX_DEBOUNCE,
        )?)
    } else {
        None
    };
    let (watcher, changes) = watcher.unzip();
    let files = if opts.watch {
        match config::watch_files::FilesWatcher::start(opts.debounce, MAX_DEBOUNCE) {
            Ok((w, rx)) => Some((Arc::new(w), rx)),
            Err(e) => {
                warn!(error = %e, "cannot watch certificate files; a rotation needs a SIGHUP");
                None
            }
        }
    } else {
        None
    };
    let (files, file_changes) = files.unzip();
    let git_files: Arc<[PathBuf]> = crate::gitops::revision::git_files(&opts.config).into();
    if let Some(files) = &files {
        follow_files(&controller, files, &git_files);
    }
    tokio::spawn(reload_loop(
        controller.clone(),
        dns.clone(),
        opts.config.clone(),
        policy,
        revisions.clone(),
        Watchers {
            config: watcher.map(Arc::new),
            files,
            git_files,
        },
        [changes, file_changes],
        startup,
        mesh_ca,
        shutdown.clone(),
    ));

    let xds_tls = match &opts.xds_tls {
        Some(t) => Some((
            tls::ServerTls::load(t.files.clone(), &[b"h2"])?,
            t.identity.clone(),
        )),
        None => None,
    };
    let authorizer = match &opts.xds_tls {
        Some(t) => crate::identity::Authorizer::new(
            t.files.client_ca.is_some(),
            &t.identity.trust_domain,
            identity_metrics.clone(),
        ),
        None => crate::identity::Authorizer::open(identity_metrics.clone()),
    };
    let admin_tls = match &opts.admin_tls {
        Some(files) => Some(tls::ServerTls::load(files.clone(), &[b"http/1.1"])?),
        None => None,
    };
    warn_if_exposed(&opts);
    let bind = |what, addr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { what, addr, source })
    };
    let xds_listener = bind("xDS", opts.xds_listen).await?;
    let admin_listener = bind("admin", opts.admin_listen).await?;
    runtime.set_own_addresses(vec![
        (xds_listener.local_addr().unwrap_or(opts.xds_listen), "xDS"),
        (
            admin_listener.local_addr().unwrap_or(opts.admin_listen),
            "admin",
        ),
    ]);
    info!(
        xds = %xds_listener.local_addr().unwrap_or(opts.xds_listen),
        admin = %admin_listener.local_addr().unwrap_or(opts.admin_listen),
        "listening"
    );
    // True exactly while the xDS server runs: /readyz turns unready if it ever stops.
    let xds_listening = Arc::new(AtomicBool::new(false));

    let traffic = crate::traffic::TrafficAggregate::new(traffic_metrics);
    let history_file = opts.history_file();
    info!(history_file = %history_file.path().display(), "config history kept in");
    let history = Arc::new(crate::gitops::history::History::open(Box::new(
        history_file,
    )));
    tokio::spawn(crate::gitops::follow::follow(
        controller.clone(),
        nodes.clone(),
        history.clone(),
        gitops_metrics,
        crate::gitops::sync::Rules::default(),
        shutdown.clone(),
    ));
    let admin_state = AdminState {
        traffic: traffic.clone(),
        config_path: opts.config.clone(),
        health,
        runtime: runtime.clone(),
        mutations: crate::admin::mutations::Mutations::new(
            opts.admin_token.clone(),
            opts.admin_listen,
        ),
        reads: crate::admin::reads::Reads::new(
            opts.admin_token.clone(),
            opts.admin_listen,
            opts.admin_public_read,
        ),
        controller: controller.clone(),
        nodes: nodes.clone(),
        hosts: crate::admin::guard::Hosts::new(opts.admin_listen, &opts.admin_allowed_hosts)?,
        xds_listening: xds_listening.clone(),
        metrics: exposition,
        history,
    };
    tokio::spawn(xds::node_gauges(
        nodes.clone(),
        xds_metrics.clone(),
        shutdown.clone(),
    ));
    let admin = tokio::spawn(admin::serve(
        admin_listener,
        admin_state,
        admin_tls,
        opts.admin_limits,
        shutdown.clone(),
    ));
    xds_listening.store(true, Ordering::Release);
    let runtime_for_leave = runtime.clone();
    let nodes_for_registry = nodes.clone();
    tokio::spawn(crate::registry::witness(
        runtime.clone(),
        traffic.clone(),
        shutdown.clone(),
    ));
    let xds_result = xds::serve(
        xds_listener,
        cache,
        nodes,
        traffic.clone(),
        xds_metrics,
        opts.xds_limits.clone(),
        xds_tls,
        crate::registry::RegistryService {
            runtime,
            shutdown: shutdown.clone(),
            authorizer,
            nodes: nodes_for_registry,
            token: crate::registry::StreamToken::for_port(
                opts.xds_listen,
                opts.xds_tls.is_some(),
                opts.admin_token.clone(),
            ),
        },
        shutdown.clone(),
    )
    .await;
    xds_listening.store(false, Ordering::Release);
    shutdown.cancel();
    runtime_for_leave.leave().await;
    let admin_result = admin.await;
    xds_result?;
    match admin_result {
        Ok(r) => r.map_err(ServeError::Admin),
        Err(join) => Err(ServeError::Admin(std::io::Error::other(join))),
    }
}

/// Warns when a port listens beyond loopback without TLS: whoever reaches the xDS port can
/// read every fleet's configuration and claim any node; the admin API's token crosses the
/// network in clear.
fn warn_if_exposed(opts: &ServeOptions) {
    if !opts.xds_listen.ip().is_loopback() {
        match &opts.xds_tls {
            None => warn!(
                xds = %opts.xds_listen,
                "the xDS port listens beyond loopback without TLS: anyone who reaches it can read \
                 every fleet's configuration and claim any node (--xds-tls-cert, --xds-tls-key, \
                 --xds-client-ca)"
            ),
            Some(t) if t.files.client_ca.is_none() => warn!(
                xds = %opts.xds_listen,
                "the xDS port listens beyond loopback with TLS but without --xds-client-ca: \
                 clients are not authenticated and may claim any fleet and node"
            ),
            Some(_) => {}
        }
    }
    if !opts.admin_listen.ip().is_loopback() && opts.admin_tls.is_none() {
        warn!(
            admin = %opts.admin_listen,
            "the admin API listens beyond loopback without TLS: its token and data cross the \
             network in clear (--admin-tls-cert, --admin-tls-key)"
        );
    }
}

/// Keeps the `store_available` gauge equal to the runtime's view of its store.
async fn follow_store(
    mut available: tokio::sync::watch::Receiver<bool>,
    gauge: prometheus_client::metrics::gauge::Gauge<i64>,
    shutdown: CancellationToken,
) {
    loop {
        gauge.set(i64::from(*available.borrow_and_update()));
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = available.changed() => if changed.is_err() { return },
        }
    }
}

/// Reloads on every debounced change and on SIGHUP (which also re-arms the watch), until
/// shutdown.
// The watchers, channels and start-up outcome are the loop's own; bundling the rest would only
// move the same eight values into a struct built once.
#[allow(clippy::too_many_arguments)]
async fn reload_loop(
    controller: Arc<Controller>,
    dns: Arc<crate::dns::Dns>,
    path: PathBuf,
    policy: Arc<config::LoadPolicy>,
    revisions: Arc<RevisionSources>,
    watchers: Watchers,
    [mut changes, mut file_changes]: [Option<mpsc::Receiver<()>>; 2],
    startup: Option<ReloadResult>,
    mesh_ca: bool,
    shutdown: CancellationToken,
) {
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            warn!(error = %e, "cannot handle SIGHUP; reload by signal is off");
            None
        }
    };
    // Set while the last reload could not read the files: no file event may come again (the
    // files did not change, descriptors ran out), so the reload is retried on a timer.
    let mut retry = (startup == Some(ReloadResult::Unreadable))
        .then(|| (0u32, tokio::time::Instant::now() + retry_delay(0)));
    loop {
        let trigger = tokio::select! {
            () = shutdown.cancelled() => return,
            () = sleep_until(retry.map(|(_, at)| at)) => "retry",
            Some(()) = async { changes.as_mut()?.recv().await } => "watch",
            Some(()) = async { file_changes.as_mut()?.recv().await } => "files",
            Some(()) = async { hangup.as_mut()?.recv().await } => "SIGHUP",
            else => {
                shutdown.cancelled().await;
                return;
            }
        };
        let rearm = watchers.config.clone().filter(|_| trigger == "SIGHUP");
        let result = reload_off_runtime(
            &controller,
            &dns,
            &path,
            &policy,
            &revisions,
            trigger,
            rearm,
            mesh_ca,
        )
        .await;
        retry = match result {
            Some(ReloadResult::Unreadable) => {
                let attempt = retry.map_or(0, |(n, _)| n.saturating_add(1));
                let delay = retry_delay(attempt);
                warn!(
                    attempt,
                    retry_in_ms = delay.as_millis() as u64,
                    "the config files could not be read; retrying"
                );
                Some((attempt, tokio::time::Instant::now() + delay))
            }
            _ => None,
        };
        if let Some(files) = &watchers.files {
            follow_files(&controller, files, &watchers.git_files);
        }
    }
}

/// What asks for a reload besides SIGHUP: the config's directory and the files it names.
struct Watchers {
    config: Option<Arc<config::watch::ConfigWatcher>>,
    files: Option<Arc<config::watch_files::FilesWatcher>>,
    /// The git repository's `HEAD`, reflog and index: a commit renames the config served.
    git_files: Arc<[PathBuf]>,
}

/// Watches the certificate and JWKS files the served config names (none before a config is
/// served) and the git files that say which commit it is.
fn follow_files(
    controller: &Controller,
    files: &config::watch_files::FilesWatcher,
    git_files: &[PathBuf],
) {
    let watched = controller.watched_files().unwrap_or_default();
    files.follow(watched.iter().chain(git_files.iter()).map(PathBuf::as_path));
}

/// [`reload`] on a blocking thread: reading, validating, translating and encoding a large
/// config takes seconds, which must not stall the xDS streams and the admin API.
#[allow(clippy::too_many_arguments)] // the reload's inputs, each read once per reload
async fn reload_off_runtime(
    controller: &Arc<Controller>,
    dns: &Arc<crate::dns::Dns>,
    path: &std::path::Path,
    policy: &Arc<config::LoadPolicy>,
    revisions: &Arc<RevisionSources>,
    trigger: &'static str,
    rearm: Option<Arc<config::watch::ConfigWatcher>>,
    mesh_ca: bool,
) -> Option<ReloadResult> {
    let (controller, dns, path, policy, revisions) = (
        controller.clone(),
        dns.clone(),
        path.to_path_buf(),
        policy.clone(),
        revisions.clone(),
    );
    let done = tokio::task::spawn_blocking(move || {
        if let Some(watcher) = rearm {
            watcher.rearm();
        }
        reload(
            &controller,
            Some(&dns),
            &path,
            &policy,
            &revisions,
            trigger,
            mesh_ca,
        )
        .result
    })
    .await;
    match done {
        Ok(result) => Some(result),
        Err(e) => {
            error!(trigger, error = %e, "config reload failed; still serving the last good config");
            None
        }
    }
}

/// Loads the config at `path` and hands it to the controller, which serves it if it is valid,
/// differs from what is served, and does not empty a fleet by probable accident. Its revision is read
/// first, so that a commit landing during the read is at worst named on the next reload.
pub fn reload(
    controller: &Controller,
    dns: Option<&crate::dns::Dns>,
    path: &std::path::Path,
    policy: &config::LoadPolicy,
    revisions: &RevisionSources,
    trigger: &'static str,
    mesh_ca: bool,
) -> Reload {
    let (revision, warnings) = crate::gitops::revision::resolve(path, revisions);
    for warning in warnings {
        warn!(
            trigger,
            "{warning}; the config applies without this revision source"
        );
    }
    let loaded = config::load_with(path, policy)
        .map(|l| l.config)
        .map_err(|e| {
            let result = match e {
                config::LoadError::Io { .. } => ReloadResult::Unreadable,
                _ => ReloadResult::Invalid,
            };
            (result, e.lines())
        })
        .and_then(|config| {
            if config.mesh.is_some() && !mesh_ca {
                return Err((
                    ReloadResult::Invalid,
                    vec![format!(
                        "{}: {NO_MESH_CA}",
                        config::escape_controls(&path.display().to_string())
                    )],
                ));
            }
            Ok(config)
        })
        .and_then(
            // Names the served config does not follow yet are looked up before it is served
            // (NXDOMAIN refuses it); the reload never waits on names already followed.
            |config| match (dns, tokio::runtime::Handle::try_current()) {
                (Some(dns), Ok(runtime)) if controller.config().is_none_or(|c| *c != config) => {
                    runtime
                        .block_on(dns.admit(&config))
                        .map(|()| config)
                        .map_err(|e| (ReloadResult::Invalid, e))
                }
                _ => Ok(config),
            },
        );
    // The controller reports the outcome (log, event, metric).
    let source = path.display().to_string();
    controller.reload_with(trigger, &source, loaded, revision, |config, overlay| {
        if let Some(dns) = dns {
            dns.fill(config, overlay);
        }
    })
}

/// Back-off between retries of a reload that could not read the files: from the first retry
/// to the longest wait between two.
pub const RELOAD_RETRY_FIRST: Duration = Duration::from_millis(500);
pub const RELOAD_RETRY_MAX: Duration = Duration::from_secs(30);

/// Sleeps until `at`; never wakes without one.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The wait before retry number `attempt` (0-based): doubling from the first, capped.
fn retry_delay(attempt: u32) -> Duration {
    RELOAD_RETRY_FIRST
        .saturating_mul(2u32.saturating_pow(attempt.min(16)))
        .min(RELOAD_RETRY_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_file_is_the_flag_or_beside_the_state_file() {
        let mut o = options("127.0.0.1:18000", false, false);
        o.state_file = PathBuf::from("/var/lib/flotilla/state.json");
        assert_eq!(
            o.history_file().path(),
            std::path::Path::new("/var/lib/flotilla/state.history.json")
        );
        o.history_file = Some(PathBuf::from("/srv/flotilla/history.json"));
        assert_eq!(
            o.history_file().path(),
            std::path::Path::new("/srv/flotilla/history.json")
        );
    }

    fn options(xds_listen: &str, tls: bool, allow: bool) -> ServeOptions {
        ServeOptions {
            config: PathBuf::from("c.yaml"),
            xds_listen: xds_listen.parse().unwrap(),
            admin_listen: "127.0.0.1:18080".parse().unwrap(),
            watch: false,
            debounce: Duration::from_millis(100),
            admin_token: None,
            admin_allowed_hosts: Vec::new(),
            state_file: PathBuf::from("s.json"),
            history_file: None,
            store: None,
            replica_id: None,
            xds_limits: xds::Limits::default(),
            xds_tls: tls.then(|| xds::tls::XdsTlsOptions {
                files: tls::TlsFiles {
                    cert: "c.pem".into(),
                    key: "c.key".into(),
                    client_ca: None,
                },
                identity: crate::identity::IdentityRules::spiffe("flotilla.local"),
            }),
            admin_tls: None,
            admin_public_read: false,
            admin_limits: admin::AdminLimits::default(),
            load_policy: config::LoadPolicy::default(),
            allow_plaintext_secrets: allow,
            revisions: Default::default(),
            dns_servers: Vec::new(),
            mesh_ca: None,
        }
    }

    #[test]
    fn private_keys_over_plaintext_xds_beyond_loopback_need_the_flag() {
        for (listen, tls, allow, refused) in [
            ("127.0.0.1:18000", false, false, false),
            ("[::1]:18000", false, false, false),
            ("0.0.0.0:18000", false, false, true),
            ("10.0.0.1:18000", false, false, true),
            ("0.0.0.0:18000", true, false, false),
            ("0.0.0.0:18000", false, true, false),
        ] {
            let policy = options(listen, tls, allow).effective_policy();
            assert_eq!(
                policy.no_private_keys.is_some(),
                refused,
                "{listen} tls {tls} allow {allow}"
            );
        }
    }

    #[test]
    fn failed_reloads_back_off_to_a_cap() {
        assert_eq!(retry_delay(0), RELOAD_RETRY_FIRST);
        assert_eq!(retry_delay(1), RELOAD_RETRY_FIRST * 2);
        assert_eq!(retry_delay(30), RELOAD_RETRY_MAX);
    }
}
