//! `flotilla quickstart`: flotilla, three demo backends and an Envoy, from one command.
//!
//! The config is `examples/quickstart.yaml`, embedded in the binary and written to a temp
//! directory that flotilla watches, so it can be edited live while the quickstart runs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::envoy::bootstrap::{self, BootstrapOptions};
use crate::envoy::{json, yaml};
use crate::serve::{self, ServeOptions};

/// The quickstart config, as in `examples/quickstart.yaml`.
pub const CONFIG: &str = include_str!("../examples/quickstart.yaml");

const BACKENDS: [u16; 3] = [8081, 8082, 8083];
const LISTENER: &str = "127.0.0.1:10000";
const XDS: &str = "127.0.0.1:18000";
const ADMIN: &str = "127.0.0.1:18080";
const ENVOY_ADMIN_PORT: u16 = 9901;

#[derive(Debug, thiserror::Error)]
pub enum QuickstartError {
    #[error("Envoy not found at {0}: run scripts/quickstart (it installs Envoy), or set ENVOY_BIN")]
    NoEnvoy(PathBuf),
    #[error("cannot listen on {addr}: {source} (is another quickstart running?)")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Serve(#[from] serve::ServeError),
    #[error(transparent)]
    Json(#[from] json::JsonError),
}

/// What is running, for the banner the command prints.
#[derive(Debug, Clone)]
pub struct Running {
    pub config: PathBuf,
    pub envoy_log: PathBuf,
}

impl Running {
    pub fn banner(&self) -> String {
        format!(
            "\nflotilla quickstart is running: three demo backends, flotilla, and an Envoy.\n\n\
             \x20 try it:        curl http://{LISTENER}/      (run it a few times: round robin)\n\
             \x20 dashboard:     http://{ADMIN}/   (live traffic, health, Envoys, events)\n\
             \x20 live config:   {config}   (edit it; Envoy follows)\n\
             \x20 flotilla:      curl http://{ADMIN}/api/v1/state   ·   /api/v1/nodes   ·   /metrics\n\
             \x20 Envoy admin:   http://127.0.0.1:{ENVOY_ADMIN_PORT}/   (log: {log})\n\n\
             Ctrl-C stops everything.\n",
            config = self.config.display(),
            log = self.envoy_log.display(),
        )
    }
}

/// Runs until `shutdown`; everything it started stops with it. `ready` is called once Envoy
/// accepts requests.
pub async fn run(
    envoy_bin: PathBuf,
    shutdown: CancellationToken,
    ready: impl FnOnce(&Running),
) -> Result<(), QuickstartError> {
    if !envoy_bin.exists() {
        return Err(QuickstartError::NoEnvoy(envoy_bin));
    }
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("quickstart.yaml");
    std::fs::write(&config, CONFIG)?;

    for (i, port) in BACKENDS.iter().enumerate() {
        let addr = SocketAddr::from(([127, 0, 0, 1], *port));
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| QuickstartError::Bind { addr, source })?;
        tokio::spawn(demo_backend(
            listener,
            format!("backend-{}", i + 1),
            shutdown.clone(),
        ));
    }

    let opts = ServeOptions {
        config: config.clone(),
        xds_listen: XDS.parse().expect("constant address"),
        admin_listen: ADMIN.parse().expect("constant address"),
        watch: true,
        debounce: Duration::from_millis(100),
        admin_token: None,
        admin_allowed_hosts: Vec::new(),
        state_file: dir.path().join("state.json"),
        history_file: None,
        store: None,
        replica_id: None,
        dns_servers: Vec::new(),
        xds_limits: crate::xds::Limits::default(),
        xds_tls: None,
        admin_tls: None,
        admin_public_read: false,
        revisions: Default::default(),
        admin_limits: crate::admin::AdminLimits::default(),
        load_policy: crate::config::LoadPolicy::default(),
        allow_plaintext_secrets: false,
        mesh_ca: None,
    };
    let server = tokio::spawn(serve::run(opts, shutdown.clone()));

    let bootstrap = bootstrap::bootstrap(&BootstrapOptions {
        node_id: "quickstart-envoy".into(),
        fleet: "quickstart".into(),
        xds: vec![("127.0.0.1".into(), 18000)],
        delta: false,
        ads: true,
        admin_address: [127, 0, 0, 1].into(),
        admin_port: ENVOY_ADMIN_PORT,
        stats_flush: Some(Duration::from_secs(2)),
        xds_tls: None,
        inbound: None,
        transparent: None,
    });
    let bootstrap_path = dir.path().join("envoy.yaml");
    std::fs::write(
        &bootstrap_path,
        yaml::to_string(&json::message_to_json(&bootstrap)?),
    )?;
    let envoy_log = dir.path().join("envoy.log");
    let mut envoy = Command::new(&envoy_bin)
        .arg("-c")
        .arg(&bootstrap_path)
        .args(["--disable-hot-restart", "--concurrency", "2", "--log-path"])
        .arg(&envoy_log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;

    let running = Running {
        config,
        envoy_log: envoy_log.clone(),
    };
    let listening = async {
        while tokio::net::TcpStream::connect(LISTENER).await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::select! {
        () = listening => {
            info!(listener = LISTENER, "quickstart ready");
            ready(&running);
        }
        () = shutdown.cancelled() => {}
        status = envoy.wait() => {
            tracing::error!(status = ?status.ok(), log = %envoy_log.display(), "Envoy exited");
            shutdown.cancel();
        }
    }

    tokio::select! {
        () = shutdown.cancelled() => {}
        status = envoy.wait() => {
            tracing::error!(status = ?status.ok(), log = %envoy_log.display(), "Envoy exited");
            shutdown.cancel();
        }
    }
    let _ = envoy.kill().await;
    match server.await {
        Ok(result) => result?,
        Err(join) => return Err(QuickstartError::Io(std::io::Error::other(join))),
    }
    Ok(())
}

/// A demo backend: answers with its name, and `/healthz` with `ok`.
async fn demo_backend(listener: TcpListener, name: String, shutdown: CancellationToken) {
    let hello = format!("hello from {name}\n");
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(move || {
            let hello = hello.clone();
            async move { hello }
        });
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
}
