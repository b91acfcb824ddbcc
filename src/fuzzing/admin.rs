//! The admin API's path parameters and JSON bodies, through the whole router in-process.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use tower_service::Service;

use crate::admin::mutations::Mutations;
use crate::admin::{AdminState, guard::Hosts, router};
use crate::cache::SnapshotCache;
use crate::control::Controller;
use crate::runtime::Runtime;
use crate::store::StateFile;

const METHODS: [&str; 6] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"];

/// `data[0]` picks the method (low bits) and whether the body is declared JSON (bit 3);
/// the bytes up to the first newline are the path and query, the rest is the body. Every
/// error must be the API's JSON error, and nothing may be an internal error.
pub fn admin_request(data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let split = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
    let (path, body) = (&rest[..split], rest.get(split + 1..).unwrap_or_default());
    let mut request = Request::builder()
        .method(METHODS[usize::from(control) % METHODS.len()])
        .uri(path)
        .header("host", "127.0.0.1:18080");
    if control & 8 == 0 {
        request = request.header("content-type", "application/json");
    }
    let Ok(request) = request.body(Body::from(body.to_vec())) else {
        return;
    };
    let path = request.uri().path().to_string();
    let head = request.method() == Method::HEAD;
    let (runtime, state) = server();
    let (status, json) = runtime.block_on(async move {
        let resp = router(state.clone())
            .call(request)
            .await
            .expect("the router is infallible");
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("a response body");
        (
            status,
            serde_json::from_slice::<serde_json::Value>(&body).ok(),
        )
    });
    assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
    let plain = head || matches!(path.as_str(), "/healthz" | "/readyz" | "/metrics");
    if (status.is_client_error() || status.is_server_error()) && !plain {
        assert!(
            json.is_some_and(|j| j["error"].is_string()),
            "{status} on {path} is not a JSON error"
        );
    }
}

/// One admin server (and the runtime it needs) for every input: registrations and drains
/// accumulate as they would in a long-running flotilla.
fn server() -> &'static (tokio::runtime::Runtime, AdminState) {
    static SERVER: OnceLock<(tokio::runtime::Runtime, AdminState)> = OnceLock::new();
    SERVER.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let state = runtime.block_on(async {
            let controller = Controller::new(Arc::new(SnapshotCache::new()), Default::default());
            let config = crate::config::parse_str("quickstart.yaml", crate::quickstart::CONFIG)
                .expect("the quickstart config is valid");
            controller.set_config(Arc::new(config));
            // The state file on tmpfs where there is one: every drain is fsync'd.
            let shm = std::path::Path::new("/dev/shm");
            let dir = if shm.is_dir() {
                shm.to_path_buf()
            } else {
                std::env::temp_dir()
            };
            let file = dir.join(format!("flotilla-fuzz-state-{}.json", std::process::id()));
            let _ = std::fs::remove_file(&file);
            let runtime = Runtime::local(
                controller.clone(),
                StateFile::new(file),
                tokio_util::sync::CancellationToken::new(),
            )
            .expect("an empty state file");
            AdminState {
                config_path: "quickstart.yaml".into(),
                health: Default::default(),
                traffic: crate::traffic::TrafficAggregate::new(Default::default()),
                runtime,
                mutations: Mutations::Loopback,
                reads: crate::admin::reads::Reads::Open,
                controller,
                nodes: crate::xds::NodeRegistry::new(),
                hosts: Hosts::new("127.0.0.1:18080".parse().expect("an address"), &[])
                    .expect("no extra hosts"),
                xds_listening: Arc::new(AtomicBool::new(true)),
                metrics: Default::default(),
                history: Default::default(),
            }
        });
        (runtime, state)
    })
}
