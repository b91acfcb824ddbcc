//! The admin router in-process: the rule for who may change things.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::guard::Hosts;
use super::mutations::Mutations;
use super::{AdminState, router};
use crate::cache::SnapshotCache;
use crate::control::Controller;
use crate::runtime::Runtime;
use crate::store::StateFile;
use crate::xds::NodeRegistry;

fn state(mutations: Mutations, dir: &std::path::Path) -> AdminState {
    let controller = Controller::new(Arc::new(SnapshotCache::new()), Default::default());
    let config = crate::config::parse_str(
        "t.yaml",
        "version: 1\nclusters:\n  web: { endpoints: [127.0.0.1:8081], registrations: {} }\n",
    )
    .unwrap();
    controller.set_config(Arc::new(config));
    let runtime = Runtime::local(
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
        reads: super::reads::Reads::Open,
        controller,
        nodes: NodeRegistry::new(),
        hosts: Hosts::new("127.0.0.1:18080".parse().unwrap(), &[]).unwrap(),
        xds_listening: Arc::new(AtomicBool::new(true)),
        metrics: Default::default(),
        history: Default::default(),
    }
}

const DRAIN: &str = "/api/v1/clusters/web/endpoints/127.0.0.1:8081/drain";

async fn call(state: AdminState, req: Request<Body>) -> (StatusCode, String) {
    let resp = router(state).oneshot(req).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn drain(state: AdminState) -> (StatusCode, String) {
    let req = Request::post(DRAIN)
        .header("host", "127.0.0.1:18080")
        .body(Body::empty())
        .unwrap();
    call(state, req).await
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

/// A request as a browser sends it from `origin` to the admin server at `host`.
fn from_browser(method: &str, uri: &str, host: &str, origin: Option<&str>) -> Request<Body> {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", host);
    if let Some(origin) = origin {
        req = req.header("origin", origin);
    }
    req.body(Body::empty()).unwrap()
}

fn is_json_error(body: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(body).is_ok_and(|v| v["error"].is_string())
}

#[tokio::test]
async fn a_change_from_another_origin_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(Mutations::Loopback, dir.path());
    let controller = s.controller.clone();
    let req = from_browser(
        "POST",
        DRAIN,
        "127.0.0.1:18080",
        Some("http://evil.example"),
    );
    let (status, body) = call(s.clone(), req).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(is_json_error(&body), "{body}");
    let req = from_browser("POST", DRAIN, "127.0.0.1:18080", Some("null"));
    assert_eq!(call(s.clone(), req).await.0, StatusCode::FORBIDDEN);
    assert!(controller.overlay().draining.is_empty());

    // The dashboard's own origin (and curl, which sends none) may.
    let req = from_browser(
        "POST",
        DRAIN,
        "127.0.0.1:18080",
        Some("http://127.0.0.1:18080"),
    );
    let (status, body) = call(s, req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(controller.overlay().draining.len(), 1);
}

#[tokio::test]
async fn a_rebound_host_name_is_refused_for_reads_and_changes() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(Mutations::Loopback, dir.path());
    let controller = s.controller.clone();
    let rebound = "rebind.evil.example:18080";
    let (status, body) = call(s.clone(), from_browser("POST", DRAIN, rebound, None)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("--admin-allowed-host"), "{body}");
    let req = from_browser("GET", "/api/v1/state", rebound, None);
    assert_eq!(call(s.clone(), req).await.0, StatusCode::FORBIDDEN);
    assert!(controller.overlay().draining.is_empty());
    for host in ["localhost:18080", "[::1]:18080", "127.0.0.1"] {
        let req = from_browser("GET", "/api/v1/state", host, None);
        assert_eq!(call(s.clone(), req).await.0, StatusCode::OK, "{host}");
    }
}

#[tokio::test]
async fn an_allowed_host_name_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = state(Mutations::Loopback, dir.path());
    s.hosts = Hosts::new(
        "127.0.0.1:18080".parse().unwrap(),
        &["Flotilla.Internal".to_string()],
    )
    .unwrap();
    let req = from_browser("GET", "/api/v1/state", "flotilla.internal:18080", None);
    assert_eq!(call(s, req).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_body_must_be_json() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(Mutations::Loopback, dir.path());
    let controller = s.controller.clone();
    // What a cross-site form can send without a preflight.
    for (uri, body) in [
        (DRAIN, "x=1"),
        (
            "/api/v1/clusters/web/registrations",
            r#"{"address": "10.0.0.9:80", "ttl": "10s"}"#,
        ),
    ] {
        let req = Request::post(uri)
            .header("host", "127.0.0.1:18080")
            .header("content-type", "text/plain")
            .body(Body::from(body))
            .unwrap();
        let (status, body) = call(s.clone(), req).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{uri}: {body}");
        assert!(is_json_error(&body), "{body}");
    }
    assert!(controller.overlay().draining.is_empty());
    assert!(controller.overlay().registered.is_empty());

    let req = Request::post("/api/v1/clusters/web/registrations")
        .header("host", "127.0.0.1:18080")
        .header("content-type", "application/json; charset=utf-8")
        .body(Body::from(r#"{"address": "10.0.0.9:80", "ttl": "10s"}"#))
        .unwrap();
    let (status, body) = call(s, req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn router_errors_are_json_too() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(Mutations::Loopback, dir.path());
    let host = "127.0.0.1:18080";
    // Bad UTF-8 in a path parameter, a method the route does not take, an unknown path.
    let bad_utf8 = "/api/v1/clusters/%FF%FE/endpoints/127.0.0.1:8081/drain";
    let long = format!("/api/v1/state?{}", "a".repeat(crate::admin::MAX_URL));
    for (method, uri, expected) in [
        ("POST", bad_utf8, StatusCode::BAD_REQUEST),
        ("GET", DRAIN, StatusCode::METHOD_NOT_ALLOWED),
        ("GET", "/api/v1/nothing", StatusCode::NOT_FOUND),
        ("GET", long.as_str(), StatusCode::URI_TOO_LONG),
    ] {
        let (status, body) = call(s.clone(), from_browser(method, uri, host, None)).await;
        assert_eq!(status, expected, "{method} {uri}: {body}");
        assert!(is_json_error(&body), "{method} {uri}: {body}");
    }
    let resp = router(s)
        .oneshot(from_browser("GET", DRAIN, host, None))
        .await
        .unwrap();
    assert!(resp.headers().contains_key("allow"), "405 keeps Allow");
}

async fn get(state: AdminState, path: &str) -> (StatusCode, String) {
    call(state, from_browser("GET", path, "127.0.0.1:18080", None)).await
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
        .lease(
            "web",
            "127.0.0.1:9000",
            1,
            std::time::Duration::from_secs(60),
        )
        .await
        .unwrap();
    let config = crate::config::parse_str(
        "t.yaml",
        "version: 1\nclusters:\n  web: { endpoints: [127.0.0.1:8081, 127.0.0.1:9000], registrations: {} }\n",
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
