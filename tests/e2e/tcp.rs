//! `protocol: tcp` listeners through real Envoy: connections spread over a cluster's
//! backends, by weight and hash policy, and a backend failing flotilla's health check stops
//! getting connections.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::envoy::{Envoy, Xds};
use crate::support::flotilla::Flotilla;
use crate::support::tcp::{TcpEcho, backend_of, exchange};
use crate::support::{free_addr, wait};

fn tcp_config(listen: std::net::SocketAddr, policy: &str, backends: &[(&TcpEcho, u32)]) -> String {
    let endpoints: Vec<String> = backends
        .iter()
        .map(|(b, w)| format!("{{ address: {}, weight: {w} }}", b.address()))
        .collect();
    format!(
        "version: 1
clusters:
  db:
    policy: {policy}
    endpoints: [{}]
    health_check: {{ tcp: {{ send: \"PING\\r\\n\", expect: \"+PONG\" }}, interval: 200ms, timeout: 150ms, healthy_threshold: 1, unhealthy_threshold: 2 }}
listeners:
  postgres:
    address: {listen}
    protocol: tcp
    to: db
",
        endpoints.join(", ")
    )
}

/// Which backend answered each of `n` fresh connections.
async fn spread(listen: std::net::SocketAddr, n: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for i in 0..n {
        let reply = exchange(listen, &format!("hello {i}\n"))
            .await
            .unwrap_or_else(|| panic!("connection {i} through Envoy got no echo"));
        *counts.entry(backend_of(&reply).to_string()).or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connections_spread_by_weight_and_skip_unhealthy_backends() {
    let (a, b, c) = (
        TcpEcho::start("a").await,
        TcpEcho::start("b").await,
        TcpEcho::start("c").await,
    );
    let listen = free_addr();
    let flotilla = Flotilla::start(&tcp_config(
        listen,
        "round_robin",
        &[(&a, 1), (&b, 1), (&c, 2)],
    ))
    .await;
    let envoy = Envoy::start(&flotilla, "db-1", "db", Xds::Delta).await;
    envoy.wait_listener(listen).await;
    wait::until(
        "a first echo through Envoy",
        Duration::from_secs(10),
        || async { exchange(listen, "ready\n").await },
    )
    .await;

    let counts = spread(listen, 80).await;
    let share = |n: &str| *counts.get(n).unwrap_or(&0) as f64 / 80.0;
    assert!(
        (share("c") - 0.5).abs() < 0.15 && share("a") > 0.1 && share("b") > 0.1,
        "weights 1:1:2 should give about 25/25/50%: {counts:?}"
    );

    b.set_healthy(false);
    wait::until(
        "b to fail its health check in Envoy",
        Duration::from_secs(10),
        || async {
            envoy
                .health_flags("db", &b.address())
                .await
                .filter(|f| f.contains("failed_eds_health"))
        },
    )
    .await;
    let before = b.connections();
    let counts = spread(listen, 40).await;
    assert_eq!(
        b.connections(),
        before,
        "unhealthy b got connections: {counts:?}"
    );
    assert_eq!(counts.values().sum::<usize>(), 40, "{counts:?}");
    assert!(!counts.contains_key("b"), "{counts:?}");
    drop((a, c));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maglev_on_source_ip_keeps_a_client_on_one_backend() {
    let backends = [
        TcpEcho::start("a").await,
        TcpEcho::start("b").await,
        TcpEcho::start("c").await,
    ];
    let listen = free_addr();
    let weighted: Vec<(&TcpEcho, u32)> = backends.iter().map(|b| (b, 1)).collect();
    let flotilla = Flotilla::start(&tcp_config(listen, "maglev", &weighted)).await;
    let envoy = Envoy::start(&flotilla, "db-1", "db", Xds::Sotw).await;
    envoy.wait_listener(listen).await;
    wait::until(
        "all three backends healthy in Envoy",
        Duration::from_secs(10),
        || async {
            let mut healthy = 0;
            for b in &backends {
                if envoy.health_flags("db", &b.address()).await.as_deref() == Some("healthy") {
                    healthy += 1;
                }
            }
            (healthy == 3).then_some(())
        },
    )
    .await;
    // Every connection comes from 127.0.0.1: one source address, one backend.
    let counts = spread(listen, 30).await;
    assert_eq!(
        counts.len(),
        1,
        "source-ip hashing should pin one backend: {counts:?}"
    );
}

/// TLS passthrough: real TLS clients reach, by SNI, backends that hold the certificates;
/// Envoy never terminates TLS (the client verifies the backend's own certificate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_passthrough_routes_by_server_name() {
    use crate::support::pki::Pki;
    use crate::support::tls::{TlsEcho, client as tls_client, exchange as tls_exchange};
    let ca = Pki::new();
    let a = TlsEcho::start(&ca, "a", &["a.example.com"]).await;
    let b = TlsEcho::start(&ca, "b", &["*.b.example.com", "*.x.b.example.com"]).await;
    let listen = free_addr();
    let flotilla = Flotilla::start(&format!(
        "version: 1
clusters:
  cluster-a: {{ endpoints: [{}] }}
  cluster-b: {{ endpoints: [{}] }}
listeners:
  passthrough:
    address: {listen}
    protocol: tls_passthrough
    sni: {{ a.example.com: cluster-a, \"*.b.example.com\": cluster-b }}
",
        a.address(),
        b.address()
    ))
    .await;
    let envoy = Envoy::start(&flotilla, "edge-1", "edge", Xds::Delta).await;
    envoy.wait_listener(listen).await;
    let client = tls_client(&ca);
    let reply = wait::until(
        "a TLS echo through Envoy",
        Duration::from_secs(10),
        || async {
            tls_exchange(&client, listen, "a.example.com", "hi\n")
                .await
                .ok()
        },
    )
    .await;
    assert_eq!(reply, "a:hi\n");
    for (sni, backend) in [
        ("a.example.com", "a"),
        ("x.b.example.com", "b"),
        ("deep.x.b.example.com", "b"),
    ] {
        let reply = tls_exchange(&client, listen, sni, "ping\n")
            .await
            .unwrap_or_else(|e| panic!("{sni}: {e}"));
        assert_eq!(reply, format!("{backend}:ping\n"), "{sni}");
    }
    // No filter chain for an unknown name: Envoy closes the connection, no backend answers.
    let unknown = tls_exchange(&client, listen, "c.example.com", "ping\n").await;
    assert!(
        unknown.is_err(),
        "unknown SNI reached a backend: {unknown:?}"
    );
}
