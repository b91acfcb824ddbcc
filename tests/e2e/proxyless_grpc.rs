//! Proxyless gRPC: Python grpcio clients dial `xds:///greeter.test:50051` and take listener,
//! routes, clusters and endpoints from flotilla over ADS, with no Envoy in between. Backends
//! are grpcio servers that answer with their name, so each test counts who served each call.

use std::time::Duration;

use crate::support::flotilla::Flotilla;
use crate::support::grpc::{Calls, GrpcBackends, GrpcClient};

const TARGET: &str = "greeter.test:50051";

fn listener(routes: &str) -> String {
    format!(
        "listeners:
  \"{TARGET}\":
    proxyless_grpc: true
    routes:
{routes}"
    )
}

/// Batches of `batch` calls until `done` holds for one, or panics after `within`; every call
/// of every batch must succeed.
async fn calls_until(
    client: &mut GrpcClient,
    what: &str,
    batch: u32,
    metadata: &[(&str, &str)],
    within: Duration,
    done: impl Fn(&Calls) -> bool,
) -> Calls {
    let deadline = std::time::Instant::now() + within;
    loop {
        let calls = client.calls(batch, metadata).await;
        assert_eq!(calls.failures, 0, "while waiting for {what}: {calls:?}");
        if done(&calls) {
            return calls;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}; last batch {calls:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_spread_over_every_server_and_a_split_weight_change_moves_the_share() {
    let backends = GrpcBackends::start(&["a", "b", "c"]).await;
    let config = |v1: u32, v2: u32| {
        format!(
            "version: 1
clusters:
  v1: {{ endpoints: [{a}, {b}] }}
  v2: {{ endpoints: [{c}] }}
{}",
            listener(&format!(
                "      - {{ match: {{ prefix: / }}, split: {{ v1: {v1}, v2: {v2} }}, timeout: 5s }}\n"
            )),
            a = backends.address("a"),
            b = backends.address("b"),
            c = backends.address("c"),
        )
    };
    let flotilla = Flotilla::start(&config(2, 1)).await;
    flotilla.wait_ready().await;
    let mut client = GrpcClient::start(&flotilla, "grpc-client-1", TARGET).await;
    client.wait_ready().await;

    let calls = client.calls(300, &[]).await;
    assert_eq!(calls.failures, 0, "{calls:?}");
    // v1 takes 2/3 (a and b about 100 each, round robin), v2 1/3 (c about 100).
    for name in ["a", "b", "c"] {
        assert!((60..=140).contains(&calls.to(name)), "{name}: {calls:?}");
    }

    // The same client, its channel kept: the new weights reach it and move the share.
    flotilla.write_config(&config(1, 9));
    let moved = calls_until(
        &mut client,
        "c to take most calls",
        100,
        &[],
        Duration::from_secs(20),
        |c| c.to("c") >= 75,
    )
    .await;
    let calls = client.calls(300, &[]).await;
    assert_eq!(calls.failures, 0, "{calls:?}");
    assert!(
        calls.to("c") >= 240,
        "v2 now weighs 9/10: {calls:?} (first moved batch {moved:?})"
    );
    assert!(
        calls.to("a") + calls.to("b") >= 5,
        "v1 still gets its 1/10: {calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_failing_its_health_check_stops_getting_calls_with_none_failed() {
    let mut backends = GrpcBackends::start(&["a", "b", "c"]).await;
    let yaml = format!(
        "version: 1
clusters:
  greeter:
    endpoints: [{}, {}, {}]
    health_check: {{ grpc: {{}}, interval: 200ms, timeout: 200ms, jitter: 0s, unhealthy_threshold: 2, healthy_threshold: 2 }}
{}",
        backends.address("a"),
        backends.address("b"),
        backends.address("c"),
        listener("      - { to: greeter, retries: { attempts: 2, on: [unavailable] } }\n"),
    );
    let flotilla = Flotilla::start(&yaml).await;
    flotilla.wait_ready().await;
    let mut client = GrpcClient::start(&flotilla, "grpc-client-2", TARGET).await;
    client.wait_ready().await;
    calls_until(
        &mut client,
        "every server to serve",
        30,
        &[],
        Duration::from_secs(20),
        |c| ["a", "b", "c"].iter().all(|n| c.to(n) > 0),
    )
    .await;

    backends.set_serving("b", false).await;
    calls_until(
        &mut client,
        "b to stop getting calls",
        30,
        &[],
        Duration::from_secs(20),
        |c| c.to("b") == 0,
    )
    .await;
    let calls = client.calls(200, &[]).await;
    assert_eq!(calls.failures, 0, "{calls:?}");
    assert_eq!(calls.to("b"), 0, "EDS marks b unhealthy: {calls:?}");
    assert!(calls.to("a") >= 70 && calls.to("c") >= 70, "{calls:?}");

    backends.set_serving("b", true).await;
    calls_until(
        &mut client,
        "b to get calls again",
        30,
        &[],
        Duration::from_secs(20),
        |c| c.to("b") > 0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_edit_reaches_a_running_client_and_header_affinity_holds() {
    let backends = GrpcBackends::start(&["a", "b", "c"]).await;
    let clusters = format!(
        "version: 1
clusters:
  stable: {{ endpoints: [{a}] }}
  canary: {{ endpoints: [{b}] }}
  sessions:
    policy: ring_hash
    affinity: {{ header: x-user }}
    endpoints: [{a}, {b}, {c}]
",
        a = backends.address("a"),
        b = backends.address("b"),
        c = backends.address("c"),
    );
    let before = format!("{clusters}{}", listener("      - { to: stable }\n"));
    let flotilla = Flotilla::start(&before).await;
    flotilla.wait_ready().await;
    let mut client = GrpcClient::start(&flotilla, "grpc-client-3", TARGET).await;
    client.wait_ready().await;
    let calls = client.calls(20, &[("x-canary", "true")]).await;
    assert_eq!((calls.to("a"), calls.failures), (20, 0), "{calls:?}");

    let after = format!(
        "{clusters}{}",
        listener(
            "      - { match: { prefix: /, headers: { x-canary: \"true\" } }, to: canary, timeout: 2s }
      - { match: { prefix: /flotilla.test.Echo/ }, to: sessions, retries: { attempts: 3, on: [unavailable, cancelled] } }
"
        )
    );
    flotilla.write_config(&after);
    calls_until(
        &mut client,
        "the canary route to reach the client",
        10,
        &[("x-canary", "true")],
        Duration::from_secs(20),
        |c| c.to("b") == 10,
    )
    .await;

    // Ring hash on x-user: one user always lands on one server; users spread over several.
    let mut servers = std::collections::BTreeSet::new();
    for user in [
        "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
    ] {
        let calls = client.calls(10, &[("x-user", user)]).await;
        assert_eq!(calls.failures, 0, "{calls:?}");
        assert_eq!(
            calls.counts.len(),
            1,
            "{user} sticks to one server: {calls:?}"
        );
        servers.extend(calls.counts.into_keys());
    }
    assert!(servers.len() >= 2, "users spread over servers: {servers:?}");
    // No x-user header: gRPC's ring hash picks a random point per call (gRFC A42).
    let calls = client.calls(60, &[]).await;
    assert_eq!(calls.failures, 0, "{calls:?}");
    assert!(
        calls.counts.len() >= 2,
        "calls without the header spread: {calls:?}"
    );
}
