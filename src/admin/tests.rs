//! The admin router in-process: the rule for who may change things.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::mutations::Mutations;
use super::{AdminState, router};
use crate::cache::SnapshotCache;
use crate::control::Controller;
use crate::runtime::{Runtime, store::StateFile};
use crate::xds::NodeRegistry;

fn state(mutations: Mutations, dir: &std::path::Path) -> AdminState {
    let controller = Controller::new(Arc::new(SnapshotCache::new()), Default::default());
    let config = crate::config::parse_str(
        "t.yaml",
        "version: 1\nclusters:\n  web: { endpoints: [127.0.0.1:8081] }\n",
    )
    .unwrap();
    controller.set_config(Arc::new(config));
    let runtime = Runtime::start(
        controller.clone(),
        StateFile::new(dir.join("s.json")),
        CancellationToken::new(),
    )
    .unwrap();
    AdminState {
        config_path: "t.yaml".into(),
        health: Default::default(),
        traffic: crate::traffic::TrafficAggregate::new(Default::default()),
        runtime,
        mutations,
        controller,
        nodes: NodeRegistry::new(),
        xds_listening: Arc::new(AtomicBool::new(true)),
        metrics: Default::default(),
    }
}

async fn call(state: AdminState, request: Request<Body>) -> (StatusCode, String) {
    let resp = router(state).oneshot(request).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn drain(state: AdminState) -> (StatusCode, String) {
    let request = Request::post("/api/v1/clusters/web/endpoints/127.0.0.1:8081/drain")
        .body(Body::empty())
        .unwrap();
    call(state, request).await
}

#[test]
fn the_policy_follows_the_token_and_the_listen_address() {
    let loopback = "127.0.0.1:18080".parse().unwrap();
    let v6_loopback = "[::1]:18080".parse().unwrap();
    let public = "10.0.0.5:18080".parse().unwrap();
    assert!(matches!(
        Mutations::new(None, loopback),
        Mutations::Loopback
    ));
    assert!(matches!(
        Mutations::new(None, v6_loopback),
        Mutations::Loopback
    ));
    assert!(matches!(Mutations::new(None, public), Mutations::Refused));
    assert!(matches!(
        Mutations::new(Some(String::new()), public),
        Mutations::Refused
    ));
    assert!(matches!(
        Mutations::new(Some("t".into()), public),
        Mutations::Token(_)
    ));
}

#[tokio::test]
async fn without_a_token_changes_are_refused_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(Mutations::Refused, dir.path());
    let controller = s.controller.clone();
    let (status, body) = drain(s).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("--admin-token"), "{body}");
    assert!(controller.overlay().draining.is_empty());
}

#[tokio::test]
async fn on_loopback_without_a_token_changes_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(Mutations::Loopback, dir.path());
    let controller = s.controller.clone();
    let (status, body) = drain(s).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(controller.overlay().draining.len(), 1);
}

async fn get(state: AdminState, path: &str) -> (StatusCode, String) {
    call(state, Request::get(path).body(Body::empty()).unwrap()).await
}

#[tokio::test]
async fn readyz_is_unready_while_the_xds_server_is_not_serving() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(Mutations::Loopback, dir.path());
    let flag = s.xds_listening.clone();
    assert_eq!(get(s.clone(), "/readyz").await.0, StatusCode::OK);
    flag.store(false, std::sync::atomic::Ordering::Release);
    let (status, body) = get(s, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("xDS"), "{body}");
}

#[tokio::test]
async fn a_registration_git_adds_to_the_cluster_is_listed_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(Mutations::Loopback, dir.path());
    s.runtime
        .register(
            "web",
            "127.0.0.1:9000",
            1,
            std::time::Duration::from_secs(60),
        )
        .unwrap();
    let config = crate::config::parse_str(
        "t.yaml",
        "version: 1\nclusters:\n  web: { endpoints: [127.0.0.1:8081, 127.0.0.1:9000] }\n",
    )
    .unwrap();
    s.controller.set_config(Arc::new(config));
    let view = super::api::state_view(&s);
    let endpoints: Vec<(&str, &str)> = view.clusters[0]
        .endpoints
        .iter()
        .map(|e| (e.address.as_str(), e.source))
        .collect();
    assert_eq!(
        endpoints,
        [("127.0.0.1:8081", "config"), ("127.0.0.1:9000", "config")]
    );
}
