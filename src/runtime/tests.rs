//! Runtime operations against a real controller, with time paused for leases.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Runtime, RuntimeError};
use crate::cache::SnapshotCache;
use crate::config::parse_str;
use crate::control::Controller;
use crate::overlay::EndpointKey;
use crate::store::StateFile;

fn controller() -> Arc<Controller> {
    controller_with("{}")
}

/// A controller serving cluster `web` with `registrations` (YAML) if not empty.
fn controller_with(registrations: &str) -> Arc<Controller> {
    let c = Controller::new(Arc::new(SnapshotCache::new()), Default::default());
    let mut yaml =
        "version: 1\nclusters:\n  web:\n    endpoints: [127.0.0.1:8081, 127.0.0.1:8082]\n"
            .to_string();
    if !registrations.is_empty() {
        yaml += &format!("    registrations: {registrations}\n");
    }
    c.set_config(Arc::new(parse_str("t.yaml", &yaml).unwrap()));
    c
}

fn runtime(c: &Arc<Controller>, dir: &std::path::Path) -> Arc<Runtime> {
    Runtime::local(
        c.clone(),
        StateFile::new(dir.join("s.json")),
        CancellationToken::new(),
    )
    .unwrap()
}

fn key(a: &str) -> EndpointKey {
    EndpointKey::new("web", a.parse().unwrap())
}

#[tokio::test(start_paused = true)]
async fn leases_expire_unless_renewed() {
    let dir = tempfile::tempdir().unwrap();
    let c = controller();
    let rt = Runtime::local(
        c.clone(),
        StateFile::new(dir.path().join("s.json")),
        CancellationToken::new(),
    )
    .unwrap();
    rt.lease("web", "10.0.0.7:8080", 2, Duration::from_secs(10))
        .await
        .unwrap();
    rt.registrations_published().await;
    assert_eq!(c.overlay().registered["web"][0].weight, 2);
    tokio::time::sleep(Duration::from_secs(8)).await;
    rt.lease("web", "10.0.0.7:8080", 2, Duration::from_secs(10))
        .await
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
    let rt = Runtime::local(
        c.clone(),
        StateFile::new(path.clone()),
        CancellationToken::new(),
    )
    .unwrap();
    assert!(rt.drain("web", "127.0.0.1:8081", true).await.unwrap());
    assert!(
        !rt.drain("web", "127.0.0.1:8081", true).await.unwrap(),
        "idempotent"
    );
    assert!(
        rt.set_weight("web", "127.0.0.1:8082", Some(5))
            .await
            .unwrap()
    );
    assert!(c.overlay().draining.contains(&key("127.0.0.1:8081")));

    let fresh = controller();
    let rt = Runtime::local(
        fresh.clone(),
        StateFile::new(path),
        CancellationToken::new(),
    )
    .unwrap();
    rt.listed().await;
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
    let rt = Runtime::local(
        c.clone(),
        StateFile::new(dir.path().join("s.json")),
        CancellationToken::new(),
    )
    .unwrap();
    let before = c.overlay();
    assert!(matches!(
        rt.drain("nope", "127.0.0.1:8081", true).await,
        Err(RuntimeError::UnknownCluster(_))
    ));
    assert!(matches!(
        rt.drain("web", "127.0.0.1:9999", true).await,
        Err(RuntimeError::UnknownEndpoint { .. })
    ));
    assert!(matches!(
        rt.drain("web", "not-an-address", true).await,
        Err(RuntimeError::BadRequest(_))
    ));
    assert!(matches!(
        rt.set_weight("web", "127.0.0.1:8081", Some(0)).await,
        Err(RuntimeError::BadRequest(_))
    ));
    assert!(matches!(
        rt.lease("web", "10.0.0.1:1", 1, Duration::from_millis(10))
            .await,
        Err(RuntimeError::BadRequest(_))
    ));
    assert!(matches!(
        rt.lease("web", "127.0.0.1:8081", 1, Duration::from_secs(10))
            .await,
        Err(RuntimeError::Configured { .. })
    ));
    assert_eq!(c.overlay(), before);
    assert!(!dir.path().join("s.json").exists(), "nothing was stored");
}

const TTL: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_burst_of_registrations_is_published_once_not_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let c = controller_with("{ max: 2000 }");
    let rt = runtime(&c, dir.path());
    let before = c.version();
    rt.listed().await;
    // Each publish costs as much as the cluster has endpoints: publishing once per
    // registration made n registrations cost n² (10,000 took 52 s).
    for i in 0..2000u32 {
        let address = format!("10.0.{}.{}:80", i / 256, i % 256);
        rt.lease("web", &address, 1, TTL).await.unwrap();
    }
    rt.registrations_published().await;
    let publishes = rt.publishes.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        publishes < 100,
        "published {publishes} times for 2000 registrations"
    );
    assert_eq!(c.overlay().registered["web"].len(), 2000);
    assert_ne!(c.version(), before);
    assert_eq!(rt.leases().len(), 2000);
}

#[tokio::test]
async fn a_cluster_takes_registrations_up_to_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let c = controller_with("{ max: 2 }");
    let rt = runtime(&c, dir.path());
    rt.lease("web", "10.0.0.1:80", 1, TTL).await.unwrap();
    rt.lease("web", "10.0.0.2:80", 1, TTL).await.unwrap();
    let err = rt.lease("web", "10.0.0.3:80", 1, TTL).await.unwrap_err();
    assert!(matches!(err, RuntimeError::Full { max: 2, .. }), "{err}");
    assert!(err.to_string().contains("registrations.max"), "{err}");
    // Renewals are not new registrations; a lease that ends makes room.
    rt.lease("web", "10.0.0.2:80", 3, TTL).await.unwrap();
    assert!(rt.end_lease("web", "10.0.0.1:80").await.unwrap());
    rt.lease("web", "10.0.0.3:80", 1, TTL).await.unwrap();
    rt.registrations_published().await;
    let registered: Vec<String> = c.overlay().registered["web"]
        .iter()
        .map(|e| e.address.to_string())
        .collect();
    assert_eq!(registered, ["10.0.0.2:80", "10.0.0.3:80"]);
}

#[tokio::test]
async fn the_default_limit_is_a_thousand() {
    let dir = tempfile::tempdir().unwrap();
    let c = controller();
    let rt = runtime(&c, dir.path());
    for i in 0..1000u32 {
        let address = format!("10.1.{}.{}:80", i / 256, i % 256);
        rt.lease("web", &address, 1, TTL).await.unwrap();
    }
    assert!(matches!(
        rt.lease("web", "10.2.0.1:80", 1, TTL).await,
        Err(RuntimeError::Full { max: 1000, .. })
    ));
}

#[tokio::test]
async fn unspecified_link_local_and_metadata_addresses_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = controller();
    let rt = runtime(&c, dir.path());
    for address in [
        "0.0.0.0:80",
        "[::]:80",
        "169.254.169.254:80",
        "169.254.1.1:8080",
        "[fe80::1]:80",
        "[::ffff:169.254.169.254]:80",
        "[fd00:ec2::254]:80",
    ] {
        let err = rt.lease("web", address, 1, TTL).await.unwrap_err();
        assert!(
            matches!(err, RuntimeError::BadRequest(_)),
            "{address}: {err}"
        );
        assert!(err.to_string().contains("allow_addresses"), "{err}");
    }
    assert!(rt.leases().is_empty());
}

#[tokio::test]
async fn a_cluster_may_allow_refused_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let c = controller_with("{ allow_addresses: [169.254.0.0/16] }");
    let rt = runtime(&c, dir.path());
    rt.lease("web", "169.254.169.254:80", 1, TTL).await.unwrap();
    assert!(rt.lease("web", "0.0.0.0:80", 1, TTL).await.is_err());
}
