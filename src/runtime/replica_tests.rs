//! Replica behaviour against the in-memory store: several runtimes sharing one store, as
//! replicas share etcd. One rule per test; a property test for membership and ownership.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use tokio_util::sync::CancellationToken;

use super::session::BoundRegistration;
use super::{Runtime, RuntimeError, replicated};
use crate::cache::SnapshotCache;
use crate::config::parse_str;
use crate::control::Controller;
use crate::health::ownership::{HealthFact, ReplicaHealth};
use crate::overlay::{EndpointKey, Verdict};
use crate::store::{MemoryStore, Store};

struct Replica {
    controller: Arc<Controller>,
    runtime: Arc<Runtime>,
    health: ReplicaHealth,
}

fn replica(store: &MemoryStore, me: &str) -> Replica {
    let controller = Controller::new(Arc::new(SnapshotCache::new()), Default::default());
    let yaml = "version: 1\nclusters:\n  web:\n    endpoints: [127.0.0.1:8081, 127.0.0.1:8082]\n    registrations: {}\n";
    controller.set_config(Arc::new(parse_str("t.yaml", yaml).unwrap()));
    let (link, health) = replicated::link(me.into());
    let runtime = Runtime::start(
        controller.clone(),
        Arc::new(store.clone()),
        link,
        CancellationToken::new(),
    );
    Replica {
        controller,
        runtime,
        health,
    }
}

fn key(a: &str) -> EndpointKey {
    EndpointKey::new("web", a.parse().unwrap())
}

/// Waits (in paused time) until `f` holds; fails after a minute.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..600 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never: {what}");
}

fn registered(r: &Replica) -> Vec<String> {
    r.controller
        .overlay()
        .registered
        .get("web")
        .map(|v| v.iter().map(|e| e.address.to_string()).collect())
        .unwrap_or_default()
}

fn live(r: &Replica) -> Vec<String> {
    r.health
        .owners
        .borrow()
        .as_ref()
        .map(|o| o.live.clone())
        .unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn probe_ownership_moves_when_a_member_joins_or_leaves() {
    let store = MemoryStore::new();
    let a = replica(&store, "a");
    let b = replica(&store, "b");
    until("both see both", || {
        live(&a) == ["a", "b"] && live(&b) == ["a", "b"]
    })
    .await;
    store.crash("b");
    until("a alone", || live(&a) == ["a"]).await;
    let _c = replica(&store, "c");
    until("c joined", || live(&a) == ["a", "c"]).await;
    a.runtime.leave().await;
    until("c sees a leave", || live(&_c) == ["c"]).await;
}

#[tokio::test(start_paused = true)]
async fn a_heartbeat_lease_expires_on_every_replica() {
    let store = MemoryStore::new();
    let a = replica(&store, "a");
    let b = replica(&store, "b");
    a.runtime
        .lease("web", "10.0.0.1:80", 1, Duration::from_secs(10))
        .await
        .unwrap();
    until("b has it", || registered(&b) == ["10.0.0.1:80"]).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    b.runtime
        .lease("web", "10.0.0.1:80", 1, Duration::from_secs(10))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(registered(&a), ["10.0.0.1:80"], "renewed through b");
    until("gone from a", || registered(&a).is_empty()).await;
    until("gone from b", || registered(&b).is_empty()).await;
}

#[tokio::test(start_paused = true)]
async fn a_broken_watch_lists_again_and_misses_nothing() {
    let store = MemoryStore::new();
    let a = replica(&store, "a");
    a.runtime.listed().await;
    store.break_watches();
    // Written while a is between its broken watch and its next listing.
    let mut next = crate::store::Persistent::default();
    next.drains.insert(key("127.0.0.1:8081"));
    store
        .save(&crate::store::Persistent::default(), &next)
        .await
        .unwrap();
    until("a drains it", || {
        a.controller
            .overlay()
            .draining
            .contains(&key("127.0.0.1:8081"))
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn concurrent_drains_through_two_replicas_both_hold() {
    let store = MemoryStore::new();
    let a = replica(&store, "a");
    let b = replica(&store, "b");
    let (x, y) = tokio::join!(
        a.runtime.drain("web", "127.0.0.1:8081", true),
        b.runtime.drain("web", "127.0.0.1:8082", true)
    );
    assert!(x.unwrap() && y.unwrap());
    for r in [&a, &b] {
        until("both drains everywhere", || {
            r.controller.overlay().draining.len() == 2
        })
        .await;
    }
    assert_eq!(store.snapshot().persistent.drains.len(), 2);
}

const UNHEALTHY: HealthFact = HealthFact {
    verdict: Some(Verdict::Unhealthy),
    weight: None,
};

/// Plays the checker of `r`: these endpoints have a health check (none measured).
fn check(r: &Replica, addresses: &[&str]) {
    let checked: HashMap<EndpointKey, bool> = addresses.iter().map(|a| (key(a), false)).collect();
    r.health.checked.send_replace(Arc::new(checked));
}

fn verdict(r: &Replica, address: &str) -> Option<Verdict> {
    r.controller.overlay().verdicts.get(&key(address)).copied()
}

#[tokio::test(start_paused = true)]
async fn a_health_fact_deleted_with_its_endpoint_is_not_listed_again() {
    let store = MemoryStore::new();
    let b = replica(&store, "b");
    check(&b, &["127.0.0.1:8081"]);
    b.runtime.listed().await;
    let k = key("127.0.0.1:8081");
    store
        .publish_health(&[(k.clone(), Some(UNHEALTHY))].into())
        .await
        .unwrap();
    until("served", || verdict(&b, "127.0.0.1:8081").is_some()).await;
    store
        .publish_health(&[(k.clone(), None)].into())
        .await
        .unwrap();
    until("gone", || verdict(&b, "127.0.0.1:8081").is_none()).await;
    store.break_watches();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(store.snapshot().health.is_empty());
    assert_eq!(verdict(&b, "127.0.0.1:8081"), None, "nothing resurrected");
}

#[tokio::test(start_paused = true)]
async fn a_finding_reaches_every_replica_through_the_store_its_own_included() {
    let store = MemoryStore::new();
    let a = replica(&store, "a");
    let b = replica(&store, "b");
    for r in [&a, &b] {
        check(r, &["127.0.0.1:8081"]);
        r.runtime.listed().await;
    }
    a.health
        .publish
        .send((key("127.0.0.1:8081"), Some(UNHEALTHY)))
        .unwrap();
    until("in the store", || {
        store.snapshot().health.get(&key("127.0.0.1:8081")) == Some(&UNHEALTHY)
    })
    .await;
    for r in [&a, &b] {
        until("served", || {
            verdict(r, "127.0.0.1:8081") == Some(Verdict::Unhealthy)
        })
        .await;
    }
}

#[tokio::test(start_paused = true)]
async fn facts_of_endpoints_without_a_health_check_are_not_served() {
    let store = MemoryStore::new();
    let a = replica(&store, "a");
    check(&a, &["127.0.0.1:8081"]);
    a.runtime.listed().await;
    // Written by another replica, or by anyone with access to etcd.
    store
        .publish_health(
            &[
                (key("127.0.0.1:8081"), Some(UNHEALTHY)),
                (key("127.0.0.1:8082"), Some(UNHEALTHY)),
            ]
            .into(),
        )
        .await
        .unwrap();
    until("the checked one served", || {
        verdict(&a, "127.0.0.1:8081").is_some()
    })
    .await;
    assert_eq!(verdict(&a, "127.0.0.1:8082"), None);
    // Once the endpoint has a check, its owner's fact is served.
    check(&a, &["127.0.0.1:8081", "127.0.0.1:8082"]);
    until("the newly checked one served", || {
        verdict(&a, "127.0.0.1:8082").is_some()
    })
    .await;
    check(&a, &[]);
    until("nothing served", || {
        a.controller.overlay().verdicts.is_empty()
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn during_an_outage_own_findings_are_served_and_written_when_the_store_is_back() {
    let store = MemoryStore::new();
    let a = replica(&store, "a");
    let b = replica(&store, "b");
    for r in [&a, &b] {
        check(r, &["127.0.0.1:8081"]);
        r.runtime.listed().await;
    }
    store.set_available(false);
    until("a sees the outage", || {
        !*a.runtime.store_available().borrow()
    })
    .await;
    a.health
        .publish
        .send((key("127.0.0.1:8081"), Some(UNHEALTHY)))
        .unwrap();
    until("a serves its own finding", || {
        verdict(&a, "127.0.0.1:8081").is_some()
    })
    .await;
    assert_eq!(verdict(&b, "127.0.0.1:8081"), None, "b cannot hear it yet");
    store.set_available(true);
    until("b hears it", || verdict(&b, "127.0.0.1:8081").is_some()).await;
    until("a follows again", || *a.runtime.store_available().borrow()).await;
    assert_eq!(
        verdict(&a, "127.0.0.1:8081"),
        Some(Verdict::Unhealthy),
        "listing again kept it"
    );
}

#[tokio::test(start_paused = true)]
async fn during_an_outage_the_last_state_is_served_and_changes_are_refused() {
    let store = MemoryStore::new();
    let a = replica(&store, "a");
    a.runtime
        .drain("web", "127.0.0.1:8081", true)
        .await
        .unwrap();
    store.set_available(false);
    until("a sees the outage", || {
        !*a.runtime.store_available().borrow()
    })
    .await;
    assert!(matches!(
        a.runtime.drain("web", "127.0.0.1:8082", true).await,
        Err(RuntimeError::StoreUnavailable(_))
    ));
    assert!(matches!(
        a.runtime
            .lease("web", "10.0.0.1:80", 1, Duration::from_secs(10))
            .await,
        Err(RuntimeError::StoreUnavailable(_))
    ));
    let overlay = a.controller.overlay();
    assert_eq!(overlay.draining.len(), 1, "the last state is served");
    assert!(
        live(&a).is_empty(),
        "out of touch: every replica probes everything"
    );
    store.set_available(true);
    until("a follows again", || *a.runtime.store_available().borrow()).await;
    a.runtime
        .drain("web", "127.0.0.1:8082", true)
        .await
        .unwrap();
    assert_eq!(a.controller.overlay().draining.len(), 2);
}

fn bound(address: &str) -> BoundRegistration {
    BoundRegistration {
        cluster: "web".into(),
        address: address.into(),
        weight: 2,
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_stream_registration_reaches_every_replica_and_ends_with_its_stream() {
    let store = MemoryStore::new();
    let a = replica(&store, "a");
    let b = replica(&store, "b");
    let s = a.runtime.open_session(None).unwrap();
    s.register(&bound("10.0.0.1:80")).await.unwrap();
    until("b has it", || registered(&b) == ["10.0.0.1:80"]).await;
    s.leave(&[]).await.unwrap();
    until("b drains it", || b.controller.overlay().leaving.len() == 1).await;
    assert!(matches!(
        b.runtime
            .lease("web", "10.0.0.1:80", 1, Duration::from_secs(10))
            .await,
        Err(RuntimeError::Taken { .. })
    ));
    drop(s);
    until("gone from b", || registered(&b).is_empty()).await;
    assert!(registered(&a).is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_streams_of_a_dead_replica_expire_everywhere() {
    let store = MemoryStore::new();
    let a = replica(&store, "a");
    let b = replica(&store, "b");
    let s = a.runtime.open_session(None).unwrap();
    s.register(&bound("10.0.0.1:80")).await.unwrap();
    until("b has it", || registered(&b) == ["10.0.0.1:80"]).await;
    // a's process dies: nothing revokes, its stream lease runs out.
    store.crash("a");
    store.expire_hold(1);
    until("gone from b", || registered(&b).is_empty()).await;
    std::mem::forget(s);
}

#[tokio::test(start_paused = true)]
async fn a_registration_written_by_another_tool_is_checked_as_the_api_checks_it() {
    let store = MemoryStore::new();
    let a = replica(&store, "a");
    a.runtime.listed().await;
    for (address, weight) in [("169.254.169.254:80", 1), ("10.0.0.2:80", 4_000_000_000)] {
        store
            .put_registration(
                &key(address),
                &crate::store::Registration::leased(weight, Duration::from_secs(10)),
                crate::store::LeaseKind::Ttl(Duration::from_secs(10)),
            )
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(registered(&a).is_empty(), "{:?}", registered(&a));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// Whatever replicas join and die, every live replica ends up with the same live set,
    /// and every endpoint has exactly one owner among them.
    #[test]
    fn membership_converges_and_every_endpoint_has_one_owner(
        ops in prop::collection::vec((0u8..2, 0usize..4), 1..12)
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let store = MemoryStore::new();
            let names = ["a", "b", "c", "d"];
            let mut replicas: Vec<Option<Replica>> = (0..4).map(|_| None).collect();
            for (op, i) in ops {
                match op {
                    0 if replicas[i].is_none() => replicas[i] = Some(replica(&store, names[i])),
                    1 if replicas[i].is_some() => {
                        store.crash(names[i]);
                        replicas[i] = None;
                    }
                    _ => {}
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let expected: Vec<String> = replicas
                .iter()
                .zip(names)
                .filter(|(r, _)| r.is_some())
                .map(|(_, n)| n.to_string())
                .collect();
            for r in replicas.iter().flatten() {
                until("converged", || live(r) == expected).await;
            }
            for port in 1..50u16 {
                let k = EndpointKey::new("web", std::net::SocketAddr::from(([10, 0, 0, 1], port)));
                let owners = replicas
                    .iter()
                    .flatten()
                    .filter(|r| r.health.owners.borrow().as_ref().is_some_and(|o| o.owns(&k, false)))
                    .count();
                assert_eq!(owners, usize::from(!expected.is_empty()), "{k:?}");
            }
        });
    }
}

fn sidecar(address: &str, node: &str) -> BoundRegistration {
    BoundRegistration {
        instance: Some(node.into()),
        ..bound(address)
    }
}

#[tokio::test(start_paused = true)]
async fn a_sidecar_whose_stream_ends_drains_on_every_replica_then_leaves() {
    let store = MemoryStore::new();
    let a = replica(&store, "a");
    let b = replica(&store, "b");
    let mut s = a.runtime.open_session(None).unwrap();
    s.drain_on_end(Duration::from_secs(10));
    s.register(&sidecar("10.0.0.1:80", "payments-1"))
        .await
        .unwrap();
    until("b has it", || registered(&b) == ["10.0.0.1:80"]).await;
    drop(s);
    until("b drains it", || b.controller.overlay().leaving.len() == 1).await;
    assert_eq!(registered(&b), ["10.0.0.1:80"]);
    until("gone from b after the grace", || registered(&b).is_empty()).await;
    assert!(registered(&a).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_sidecar_reconnecting_through_another_replica_takes_its_draining_instance_back() {
    let store = MemoryStore::new();
    let a = replica(&store, "a");
    let b = replica(&store, "b");
    let mut s = a.runtime.open_session(None).unwrap();
    s.drain_on_end(Duration::from_secs(10));
    s.register(&sidecar("10.0.0.1:80", "payments-1"))
        .await
        .unwrap();
    until("b has it", || registered(&b) == ["10.0.0.1:80"]).await;
    drop(s);
    until("b drains it", || b.controller.overlay().leaving.len() == 1).await;
    let other = b.runtime.open_session(None).unwrap();
    assert!(matches!(
        other.register(&sidecar("10.0.0.1:80", "payments-2")).await,
        Err(RuntimeError::Taken { .. })
    ));
    let mut back = b.runtime.open_session(None).unwrap();
    back.drain_on_end(Duration::from_secs(10));
    back.register(&sidecar("10.0.0.1:80", "payments-1"))
        .await
        .unwrap();
    until("a sees it active again", || {
        a.controller.overlay().leaving.is_empty() && registered(&a) == ["10.0.0.1:80"]
    })
    .await;
    // a's grace runs out: its lease ends, and with it nothing that was taken over.
    tokio::time::sleep(Duration::from_secs(20)).await;
    for r in [&a, &b] {
        assert_eq!(registered(r), ["10.0.0.1:80"]);
        assert!(r.controller.overlay().leaving.is_empty());
    }
    drop(back);
}
