//! Several flotilla replicas sharing their runtime state through a real etcd: a change made
//! through one replica's admin API reaches the Envoys of every replica; an etcd that is down
//! stops changes, never serving.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::operations::{call, endpoint};
use crate::restart::update_counts;
use crate::support::backend::Backend;
use crate::support::client::Load;
use crate::support::configs::web;
use crate::support::envoy::{Envoy, Xds};
use crate::support::etcd::Etcd;
use crate::support::flotilla::Flotilla;
use crate::support::setup::both_protocols;
use crate::support::{free_addr, wait};

/// A replica serving `yaml` with its state in `etcd`.
pub(crate) async fn replica(yaml: &str, etcd: &Etcd) -> Flotilla {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("flotilla.yaml");
    std::fs::write(&config, yaml).expect("write config");
    let args = etcd.store_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let f = Flotilla::start_with(dir, config, &args).await;
    f.wait_ready().await;
    f
}

pub(crate) struct Replicas {
    pub(crate) etcd: Etcd,
    pub(crate) backends: BTreeMap<&'static str, Backend>,
    pub(crate) listen: std::net::SocketAddr,
    pub(crate) a: Flotilla,
    pub(crate) b: Flotilla,
    /// An Envoy of replica B.
    pub(crate) envoy: Envoy,
}

impl Replicas {
    async fn start() -> Replicas {
        Replicas::start_with(Xds::Delta, false).await
    }

    /// With `both`, the Envoy's bootstrap lists A and B (it connects to either).
    async fn start_with(xds: Xds, both: bool) -> Replicas {
        Replicas::start_on(Etcd::start().await, xds, both).await
    }

    /// Two replicas sharing `etcd` (plain or TLS), an Envoy on B.
    pub(crate) async fn start_on(etcd: Etcd, xds: Xds, both: bool) -> Replicas {
        let mut backends = BTreeMap::new();
        for n in ["x", "y"] {
            backends.insert(n, Backend::start(n).await);
        }
        let listen = free_addr();
        let yaml = web(
            listen,
            &backends
                .values()
                .map(|b| b.address().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        );
        let a = replica(&yaml, &etcd).await;
        let b = replica(&yaml, &etcd).await;
        let envoy = if both {
            Envoy::start_on(&[&a, &b], "edge-1", "edge", xds).await
        } else {
            Envoy::start(&b, "edge-b", "edge", xds).await
        };
        envoy.wait_listener(listen).await;
        Replicas {
            etcd,
            backends,
            listen,
            a,
            b,
            envoy,
        }
    }

    pub(crate) fn addr(&self, name: &str) -> String {
        self.backends[name].address().to_string()
    }

    /// Drains `addr` through A's admin API; B's Envoy must see it within a second.
    pub(crate) async fn drain_through_a_reaches_b_within_a_second(&self, addr: &str) {
        let path = format!("/api/v1/clusters/web/endpoints/{addr}/drain");
        let asked = Instant::now();
        let (status, body) = call(&self.a, "POST", &path, None, None).await;
        assert_eq!(status, 200, "{body}");
        self.envoy_sees_draining(addr, true).await;
        let took = asked.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "drain took {took:?} to reach B's Envoy"
        );
    }

    pub(crate) async fn envoy_sees_draining(&self, addr: &str, draining: bool) {
        wait::until(
            &format!("the Envoy of replica B to see {addr} draining={draining}"),
            Duration::from_secs(5),
            || async {
                let flags = self.envoy.health_flags("web", addr).await?;
                (flags.contains("draining") == draining).then_some(())
            },
        )
        .await;
    }
}

#[tokio::test]
async fn a_drain_through_one_replica_reaches_an_envoy_of_another_within_a_second() {
    let r = Replicas::start().await;
    let x = r.addr("x");
    let path = format!("/api/v1/clusters/web/endpoints/{x}/drain");

    r.drain_through_a_reaches_b_within_a_second(&x).await;
    let state = r.b.json("/api/v1/state").await;
    assert_eq!(endpoint(&state, "web", &x).expect("x")["draining"], true);

    // Undone through B, seen by A's state.
    let (status, body) = call(&r.b, "DELETE", &path, None, None).await;
    assert_eq!(status, 200, "{body}");
    r.envoy_sees_draining(&x, false).await;
    wait::until("A to see x undrained", Duration::from_secs(5), || async {
        let state = r.a.json("/api/v1/state").await;
        (endpoint(&state, "web", &x)?["draining"] == false).then_some(())
    })
    .await;

    // A weight override through A reaches B as well.
    let weight = format!("/api/v1/clusters/web/endpoints/{x}/weight");
    let (status, body) = call(
        &r.a,
        "PUT",
        &weight,
        Some(serde_json::json!({ "weight": 7 })),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    wait::until("B to serve weight 7", Duration::from_secs(5), || async {
        let state = r.b.json("/api/v1/state").await;
        (endpoint(&state, "web", &x)?["weight"] == 7).then_some(())
    })
    .await;
}

#[tokio::test]
async fn while_etcd_is_down_changes_get_503_and_every_replica_keeps_serving_under_load() {
    let mut r = Replicas::start().await;
    let (x, y) = (r.addr("x"), r.addr("y"));
    let (status, body) = call(
        &r.a,
        "POST",
        &format!("/api/v1/clusters/web/endpoints/{x}/drain"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    r.envoy_sees_draining(&x, true).await;
    let load = Load::start(
        &[format!("http://{}/", r.listen)],
        2,
        Duration::from_millis(2),
    );
    load.wait_for_more(100).await;

    r.etcd.kill().await;
    let drain_y = format!("/api/v1/clusters/web/endpoints/{y}/drain");
    let (status, body) = wait::until("a 503 from A", Duration::from_secs(15), || async {
        let (status, body) = call(&r.a, "POST", &drain_y, None, None).await;
        (status != 200).then_some((status, body))
    })
    .await;
    assert_eq!(status, 503, "{body}");
    let message = body["error"].as_str().unwrap_or_default().to_string();
    assert!(
        (message.contains("etcd is unavailable") || message.contains("the store is not connected"))
            && message.contains("nothing was changed"),
        "{body}"
    );
    for f in [&r.a, &r.b] {
        assert_eq!(f.get("/readyz").await.status(), 200, "ready for xDS");
        wait::until("store_available 0", Duration::from_secs(10), || async {
            let metrics = f.text("/metrics").await;
            metrics
                .contains("\nflotilla_store_available 0\n")
                .then_some(())
        })
        .await;
    }
    // The last state is still served: x drained, y not.
    r.envoy_sees_draining(&x, true).await;
    r.envoy_sees_draining(&y, false).await;

    r.etcd.restart().await;
    // Served throughout the outage and the restart (y is still undrained: traffic flows).
    load.wait_for_more(100).await;
    let report = load.stop().await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let (status, body) = wait::until(
        "A to take changes again",
        Duration::from_secs(15),
        || async {
            let (status, body) = call(&r.a, "POST", &drain_y, None, None).await;
            (status == 200).then_some((status, body))
        },
    )
    .await;
    assert_eq!(status, 200, "{body}");
    r.envoy_sees_draining(&y, true).await;
    r.envoy_sees_draining(&x, true).await;
    for f in [&r.a, &r.b] {
        assert!(
            f.text("/metrics")
                .await
                .contains("\nflotilla_store_available 1\n")
        );
    }
}

/// Heartbeats into `web` through one replica's admin API, every 500 ms (TTL 2 s). A
/// heartbeat the replica answers with anything but 200 is kept, and [`Heartbeat::stop`]
/// fails the test with it (an assertion inside the task would die with the task unseen).
struct Heartbeat {
    task: tokio::task::JoinHandle<()>,
    refused: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Heartbeat {
    /// Stops heartbeating; fails if any heartbeat was refused.
    fn stop(self) {
        self.task.abort();
        let refused = self.refused.lock().unwrap();
        assert!(refused.is_empty(), "heartbeats refused: {refused:?}");
    }
}

fn heartbeat(admin: std::net::SocketAddr, address: String) -> Heartbeat {
    let refused = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = refused.clone();
    let task = tokio::spawn(async move {
        let http = reqwest::Client::new();
        loop {
            let sent = http
                .post(format!("http://{admin}/api/v1/clusters/web/registrations"))
                .json(&serde_json::json!({ "address": address, "weight": 1, "ttl": "2s" }))
                .send()
                .await;
            // A replica killed mid-test does not answer: that is not a refusal.
            if let Ok(r) = sent
                && r.status() != 200
            {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                seen.lock().unwrap().push(format!("{status}: {body}"));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    Heartbeat { task, refused }
}

fn registered(state: &serde_json::Value, address: &str) -> bool {
    state["registrations"]
        .as_array()
        .is_some_and(|r| r.iter().any(|l| l["address"] == address))
}

#[tokio::test]
async fn a_registration_moves_between_replicas_without_leaving_and_expires_everywhere() {
    let mut r = Replicas::start().await;
    let z = Backend::start("z").await;
    let address = z.address().to_string();

    let through_a = heartbeat(r.a.admin, address.clone());
    wait::until("B's Envoy to get z", Duration::from_secs(5), || async {
        r.envoy.health_flags("web", &address).await.map(|_| ())
    })
    .await;
    assert!(registered(&r.b.json("/api/v1/state").await, &address));

    // A dies; the instance heartbeats through B from now on.
    r.a.kill().await;
    through_a.stop();
    let through_b = heartbeat(r.b.admin, address.clone());
    wait::holds_for(
        "z stays in B's Envoy across the move (longer than its TTL)",
        Duration::from_secs(4),
        || async { r.envoy.health_flags("web", &address).await.is_some() },
    )
    .await;
    // A replica that starts now loads it from etcd.
    r.a.restart().await;
    r.a.wait_ready().await;
    wait::until("restarted A to hold z", Duration::from_secs(5), || async {
        registered(&r.a.json("/api/v1/state").await, &address).then_some(())
    })
    .await;

    // Heartbeats stop: etcd's lease runs out and every replica drops z.
    through_b.stop();
    let stopped = Instant::now();
    wait::until("z to leave B's Envoy", Duration::from_secs(10), || async {
        r.envoy
            .health_flags("web", &address)
            .await
            .is_none()
            .then_some(())
    })
    .await;
    for f in [&r.a, &r.b] {
        wait::until(
            "z to leave every replica",
            Duration::from_secs(5),
            || async { (!registered(&f.json("/api/v1/state").await, &address)).then_some(()) },
        )
        .await;
    }
    // TTL 2 s, plus etcd's expiry check (500 ms) and the last heartbeat's offset.
    assert!(
        stopped.elapsed() < Duration::from_secs(4),
        "left after {:?}",
        stopped.elapsed()
    );
}

/// The Envoy's node on `f` once it is there and in sync.
async fn in_sync_on(f: &Flotilla) -> serde_json::Value {
    wait::until(
        "the Envoy in sync on the replica",
        Duration::from_secs(30),
        || async {
            let nodes = f.json("/api/v1/nodes").await;
            (nodes[0]["in_sync"] == true).then(|| nodes[0].clone())
        },
    )
    .await
}

async fn serves_the_envoy(f: &Flotilla) -> bool {
    f.json("/api/v1/nodes").await[0]["in_sync"] == true
}

/// kill -9 of the replica an Envoy is connected to, under load: the Envoy moves to the other
/// replica, which sends it nothing (identical versions), and no request fails.
async fn an_envoy_moves_to_another_replica_and_is_sent_nothing_it_holds(xds: Xds) {
    let mut r = Replicas::start_with(xds, true).await;
    let on_a = wait::until(
        "the Envoy on a replica",
        Duration::from_secs(10),
        || async {
            if serves_the_envoy(&r.a).await {
                Some(true)
            } else if serves_the_envoy(&r.b).await {
                Some(false)
            } else {
                None
            }
        },
    )
    .await;
    let (dying, survivor) = if on_a {
        (&mut r.a, &r.b)
    } else {
        (&mut r.b, &r.a)
    };
    let before = update_counts(&r.envoy).await;
    let load = Load::start(
        &[format!("http://{}/", r.listen)],
        2,
        Duration::from_millis(2),
    );
    load.wait_for_more(100).await;

    dying.kill().await;
    let node = in_sync_on(survivor).await;
    load.wait_for_more(200).await;
    let report = load.stop().await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);

    // Versions match across replicas: nothing was sent, nothing applied again.
    for t in ["cds", "eds", "lds", "rds"] {
        assert_eq!(
            node["types"][t]["responses"].as_u64().unwrap_or(0),
            0,
            "{t} response after the move: {node}"
        );
    }
    assert_eq!(update_counts(&r.envoy).await, before);
}

both_protocols!(an_envoy_moves_to_another_replica_and_is_sent_nothing_it_holds);
