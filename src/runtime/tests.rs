//! Runtime operations against a real controller, with time paused for leases.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::store::StateFile;
use super::{Runtime, RuntimeError};
use crate::cache::SnapshotCache;
use crate::config::parse_str;
use crate::control::Controller;
use crate::overlay::EndpointKey;

fn controller() -> Arc<Controller> {
    let c = Controller::new(Arc::new(SnapshotCache::new()), Default::default());
    let config = parse_str(
        "t.yaml",
        "version: 1\nclusters:\n  web: { endpoints: [127.0.0.1:8081, 127.0.0.1:8082] }\n",
    )
    .unwrap();
    c.set_config(Arc::new(config));
    c
}

fn key(a: &str) -> EndpointKey {
    EndpointKey::new("web", a.parse().unwrap())
}

#[tokio::test(start_paused = true)]
async fn leases_expire_unless_renewed() {
    let dir = tempfile::tempdir().unwrap();
    let c = controller();
    let rt = Runtime::start(
        c.clone(),
        StateFile::new(dir.path().join("s.json")),
        CancellationToken::new(),
    )
    .unwrap();
    rt.register("web", "10.0.0.7:8080", 2, Duration::from_secs(10))
        .unwrap();
    assert_eq!(c.overlay().registered["web"][0].weight, 2);
    tokio::time::sleep(Duration::from_secs(8)).await;
    rt.register("web", "10.0.0.7:8080", 2, Duration::from_secs(10))
        .unwrap();
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(
        c.overlay().registered.contains_key("web"),
        "renewed lease still live"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !c.overlay().registered.contains_key("web"),
        "gone once the TTL ran out"
    );
}

#[tokio::test]
async fn drains_and_weights_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.json");
    let c = controller();
    let rt = Runtime::start(
        c.clone(),
        StateFile::new(path.clone()),
        CancellationToken::new(),
    )
    .unwrap();
    assert!(rt.drain("web", "127.0.0.1:8081", true).unwrap());
    assert!(
        !rt.drain("web", "127.0.0.1:8081", true).unwrap(),
        "idempotent"
    );
    assert!(rt.set_weight("web", "127.0.0.1:8082", Some(5)).unwrap());
    assert!(c.overlay().draining.contains(&key("127.0.0.1:8081")));

    let fresh = controller();
    let _rt = Runtime::start(
        fresh.clone(),
        StateFile::new(path),
        CancellationToken::new(),
    )
    .unwrap();
    assert!(fresh.overlay().draining.contains(&key("127.0.0.1:8081")));
    assert_eq!(
        fresh.overlay().weights.get(&key("127.0.0.1:8082")),
        Some(&5)
    );
}

#[tokio::test]
async fn bad_requests_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let c = controller();
    let rt = Runtime::start(
        c.clone(),
        StateFile::new(dir.path().join("s.json")),
        CancellationToken::new(),
    )
    .unwrap();
    let before = c.overlay();
    assert!(matches!(
        rt.drain("nope", "127.0.0.1:8081", true),
        Err(RuntimeError::UnknownCluster(_))
    ));
    assert!(matches!(
        rt.drain("web", "127.0.0.1:9999", true),
        Err(RuntimeError::UnknownEndpoint { .. })
    ));
    assert!(matches!(
        rt.drain("web", "not-an-address", true),
        Err(RuntimeError::BadRequest(_))
    ));
    assert!(matches!(
        rt.set_weight("web", "127.0.0.1:8081", Some(0)),
        Err(RuntimeError::BadRequest(_))
    ));
    assert!(matches!(
        rt.register("web", "10.0.0.1:1", 1, Duration::from_millis(10)),
        Err(RuntimeError::BadRequest(_))
    ));
    assert!(matches!(
        rt.register("web", "127.0.0.1:8081", 1, Duration::from_secs(10)),
        Err(RuntimeError::Configured { .. })
    ));
    assert_eq!(c.overlay(), before);
    assert!(!dir.path().join("s.json").exists(), "nothing was stored");
}
