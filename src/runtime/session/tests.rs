//! Stream-bound registrations against a real controller: one rule per test.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{BoundRegistration, MAX_ENDPOINTS_PER_PEER, MAX_ENDPOINTS_PER_STREAM};
use crate::cache::SnapshotCache;
use crate::config::parse_str;
use crate::control::Controller;
use crate::runtime::{Runtime, RuntimeError};
use crate::store::StateFile;

fn runtime(dir: &tempfile::TempDir) -> (Arc<Controller>, Arc<Runtime>) {
    let c = Controller::new(Arc::new(SnapshotCache::new()), Default::default());
    let config = parse_str(
        "t.yaml",
        "version: 1\nclusters:\n  web: { endpoints: [127.0.0.1:8081], registrations: {} }\n  closed: { endpoints: [127.0.0.1:8081] }\n  workers_only: { endpoints: [127.0.0.1:8081], registrations: { from: [workers] } }\n",
    )
    .unwrap();
    c.set_config(Arc::new(config));
    let rt = Runtime::local(
        c.clone(),
        StateFile::new(dir.path().join("s.json")),
        CancellationToken::new(),
    )
    .unwrap();
    (c, rt)
}

fn reg(address: &str) -> BoundRegistration {
    BoundRegistration {
        cluster: "web".into(),
        address: address.into(),
        weight: 3,
        zone: Some("z1".into()),
        ..Default::default()
    }
}

const PEER: Option<IpAddr> = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));

fn registered(c: &Controller) -> Vec<String> {
    c.overlay()
        .registered
        .get("web")
        .map(|v| v.iter().map(|e| e.address.to_string()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn endpoints_live_while_the_session_lives() {
    let dir = tempfile::tempdir().unwrap();
    let (c, rt) = runtime(&dir);
    let s = rt.open_session(PEER).unwrap();
    s.register(&reg("10.0.0.1:80")).await.unwrap();
    s.register(&reg("10.0.0.2:80")).await.unwrap();
    s.published().await;
    assert_eq!(registered(&c), ["10.0.0.1:80", "10.0.0.2:80"]);
    assert_eq!(c.overlay().registered["web"][0].zone.as_deref(), Some("z1"));
    drop(s);
    rt.registrations_published().await;
    assert!(registered(&c).is_empty());
    assert!(rt.leases().is_empty());
}

#[tokio::test]
async fn an_unknown_cluster_or_configured_address_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (c, rt) = runtime(&dir);
    let s = rt.open_session(PEER).unwrap();
    let mut r = reg("10.0.0.1:80");
    r.cluster = "nope".into();
    assert!(matches!(
        s.register(&r).await,
        Err(RuntimeError::UnknownCluster(_))
    ));
    assert!(matches!(
        s.register(&reg("127.0.0.1:8081")).await,
        Err(RuntimeError::Configured { .. })
    ));
    assert!(matches!(
        s.register(&reg("not an address")).await,
        Err(RuntimeError::BadRequest(_))
    ));
    assert!(registered(&c).is_empty());
}

#[tokio::test]
async fn registrations_are_opt_in_per_cluster_and_bound_to_identities() {
    let dir = tempfile::tempdir().unwrap();
    let (c, rt) = runtime(&dir);
    let s = rt.open_session(PEER).unwrap();
    let to = |cluster: &str, fleets: Option<&[&str]>| BoundRegistration {
        cluster: cluster.into(),
        identity_fleets: fleets.map(|f| f.iter().map(|s| s.to_string()).collect()),
        ..reg("10.0.0.1:80")
    };
    for (r, why) in [
        (to("closed", None), "takes no registrations"),
        (to("closed", Some(&["workers"])), "takes no registrations"),
        (
            to("web", Some(&["workers"])),
            "may not register into cluster `web`",
        ),
        (to("workers_only", None), "has no client certificate"),
        (
            to("workers_only", Some(&["batch"])),
            "registrations.from names",
        ),
    ] {
        match s.register(&r).await {
            Err(RuntimeError::Forbidden(m)) => assert!(m.contains(why), "{m}"),
            other => panic!("{}: {other:?}", r.cluster),
        }
    }
    assert!(matches!(
        rt.lease(
            "closed",
            "10.0.0.1:80",
            1,
            std::time::Duration::from_secs(5)
        )
        .await,
        Err(RuntimeError::Forbidden(_))
    ));
    assert!(registered(&c).is_empty());
    s.register(&to("workers_only", Some(&["batch", "workers"])))
        .await
        .unwrap();
    s.register(&to("web", None)).await.unwrap();
}

#[tokio::test]
async fn a_mapped_address_is_the_configured_one() {
    let dir = tempfile::tempdir().unwrap();
    let (c, rt) = runtime(&dir);
    let s = rt.open_session(PEER).unwrap();
    assert!(matches!(
        s.register(&reg("[::ffff:127.0.0.1]:8081")).await,
        Err(RuntimeError::Configured { .. })
    ));
    assert!(matches!(
        rt.lease(
            "web",
            "[::ffff:127.0.0.1]:8081",
            1,
            std::time::Duration::from_secs(5)
        )
        .await,
        Err(RuntimeError::Configured { .. })
    ));
    let long = format!("{}:80", "9".repeat(1 << 20));
    let err = s.register(&reg(&long)).await.unwrap_err().to_string();
    assert!(
        err.len() < 300,
        "the error echoes at most a clip: {} bytes",
        err.len()
    );
    assert!(registered(&c).is_empty());
}

#[tokio::test]
async fn an_address_belongs_to_one_instance() {
    let dir = tempfile::tempdir().unwrap();
    let (_c, rt) = runtime(&dir);
    let a = rt.open_session(PEER).unwrap();
    let b = rt.open_session(PEER).unwrap();
    a.register(&reg("10.0.0.1:80")).await.unwrap();
    assert!(matches!(
        b.register(&reg("10.0.0.1:80")).await,
        Err(RuntimeError::Taken { .. })
    ));
    assert!(matches!(
        rt.lease("web", "10.0.0.1:80", 1, std::time::Duration::from_secs(5))
            .await,
        Err(RuntimeError::Taken { .. })
    ));
    assert!(matches!(
        rt.end_lease("web", "10.0.0.1:80").await,
        Err(RuntimeError::Taken { .. })
    ));
    drop(b);
    assert_eq!(rt.leases().len(), 1, "b's end does not touch a's endpoint");
}

#[tokio::test]
async fn leaving_marks_draining_until_the_session_ends() {
    let dir = tempfile::tempdir().unwrap();
    let (c, rt) = runtime(&dir);
    let s = rt.open_session(PEER).unwrap();
    let key = s.register(&reg("10.0.0.1:80")).await.unwrap();
    s.register(&reg("10.0.0.2:80")).await.unwrap();
    let left = s
        .leave(&[("web".into(), "10.0.0.1:80".into())])
        .await
        .unwrap();
    assert_eq!(left, std::slice::from_ref(&key));
    s.published().await;
    assert_eq!(
        c.overlay().state(&key),
        crate::overlay::EndpointState::Draining
    );
    assert_eq!(c.overlay().leaving.len(), 1);
    assert!(
        c.overlay().draining.is_empty(),
        "an operator's drains stay apart"
    );
    assert!(matches!(
        s.leave(&[("web".into(), "10.0.0.9:80".into())]).await,
        Err(RuntimeError::UnknownEndpoint { .. })
    ));
    drop(s);
    rt.registrations_published().await;
    assert!(c.overlay().leaving.is_empty());
}

#[tokio::test]
async fn an_operator_asks_the_owning_stream_to_leave() {
    let dir = tempfile::tempdir().unwrap();
    let (_c, rt) = runtime(&dir);
    let mut s = rt.open_session(PEER).unwrap();
    let key = s.register(&reg("10.0.0.1:80")).await.unwrap();
    assert!(rt.ask_to_leave("web", "10.0.0.1:80").unwrap());
    assert_eq!(s.leave_requests.recv().await, Some(key));
    assert!(matches!(
        rt.ask_to_leave("web", "127.0.0.1:8081"),
        Err(RuntimeError::UnknownEndpoint { .. })
    ));
}

#[tokio::test]
async fn limits_per_stream_and_per_peer_hold() {
    let dir = tempfile::tempdir().unwrap();
    let (_c, rt) = runtime(&dir);
    let s = rt.open_session(PEER).unwrap();
    for i in 0..MAX_ENDPOINTS_PER_STREAM {
        s.register(&reg(&format!("10.0.0.1:{}", 1000 + i)))
            .await
            .unwrap();
    }
    assert!(matches!(
        s.register(&reg("10.0.0.1:9999")).await,
        Err(RuntimeError::Limit(_))
    ));
    let mut sessions = vec![s];
    let mut n = MAX_ENDPOINTS_PER_STREAM;
    while n < MAX_ENDPOINTS_PER_PEER {
        let s = rt.open_session(PEER).unwrap();
        for _ in 0..MAX_ENDPOINTS_PER_STREAM.min(MAX_ENDPOINTS_PER_PEER - n) {
            s.register(&reg(&format!("10.0.1.1:{}", 1000 + n)))
                .await
                .unwrap();
            n += 1;
        }
        sessions.push(s);
    }
    let s = rt.open_session(PEER).unwrap();
    assert!(matches!(
        s.register(&reg("10.0.2.1:80")).await,
        Err(RuntimeError::Limit(_))
    ));
    let other = rt
        .open_session(Some(IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9))))
        .unwrap();
    other.register(&reg("10.0.2.1:80")).await.unwrap();
    drop(sessions);
    assert_eq!(rt.leases().len(), 1);
}

#[tokio::test]
async fn bad_metadata_and_weight_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_c, rt) = runtime(&dir);
    let s = rt.open_session(PEER).unwrap();
    let mut r = reg("10.0.0.1:80");
    r.weight = crate::config::MAX_WEIGHT + 1;
    assert!(matches!(
        s.register(&r).await,
        Err(RuntimeError::BadRequest(_))
    ));
    let mut r = reg("10.0.0.1:80");
    r.metadata = (0..=super::MAX_METADATA_ENTRIES)
        .map(|i| (i.to_string(), String::new()))
        .collect();
    assert!(matches!(
        s.register(&r).await,
        Err(RuntimeError::BadRequest(_))
    ));
    assert!(rt.leases().is_empty());
}

#[tokio::test]
async fn the_cluster_admission_rules_apply_to_streams() {
    let dir = tempfile::tempdir().unwrap();
    let (_c, rt) = runtime(&dir);
    let s = rt.open_session(PEER).unwrap();
    for refused in ["169.254.169.254:80", "0.0.0.0:80", "[fe80::1]:80"] {
        let err = s.register(&reg(refused)).await.unwrap_err();
        assert!(
            matches!(&err, RuntimeError::BadRequest(m) if m.contains("allow_addresses")),
            "{refused}: {err}"
        );
    }
    assert!(rt.leases().is_empty());
}

#[tokio::test]
async fn streams_and_ttl_leases_share_the_cluster_max() {
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::new(Arc::new(SnapshotCache::new()), Default::default());
    let config = parse_str(
        "t.yaml",
        "version: 1\nclusters:\n  web: { endpoints: [127.0.0.1:8081], registrations: { max: 2 } }\n",
    )
    .unwrap();
    c.set_config(Arc::new(config));
    let rt = Runtime::local(
        c.clone(),
        StateFile::new(dir.path().join("s.json")),
        CancellationToken::new(),
    )
    .unwrap();
    rt.lease("web", "10.0.0.1:80", 1, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    let s = rt.open_session(PEER).unwrap();
    s.register(&reg("10.0.0.2:80")).await.unwrap();
    assert!(matches!(
        s.register(&reg("10.0.0.3:80")).await,
        Err(RuntimeError::Full { max: 2, .. })
    ));
    assert!(matches!(
        rt.lease("web", "10.0.0.3:80", 1, std::time::Duration::from_secs(60))
            .await,
        Err(RuntimeError::Full { max: 2, .. })
    ));
    s.register(&reg("10.0.0.2:80")).await.unwrap();
    drop(s);
    rt.lease("web", "10.0.0.3:80", 1, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    rt.registrations_published().await;
    assert_eq!(registered(&c), ["10.0.0.1:80", "10.0.0.3:80"]);
}
