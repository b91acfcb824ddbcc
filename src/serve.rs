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
use crate::control::{ControlMetrics, Controller, Reload};
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
    /// etcd shared with other replicas, in place of `state_file`.
    pub store: Option<crate::etcd::StoreUrl>,
    /// This replica's name in etcd (default: host name and process id).
    pub replica_id: Option<String>,
    /// What one client may cost the xDS port (keepalive timeout included).
    pub xds_limits: xds::Limits,
    /// TLS (and with a client CA, mTLS with identities) on the xDS port; None: plaintext.
    pub xds_tls: Option<xds::tls::XdsTlsOptions>,
    /// TLS for the admin API; None: plain HTTP.
    pub admin_tls: Option<tls::TlsFiles>,
    /// Reads of the admin API need no token even beyond loopback.
    pub admin_public_read: bool,
    /// The CA that signs the mesh's workload certificates; a config with `mesh:` needs it.
    pub mesh_ca: Option<crate::identity::issuer::MeshCaFiles>,
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
    State(#[from] crate::runtime::store::StoreError),
    #[error("xDS TLS: {0}")]
    XdsTls(#[from] tls::TlsFileError),
    #[error(transparent)]
    Etcd(#[from] crate::etcd::EtcdError),
    #[error("mesh CA (--mesh-ca-cert/--mesh-ca-key): {0}")]
    MeshCa(#[from] crate::identity::workload::MeshCaError),
    #[error("{0}")]
    Mesh(String),
}

/// Why a config with `mesh:` is refused by a serve without `--mesh-ca-*` (at start, serve
/// stops; on reload, the last good config stays).
const NO_MESH_CA: &str = "mesh: this config has a `mesh:` section, which needs the CA that signs workload certificates: start serve with --mesh-ca-cert and --mesh-ca-key (`flotilla certs ca` makes one)";

/// The longest a continuous stream of file changes can delay a reload.
const MAX_DEBOUNCE: Duration = Duration::from_secs(2);

/// Runs until `shutdown` is cancelled. An invalid config at start-up is logged and the server
/// stays up, not ready, serving nothing, until a valid one is loaded.
pub async fn run(opts: ServeOptions, shutdown: CancellationToken) -> Result<(), ServeError> {
    // Every subsystem's metric families, registered once, before anything records.
    let mut registry = crate::metrics::registry();
    let control_metrics = ControlMetrics::register(&mut registry);
    let health_metrics = crate::health::HealthMetrics::register(&mut registry);
    let xds_metrics = xds::XdsMetrics::register(&mut registry);
    let identity_metrics = crate::identity::IdentityMetrics::register(&mut registry);
    let mesh_metrics = crate::identity::MeshMetrics::register(&mut registry);
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
    let traffic_metrics = crate::traffic::TrafficMetrics::register(&mut registry);
    let store_available = prometheus_client::metrics::gauge::Gauge::<i64>::default();
    registry.register(
        "store_available",
        "1 while the runtime store answers (always, with the state file); 0 while this replica cannot reach etcd and refuses changes",
        store_available.clone(),
    );
    let store_metrics = crate::etcd::StoreMetrics::register(&mut registry);
    let exposition = crate::metrics::Exposition::new(registry);

    let cache = Arc::new(SnapshotCache::new());
    let controller = Controller::new(cache.clone(), control_metrics);
    let nodes = NodeRegistry::new();

    let (link, shared_health) = match &opts.store {
        Some(_) => {
            let me = opts
                .replica_id
                .clone()
                .unwrap_or_else(crate::runtime::replicated::default_replica_id);
            let (link, health) = crate::runtime::replicated::link(me);
            (Some(link), Some(health))
        }
        None => (None, None),
    };
    let health = crate::health::spawn_shared(
        controller.clone(),
        crate::health::HealthOptions {
            metrics: health_metrics,
            ..Default::default()
        },
        shared_health,
        shutdown.clone(),
    );
    reload_off_runtime(&controller, &opts.config, "startup", None, mesh_ca).await;
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
    let runtime = match (&opts.store, link) {
        (Some(url), Some(link)) => {
            info!(store = %url, replica = %link.me, "sharing runtime state through etcd");
            crate::runtime::Runtime::start_shared(
                controller.clone(),
                crate::runtime::shared::SharedState::new(url)?.with_metrics(store_metrics),
                link,
                shutdown.clone(),
            )
        }
        _ => crate::runtime::Runtime::start(
            controller.clone(),
            crate::runtime::store::StateFile::new(opts.state_file.clone()),
            shutdown.clone(),
        )?,
    };
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
    if let Some(files) = &files {
        follow_files(&controller, files);
    }
    tokio::spawn(reload_loop(
        controller.clone(),
        opts.config.clone(),
        Watchers {
            config: watcher.map(Arc::new),
            files,
        },
        [changes, file_changes],
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
    info!(
        xds = %xds_listener.local_addr().unwrap_or(opts.xds_listen),
        admin = %admin_listener.local_addr().unwrap_or(opts.admin_listen),
        "listening"
    );
    // True exactly while the xDS server runs: /readyz turns unready if it ever stops.
    let xds_listening = Arc::new(AtomicBool::new(false));

    let traffic = crate::traffic::TrafficAggregate::new(traffic_metrics);
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
        shutdown.clone(),
    ));
    xds_listening.store(true, Ordering::Release);
    let runtime_for_leave = runtime.clone();
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
            traffic: traffic.clone(),
            shutdown: shutdown.clone(),
            authorizer,
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
async fn reload_loop(
    controller: Arc<Controller>,
    path: PathBuf,
    watchers: Watchers,
    [mut changes, mut file_changes]: [Option<mpsc::Receiver<()>>; 2],
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
    loop {
        let trigger = tokio::select! {
            () = shutdown.cancelled() => return,
            Some(()) = async { changes.as_mut()?.recv().await } => "watch",
            Some(()) = async { file_changes.as_mut()?.recv().await } => "certificate files",
            Some(()) = async { hangup.as_mut()?.recv().await } => "SIGHUP",
            else => {
                shutdown.cancelled().await;
                return;
            }
        };
        let rearm = watchers.config.clone().filter(|_| trigger == "SIGHUP");
        reload_off_runtime(&controller, &path, trigger, rearm, mesh_ca).await;
        if let Some(files) = &watchers.files {
            follow_files(&controller, files);
        }
    }
}

/// What asks for a reload besides SIGHUP: the config's directory and the files it names.
struct Watchers {
    config: Option<Arc<config::watch::ConfigWatcher>>,
    files: Option<Arc<config::watch_files::FilesWatcher>>,
}

/// Watches the certificate files the served config names (none before a config is served).
fn follow_files(controller: &Controller, files: &config::watch_files::FilesWatcher) {
    if let Some(config) = controller.config() {
        files.follow(config::model::secret_files(&config.secrets));
    }
}

/// [`reload`] on a blocking thread: reading, validating, translating and encoding a large
/// config takes seconds, which must not stall the xDS streams and the admin API.
async fn reload_off_runtime(
    controller: &Arc<Controller>,
    path: &std::path::Path,
    trigger: &'static str,
    rearm: Option<Arc<config::watch::ConfigWatcher>>,
    mesh_ca: bool,
) {
    let (controller, path) = (controller.clone(), path.to_path_buf());
    let done = tokio::task::spawn_blocking(move || {
        if let Some(watcher) = rearm {
            watcher.rearm();
        }
        reload(&controller, &path, trigger, mesh_ca);
    })
    .await;
    if let Err(e) = done {
        error!(trigger, error = %e, "config reload failed; still serving the last good config");
    }
}

/// Loads the config at `path` and serves it if it is valid, differs from what is served, and
/// does not empty a fleet by probable accident (see [`config::empty`]).
pub fn reload(
    controller: &Controller,
    path: &std::path::Path,
    trigger: &'static str,
    mesh_ca: bool,
) -> Reload {
    let loaded = config::load(path)
        .map(|l| l.config)
        .map_err(|e| e.lines())
        .and_then(|config| {
            if config.mesh.is_some() && !mesh_ca {
                return Err(vec![format!(
                    "{}: {NO_MESH_CA}",
                    config::escape_controls(&path.display().to_string())
                )]);
            }
            Ok(config)
        })
        .and_then(|config| match controller.config() {
            Some(served) => match config::empty::refusal(&served, &config) {
                Some(why) => Err(vec![format!(
                    "{}: {why}",
                    config::escape_controls(&path.display().to_string())
                )]),
                None => Ok(config),
            },
            None => Ok(config),
        });
    // The controller reports the outcome (log, event, metric).
    controller.reload(trigger, loaded)
}
