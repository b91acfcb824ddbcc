//! The admin HTTP server: health, readiness, Prometheus metrics, the JSON API and the live
//! dashboard that reads it.
//!
//! It reads the controller, the cache and the node registry; the only writes it makes go
//! through the controller, like every other change to what Envoys run.

pub mod api;
pub mod certificates;
pub mod connections;
pub mod dashboard;
mod errors;
pub mod gitops;
pub mod guard;
pub mod mesh;
pub mod mesh_graph;
pub mod mutations;
pub mod reads;
mod tls_listener;

pub use connections::{AdminLimits, PROBE_SLOTS};
pub use errors::MAX_URL;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::control::Controller;
use crate::xds::NodeRegistry;

/// What the admin server reads. It never changes what Envoys run except through the
/// controller.
#[derive(Clone)]
pub struct AdminState {
    pub config_path: std::path::PathBuf,
    pub health: crate::health::HealthTable,
    pub traffic: Arc<crate::traffic::TrafficAggregate>,
    pub runtime: Arc<crate::runtime::Runtime>,
    pub mutations: mutations::Mutations,
    /// Who may read (everything but the probes).
    pub reads: reads::Reads,
    pub controller: Arc<Controller>,
    pub nodes: Arc<NodeRegistry>,
    /// The `Host` values this server answers to.
    pub hosts: guard::Hosts,
    /// True while the xDS server is serving (set when it starts, cleared when it stops).
    pub xds_listening: Arc<AtomicBool>,
    /// Every subsystem's metrics, for `/metrics`.
    pub metrics: crate::metrics::Exposition,
    /// The applied configs (`/api/v1/history`).
    pub history: Arc<crate::gitops::history::History>,
}

pub fn router(state: AdminState) -> Router {
    let endpoint = "/api/v1/clusters/{cluster}/endpoints/{address}";
    let mutating = Router::new()
        .route(
            &format!("{endpoint}/drain"),
            post(mutations::drain).delete(mutations::undrain),
        )
        .route(
            &format!("{endpoint}/weight"),
            put(mutations::set_weight).delete(mutations::clear_weight),
        )
        .route(
            "/api/v1/clusters/{cluster}/registrations",
            post(mutations::register),
        )
        .route(
            "/api/v1/clusters/{cluster}/registrations/{address}",
            delete(mutations::deregister),
        )
        .route(
            "/api/v1/clusters/{cluster}/registrations/{address}/leave",
            post(mutations::ask_to_leave),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            mutations::authorize,
        ));
    let reading = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/state", get(api::state))
        .route("/api/v1/nodes", get(api::nodes))
        .route("/api/v1/events", get(api::events))
        .route("/api/v1/traffic", get(api::traffic))
        .route("/api/v1/certificates", get(certificates::certificates))
        .route("/api/v1/status", get(gitops::status))
        .route("/api/v1/history", get(gitops::history))
        .route("/api/v1/resources", get(gitops::resources))
        .route("/api/v1/mesh", get(mesh::mesh))
        .route("/api/v1/mesh/graph", get(mesh_graph::graph))
        .merge(dashboard::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            reads::authorize,
        ));
    Router::new()
        .merge(mutating)
        .merge(reading)
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        .layer(axum::middleware::from_fn(errors::json_errors))
        .with_state(state)
}

/// Ready once a config is served and the xDS port is open. A reload that cannot read the
/// files (EMFILE) leaves it ready (the last good config is served) but says so on a second
/// line, `reload: unreadable, retrying: <error>`, for whoever looks.
async fn readyz(State(state): State<AdminState>) -> (StatusCode, String) {
    if state.controller.config().is_none() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "no valid configuration loaded yet\n".to_string(),
        );
    }
    if !state.xds_listening.load(Ordering::Acquire) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "xDS port not open yet\n".to_string(),
        );
    }
    match state.controller.last_reload() {
        Some(r) if r.result == crate::control::ReloadResult::Unreadable => (
            StatusCode::OK,
            format!(
                "ready\nreload: unreadable, retrying: {}\n",
                r.errors.first().map(String::as_str).unwrap_or("?")
            ),
        ),
        _ => (StatusCode::OK, "ready\n".to_string()),
    }
}

async fn metrics(State(state): State<AdminState>) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

/// Serves the admin API on `listener`, over TLS when `tls` is given (its files re-read when
/// they change, as the xDS port's).
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    tls: Option<Arc<crate::tls::ServerTls>>,
    limits: AdminLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = router(state);
    match tls {
        None => connections::serve(listener, app, limits, shutdown).await,
        Some(tls) => {
            tokio::spawn(tls.clone().watch(shutdown.clone()));
            let listener = tls_listener::TlsListener::new(listener, tls, shutdown.clone());
            connections::serve(listener, app, limits, shutdown).await
        }
    }
}

#[cfg(test)]
mod tests;
