//! Health checks shared by replicas: each endpoint is probed by one live replica, every
//! replica serves the same verdicts (identical EDS), and a dead replica's endpoints are taken
//! over by the survivors within one replica lease (3 s).

use std::time::{Duration, Instant};

use crate::replicas::replica;
use crate::support::backend::Backend;
use crate::support::envoy::{Envoy, Xds};
use crate::support::etcd::Etcd;
use crate::support::flotilla::Flotilla;
use crate::support::{free_addr, wait};

const ENDPOINTS: usize = 6;
/// Probes per second of every endpoint once (interval 500 ms).
const PROBES_PER_SECOND: f64 = ENDPOINTS as f64 * 2.0;

fn checked(listen: std::net::SocketAddr, endpoints: &[String]) -> String {
    format!(
        "version: 1
clusters:
  web:
    endpoints: [{}]
    health_check:
      http: {{ path: /healthz }}
      interval: 500ms
      timeout: 400ms
      jitter: 0ms
      healthy_threshold: 1
      unhealthy_threshold: 1
listeners:
  public:
    address: {listen}
    routes: [ {{ to: web }} ]
",
        endpoints.join(", ")
    )
}

/// Probes per second the backends received over `window`.
async fn probe_rate(backends: &[Backend], window: Duration) -> f64 {
    let count = || backends.iter().map(Backend::probes).sum::<u64>();
    let before = count();
    tokio::time::sleep(window).await;
    (count() - before) as f64 / window.as_secs_f64()
}

async fn eds_version(f: &Flotilla) -> Option<String> {
    let nodes = f.json("/api/v1/nodes").await;
    nodes[0]["types"]["eds"]["acked_version"]
        .as_str()
        .map(str::to_string)
}

async fn eds_responses(f: &Flotilla) -> Option<u64> {
    f.json("/api/v1/nodes").await[0]["types"]["eds"]["responses"].as_u64()
}

async fn flags(envoy: &Envoy, addr: &str) -> String {
    envoy.health_flags("web", addr).await.unwrap_or_default()
}

#[tokio::test]
async fn each_endpoint_is_probed_by_one_replica_and_survivors_take_over() {
    let etcd = Etcd::start().await;
    let mut backends = Vec::new();
    for i in 0..ENDPOINTS {
        backends.push(Backend::start(&format!("h{i}")).await);
    }
    let addrs: Vec<String> = backends.iter().map(Backend::address).collect();
    let listen = free_addr();
    let yaml = checked(listen, &addrs);
    let mut a = replica(&yaml, &etcd).await;
    let b = replica(&yaml, &etcd).await;
    let envoy_a = Envoy::start(&a, "edge-a", "edge", Xds::Delta).await;
    let envoy_b = Envoy::start(&b, "edge-b", "edge", Xds::Delta).await;

    // Once both replicas know each other, the probes are split, not doubled.
    let split = wait::until(
        "probes split between replicas",
        Duration::from_secs(20),
        || async {
            let rate = probe_rate(&backends, Duration::from_secs(2)).await;
            (rate < PROBES_PER_SECOND * 1.3).then_some(rate)
        },
    )
    .await;
    let rate = probe_rate(&backends, Duration::from_secs(3)).await;
    assert!(
        (PROBES_PER_SECOND * 0.7..=PROBES_PER_SECOND * 1.3).contains(&rate),
        "{rate:.1} probes/s across 2 replicas (then {split:.1}), expected ≈ {PROBES_PER_SECOND}"
    );

    // A verdict found by whichever replica owns h0 reaches the Envoys of both, and both
    // replicas serve the same EDS version.
    backends[0].set_health(503);
    for envoy in [&envoy_a, &envoy_b] {
        wait::until(
            "h0 unhealthy in both Envoys",
            Duration::from_secs(5),
            || async {
                flags(envoy, &addrs[0])
                    .await
                    .contains("failed_eds_health")
                    .then_some(())
            },
        )
        .await;
    }
    wait::until(
        "the same EDS version on both replicas",
        Duration::from_secs(5),
        || async {
            let (va, vb) = (eds_version(&a).await?, eds_version(&b).await?);
            (va == vb).then_some(())
        },
    )
    .await;

    // etcd goes away: each replica probes everything itself, serving the same verdicts; when
    // etcd is back the probes are split again, and no Envoy is sent anything unchanged.
    let before = (eds_responses(&a).await, eds_responses(&b).await);
    let mut etcd = etcd;
    etcd.kill().await;
    wait::until(
        "every replica probing everything",
        Duration::from_secs(10),
        || async {
            let rate = probe_rate(&backends, Duration::from_secs(1)).await;
            (rate > PROBES_PER_SECOND * 1.6).then_some(())
        },
    )
    .await;
    etcd.restart().await;
    wait::until("probes split again", Duration::from_secs(20), || async {
        let rate = probe_rate(&backends, Duration::from_secs(2)).await;
        (rate < PROBES_PER_SECOND * 1.3).then_some(())
    })
    .await;
    assert_eq!(
        (eds_responses(&a).await, eds_responses(&b).await),
        before,
        "EDS pushed to an Envoy across the etcd outage, with nothing changed"
    );
    for envoy in [&envoy_a, &envoy_b] {
        assert!(flags(envoy, &addrs[0]).await.contains("failed_eds_health"));
    }

    // A dies: B probes every endpoint within one replica lease.
    a.kill().await;
    drop(envoy_a);
    let killed = Instant::now();
    wait::until("B to probe everything", Duration::from_secs(10), || async {
        let rate = probe_rate(&backends, Duration::from_secs(1)).await;
        (rate >= PROBES_PER_SECOND * 0.75).then_some(())
    })
    .await;
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "survivor took {took:?} to probe everything (lease 3 s + 1 s measuring window)"
    );
    // Every endpoint is judged by B now: a change to any of them reaches B's Envoy.
    for (i, backend) in backends.iter().enumerate().skip(1) {
        backend.set_health(503);
        wait::until(
            &format!("h{i} unhealthy in B's Envoy"),
            Duration::from_secs(5),
            || async {
                flags(&envoy_b, &addrs[i])
                    .await
                    .contains("failed_eds_health")
                    .then_some(())
            },
        )
        .await;
        backend.set_health(200);
    }
    assert!(
        flags(&envoy_b, &addrs[0])
            .await
            .contains("failed_eds_health")
    );
}

/// Probes this replica ran, from its metrics.
async fn probes_run(f: &Flotilla) -> u64 {
    f.text("/metrics")
        .await
        .lines()
        .filter(|l| l.starts_with("flotilla_health_probes_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn weight_of(state: &serde_json::Value, addr: &str) -> Option<u64> {
    state["clusters"][0]["endpoints"]
        .as_array()?
        .iter()
        .find(|e| e["address"] == addr)?["weight"]
        .as_u64()
}

/// A least_response_time cluster is probed whole by one replica (its weights compare all its
/// endpoints), and every replica serves the weights that replica measured.
#[tokio::test]
async fn a_least_response_time_cluster_is_measured_by_one_replica_and_served_by_all() {
    let etcd = Etcd::start().await;
    let fast = Backend::start("fast").await;
    let slow = Backend::start("slow").await;
    slow.set_health_delay(Duration::from_millis(50));
    let yaml = format!(
        "version: 1
clusters:
  web:
    policy: least_response_time
    endpoints: [{}, {}]
    health_check: {{ http: {{ path: /healthz }}, interval: 200ms, timeout: 150ms, jitter: 20ms }}
listeners:
  public:
    address: {}
    routes: [ {{ to: web }} ]
",
        fast.address(),
        slow.address(),
        free_addr()
    );
    let a = replica(&yaml, &etcd).await;
    let b = replica(&yaml, &etcd).await;
    let (fast, slow) = (fast.address(), slow.address());
    wait::until(
        "both replicas to serve the measured weights",
        Duration::from_secs(15),
        || async {
            let (sa, sb) = (a.json("/api/v1/state").await, b.json("/api/v1/state").await);
            let weights =
                |s: &serde_json::Value| Some((weight_of(s, &fast)?, weight_of(s, &slow)?));
            let (wa, wb) = (weights(&sa)?, weights(&sb)?);
            (wa == wb && wa.1 * 4 < wa.0).then_some(())
        },
    )
    .await;
    // Exactly one replica probes the cluster: the other's count holds still while the
    // prober's moves.
    let before = (probes_run(&a).await, probes_run(&b).await);
    wait::until("a probe to run", Duration::from_secs(5), || async {
        let now = (probes_run(&a).await, probes_run(&b).await);
        (now != before).then_some(())
    })
    .await;
    let moved = probes_run(&a).await != before.0;
    let idle = if moved { &b } else { &a };
    let still = probes_run(idle).await;
    wait::holds_for(
        "the other replica to run no probe of the cluster",
        Duration::from_secs(1),
        || async { probes_run(idle).await == still },
    )
    .await;
}

/// A replica stopped cleanly (SIGTERM) ends its announcement: the survivor takes over its
/// probes at once, not when the lease would have run out.
#[tokio::test]
async fn a_replica_that_stops_cleanly_hands_over_its_probes_at_once() {
    let etcd = Etcd::start().await;
    let mut backends = Vec::new();
    for i in 0..ENDPOINTS {
        backends.push(Backend::start(&format!("h{i}")).await);
    }
    let addrs: Vec<String> = backends.iter().map(Backend::address).collect();
    let yaml = checked(free_addr(), &addrs);
    let mut a = replica(&yaml, &etcd).await;
    let _b = replica(&yaml, &etcd).await;
    wait::until(
        "probes split between replicas",
        Duration::from_secs(20),
        || async {
            let rate = probe_rate(&backends, Duration::from_secs(2)).await;
            (rate < PROBES_PER_SECOND * 1.3).then_some(())
        },
    )
    .await;
    assert!(a.terminate().await.success());
    let stopped = Instant::now();
    wait::until("B to probe everything", Duration::from_secs(10), || async {
        let rate = probe_rate(&backends, Duration::from_secs(1)).await;
        (rate >= PROBES_PER_SECOND * 0.75).then_some(())
    })
    .await;
    let took = stopped.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "took {took:?}: as long as waiting for the 3 s lease (+1 s window)"
    );
    assert!(a.log().contains("left the replicas"), "{}", a.log());
}

/// The health facts etcd holds for `web` (through etcd's JSON gateway).
async fn facts_in_etcd(etcd: &Etcd) -> Vec<String> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let encode = |k: &[u8]| b64.encode(k);
    let decode = |k: &str| String::from_utf8(b64.decode(k).expect("base64")).expect("utf-8");
    let body = serde_json::json!({
        "key": encode(b"/flotilla/health/web/"),
        "range_end": encode(b"/flotilla/health/web0"),
    });
    let r: serde_json::Value = reqwest::Client::new()
        .post(format!("http://{}/v3/kv/range", etcd.client))
        .json(&body)
        .send()
        .await
        .expect("etcd range")
        .json()
        .await
        .expect("etcd JSON");
    r["kvs"]
        .as_array()
        .map(|kvs| {
            kvs.iter()
                .map(|kv| decode(kv["key"].as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

/// An endpoint that loses its health check (removed from the config) loses its fact in etcd,
/// so that if it comes back it starts from unknown, not from a verdict of long ago.
#[tokio::test]
async fn a_removed_endpoint_leaves_no_health_fact_behind() {
    let etcd = Etcd::start().await;
    let mut backends = Vec::new();
    for i in 0..3 {
        backends.push(Backend::start(&format!("h{i}")).await);
    }
    let addrs: Vec<String> = backends.iter().map(Backend::address).collect();
    let listen = free_addr();
    let a = replica(&checked(listen, &addrs), &etcd).await;
    let b = replica(&checked(listen, &addrs), &etcd).await;
    wait::until(
        "a fact for every endpoint",
        Duration::from_secs(10),
        || async { (facts_in_etcd(&etcd).await.len() == 3).then_some(()) },
    )
    .await;
    for f in [&a, &b] {
        std::fs::write(&f.config, checked(listen, &addrs[..2])).expect("write config");
    }
    let gone = format!("/flotilla/health/web/{}", addrs[2]);
    wait::until("h2's fact deleted", Duration::from_secs(10), || async {
        let facts = facts_in_etcd(&etcd).await;
        (facts.len() == 2 && !facts.contains(&gone)).then_some(())
    })
    .await;
}
