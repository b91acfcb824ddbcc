//! flotilla's active health checks, seen through real Envoy: failover no client notices,
//! recovery, and each kind of probe.

use std::time::{Duration, Instant};

use crate::support::backend::Backend;
use crate::support::client::{self, Load};
use crate::support::envoy::{Envoy, Xds};
use crate::support::flotilla::Flotilla;
use crate::support::servers::{GrpcHealthServer, PongServer};
use crate::support::setup::{Setup, both_protocols};
use crate::support::{free_addr, wait};

const INTERVAL: Duration = Duration::from_secs(1);
const UNHEALTHY_THRESHOLD: u32 = 2;

fn checked(listen: std::net::SocketAddr, endpoints: &[String], policy: &str) -> String {
    format!(
        "version: 1
clusters:
  web:
    policy: {policy}
    endpoints: [{}]
    health_check:
      http: {{ path: /healthz }}
      interval: 1s
      timeout: 500ms
      jitter: 50ms
      healthy_threshold: 2
      unhealthy_threshold: {UNHEALTHY_THRESHOLD}
listeners:
  public:
    address: {listen}
    routes: [ {{ to: web }} ]
",
        endpoints.join(", ")
    )
}

/// Envoy's view of a host: `healthy`, or flags such as `/failed_eds_health`.
async fn flags(envoy: &Envoy, cluster: &str, addr: &str) -> String {
    envoy.health_flags(cluster, addr).await.unwrap_or_default()
}

async fn wait_flags(
    envoy: &Envoy,
    cluster: &str,
    addr: &str,
    want: &str,
    within: Duration,
) -> Duration {
    let start = Instant::now();
    wait::until(&format!("{addr} to be {want} in Envoy"), within, || async {
        flags(envoy, cluster, addr)
            .await
            .contains(want)
            .then_some(())
    })
    .await;
    start.elapsed()
}

async fn verdict(f: &Flotilla, cluster: &str, addr: &str) -> String {
    let state = f.json("/api/v1/state").await;
    state["clusters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["name"] == cluster)
        .flat_map(|c| c["endpoints"].as_array().cloned().unwrap_or_default())
        .find(|e| e["address"] == addr)
        .map(|e| e["health"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

async fn a_dying_backend_costs_clients_nothing(xds: Xds) {
    let mut s = Setup::new(&["a", "b", "c"], xds, |b, l| {
        checked(l, &["a", "b", "c"].map(|n| b[n].address()), "round_robin")
    })
    .await;
    for n in ["a", "b", "c"] {
        wait_flags(
            &s.envoy,
            "web",
            &s.addr(n),
            "healthy",
            Duration::from_secs(10),
        )
        .await;
    }
    // A few hundred requests per second.
    let load = Load::start(&[s.url("/")], 4, Duration::from_millis(1));
    load.wait_for_more(300).await;

    let c = s.addr("c");
    s.backends.get_mut("c").expect("c").kill();
    let took = wait_flags(
        &s.envoy,
        "web",
        &c,
        "failed_eds_health",
        Duration::from_secs(10),
    )
    .await;
    let bound = INTERVAL * UNHEALTHY_THRESHOLD + Duration::from_secs(1);
    assert!(
        took <= bound,
        "UNHEALTHY in Envoy after {took:?}, more than {bound:?}"
    );
    assert_eq!(verdict(&s.flotilla, "web", &c).await, "unhealthy");
    load.wait_for_more(300).await;

    // Back again: healthy after healthy_threshold probes, and it takes traffic.
    s.backends.get_mut("c").expect("c").revive().await;
    wait_flags(&s.envoy, "web", &c, "healthy", Duration::from_secs(10)).await;
    assert_eq!(verdict(&s.flotilla, "web", &c).await, "healthy");
    let hits = s.backends["c"].hits();
    wait::until(
        "c to take traffic again",
        Duration::from_secs(10),
        || async { (s.backends["c"].hits() > hits + 20).then_some(()) },
    )
    .await;

    let report = load.stop().await;
    assert!(
        report.failures.is_empty(),
        "{} of {} requests failed: {:?}",
        report.failures.len(),
        report.ok,
        report.failures
    );
    assert!(report.ok > 1000, "only {} requests", report.ok);
}

async fn a_backend_failing_its_health_check_is_taken_out(xds: Xds) {
    let s = Setup::new(&["a", "b"], xds, |b, l| {
        checked(l, &["a", "b"].map(|n| b[n].address()), "round_robin")
    })
    .await;
    // b answers requests but reports itself unhealthy.
    s.backends["b"].set_health(503);
    wait_flags(
        &s.envoy,
        "web",
        &s.addr("b"),
        "failed_eds_health",
        Duration::from_secs(10),
    )
    .await;
    let hits = s.backends["b"].hits();
    let counts = client::spread(&s.url("/"), 30).await;
    assert_eq!(counts.get("a"), Some(&30), "{counts:?}");
    assert_eq!(s.backends["b"].hits(), hits, "b got no traffic");
    let status = s.flotilla.json("/api/v1/state").await;
    let b = status["clusters"][0]["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .find(|e| e["address"] == s.addr("b"))
        .cloned()
        .expect("b");
    assert_eq!(
        b["probe"]["last_error"], "status 503 is not expected",
        "{b}"
    );
}

/// Each cluster below keeps one endpoint that stays healthy: with every endpoint down,
/// flotilla fails open on purpose (see `every_endpoint_failing_its_check_fails_open`).
#[tokio::test]
async fn grpc_checks_follow_the_serving_status() {
    let server = GrpcHealthServer::start().await;
    let steady = GrpcHealthServer::start().await;
    let other = Backend::start("other").await;
    let listen = free_addr();
    let addr = server.addr.to_string();
    let yaml = format!(
        "version: 1
clusters:
  grpc:
    upstream_protocol: http2
    endpoints: [{addr}, {}, {}]
    health_check: {{ grpc: {{ service: \"\" }}, interval: 200ms, timeout: 150ms, healthy_threshold: 1, unhealthy_threshold: 1 }}
listeners:
  public:
    address: {listen}
    routes: [ {{ to: grpc }} ]
",
        steady.addr,
        other.address()
    );
    let flotilla = Flotilla::start(&yaml).await;
    let envoy = Envoy::start(&flotilla, "edge-1", "edge", Xds::Delta).await;
    envoy.wait_listener(listen).await;
    wait_flags(&envoy, "grpc", &addr, "healthy", Duration::from_secs(10)).await;
    // `other` speaks no gRPC: its checks fail.
    wait_flags(
        &envoy,
        "grpc",
        &other.address(),
        "failed_eds_health",
        Duration::from_secs(10),
    )
    .await;
    server.set_serving(false).await;
    wait_flags(
        &envoy,
        "grpc",
        &addr,
        "failed_eds_health",
        Duration::from_secs(10),
    )
    .await;
    server.set_serving(true).await;
    wait_flags(&envoy, "grpc", &addr, "healthy", Duration::from_secs(10)).await;
}

#[tokio::test]
async fn tcp_checks_take_out_a_listener_that_closes() {
    let pong = PongServer::start().await;
    let steady_pong = PongServer::start().await;
    let plain = Backend::start("plain").await;
    let steady = Backend::start("steady").await;
    let listen = free_addr();
    let yaml = format!(
        "version: 1
clusters:
  pong:
    endpoints: [{}, {}]
    health_check: {{ tcp: {{ send: \"PING\\r\\n\", expect: \"+PONG\" }}, interval: 200ms, timeout: 150ms, healthy_threshold: 1, unhealthy_threshold: 2 }}
  plain:
    endpoints: [{}, {}]
    health_check: {{ tcp: {{}}, interval: 200ms, timeout: 150ms, unhealthy_threshold: 2 }}
listeners:
  public:
    address: {listen}
    routes: [ {{ match: {{ prefix: /pong }}, to: pong }}, {{ to: plain }} ]
",
        pong.addr,
        steady_pong.addr,
        plain.address(),
        steady.address()
    );
    let flotilla = Flotilla::start(&yaml).await;
    let mut plain = plain;
    let envoy = Envoy::start(&flotilla, "edge-1", "edge", Xds::Sotw).await;
    envoy.wait_listener(listen).await;
    let pong_addr = pong.addr.to_string();
    wait_flags(
        &envoy,
        "pong",
        &pong_addr,
        "healthy",
        Duration::from_secs(10),
    )
    .await;
    wait_flags(
        &envoy,
        "plain",
        &plain.address(),
        "healthy",
        Duration::from_secs(10),
    )
    .await;
    // Up, but closing every connection without the expected answer.
    pong.break_it();
    wait_flags(
        &envoy,
        "pong",
        &pong_addr,
        "failed_eds_health",
        Duration::from_secs(10),
    )
    .await;
    pong.fix();
    wait_flags(
        &envoy,
        "pong",
        &pong_addr,
        "healthy",
        Duration::from_secs(10),
    )
    .await;
    // Gone altogether: connections are refused.
    let plain_addr = plain.address();
    plain.kill();
    wait_flags(
        &envoy,
        "plain",
        &plain_addr,
        "failed_eds_health",
        Duration::from_secs(10),
    )
    .await;
}

#[tokio::test]
async fn least_response_time_sends_less_to_a_slower_backend() {
    let fast = Backend::start("fast").await;
    let slow = Backend::start("slow").await;
    slow.set_delay(Duration::from_millis(50));
    slow.set_health_delay(Duration::from_millis(50));
    let listen = free_addr();
    let yaml = format!(
        "version: 1
clusters:
  web:
    policy: least_response_time
    endpoints: [{}, {}]
    health_check: {{ http: {{ path: /healthz }}, interval: 200ms, timeout: 150ms, jitter: 20ms }}
listeners:
  public:
    address: {listen}
    routes: [ {{ to: web }} ]
",
        fast.address(),
        slow.address()
    );
    let flotilla = Flotilla::start(&yaml).await;
    let envoy = Envoy::start(&flotilla, "edge-1", "edge", Xds::Delta).await;
    envoy.wait_listener(listen).await;
    let weight = |state: &serde_json::Value, addr: &str| {
        state["clusters"][0]["endpoints"]
            .as_array()
            .expect("endpoints")
            .iter()
            .find(|e| e["address"] == addr)
            .and_then(|e| e["weight"].as_u64())
            .expect("weight")
    };
    wait::until("measured weights", Duration::from_secs(10), || async {
        let state = flotilla.json("/api/v1/state").await;
        (weight(&state, &slow.address()) * 4 < weight(&state, &fast.address())).then_some(())
    })
    .await;
    let state = flotilla.json("/api/v1/state").await;
    let (wf, ws) = (
        weight(&state, &fast.address()),
        weight(&state, &slow.address()),
    );

    // Through Envoy, the slow backend gets about its share of the weight.
    wait::until(
        "Envoy to hold the weights",
        Duration::from_secs(10),
        || async {
            envoy
                .config_dump()
                .await
                .to_string()
                .contains(&format!("\"load_balancing_weight\":{ws}"))
                .then_some(())
        },
    )
    .await;
    let counts = client::spread(&format!("http://{listen}/"), 200).await;
    let slow_share = *counts.get("slow").unwrap_or(&0) as f64 / 200.0;
    assert!(
        slow_share < 0.2,
        "slow got {slow_share} of the traffic (weights {wf}:{ws}): {counts:?}"
    );
    assert!(counts.get("fast").copied().unwrap_or(0) > 150, "{counts:?}");

    // Latency noise does not make flotilla push: the weights hold steady over many probes.
    let eds = |v: serde_json::Value| v[0]["types"]["eds"]["responses"].as_u64().unwrap_or(0);
    let before = eds(flotilla.json("/api/v1/nodes").await);
    wait::holds_for(
        "at most one EDS push in 3 s of steady latency (about 15 probes each)",
        Duration::from_secs(3),
        || async { eds(flotilla.json("/api/v1/nodes").await) - before <= 1 },
    )
    .await;
}

#[tokio::test]
async fn every_endpoint_failing_its_check_fails_open() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let listen = free_addr();
    let flotilla =
        Flotilla::start(&checked(listen, &[a.address(), b.address()], "round_robin")).await;
    let envoy = Envoy::start(&flotilla, "edge-1", "edge", Xds::Sotw).await;
    envoy.wait_listener(listen).await;
    a.set_health(500);
    b.set_health(500);
    wait::until(
        "both verdicts unhealthy",
        Duration::from_secs(10),
        || async {
            (verdict(&flotilla, "web", &a.address()).await == "unhealthy"
                && verdict(&flotilla, "web", &b.address()).await == "unhealthy")
                .then_some(())
        },
    )
    .await;
    // flotilla trusts real traffic over its own probes when every probe fails: both stay in.
    let counts = client::spread(&format!("http://{listen}/"), 20).await;
    assert_eq!(counts.values().sum::<usize>(), 20);
    assert!(
        counts.contains_key("a") && counts.contains_key("b"),
        "{counts:?}"
    );
}

#[tokio::test]
async fn removed_endpoints_stop_being_probed_and_moved_ones_start_fresh() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let listen = free_addr();
    let two = |web: &str, other: &str| {
        format!(
            "version: 1
clusters:
  web:
    endpoints: [{web}]
    health_check: {{ http: {{ path: /healthz }}, interval: 200ms, timeout: 150ms, unhealthy_threshold: 1 }}
  other:
    endpoints: [{other}]
    health_check: {{ tcp: {{}}, interval: 200ms, timeout: 150ms }}
listeners:
  public:
    address: {listen}
    routes: [ {{ match: {{ prefix: /other }}, to: other }}, {{ to: web }} ]
"
        )
    };
    let flotilla = Flotilla::start(&two(
        &format!("{}, {}", a.address(), b.address()),
        &a.address(),
    ))
    .await;
    b.set_health(503);
    wait::until("b unhealthy in web", Duration::from_secs(10), || async {
        (verdict(&flotilla, "web", &b.address()).await == "unhealthy").then_some(())
    })
    .await;

    // b moves from web to other: web stops probing it at once; in other it starts afresh
    // (TCP checks pass) with none of web's verdict.
    flotilla.write_config(&two(
        &a.address(),
        &format!("{}, {}", a.address(), b.address()),
    ));
    wait::until("b healthy in other", Duration::from_secs(10), || async {
        (verdict(&flotilla, "other", &b.address()).await == "healthy").then_some(())
    })
    .await;
    assert_eq!(
        verdict(&flotilla, "web", &b.address()).await,
        "",
        "b is no longer in web"
    );
    let probes = b.probes();
    wait::holds_for(
        "nothing probes b's /healthz any more",
        Duration::from_millis(800),
        || async { b.probes() == probes },
    )
    .await;
}

both_protocols!(
    a_dying_backend_costs_clients_nothing,
    a_backend_failing_its_health_check_is_taken_out
);
