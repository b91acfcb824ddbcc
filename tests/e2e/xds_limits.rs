//! The xDS port under a flood (issue 12.5/12.6): idle connections are closed, connections above
//! the cap are refused, running out of file descriptors does not spin, oversized node ids are
//! refused, and an Envoy of an undeclared fleet receives nothing, while real Envoys are served.

use std::net::SocketAddr;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use tokio::net::TcpStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use crate::support::backend::Backend;
use crate::support::conn::closed_after;
use crate::support::envoy::{Envoy, Xds};
use crate::support::flotilla::Flotilla;
use crate::support::{client, configs, free_addr, wait};

/// flotilla serving `yaml` with extra `serve` flags, under `wrapper` if any.
async fn flotilla(yaml: &str, flags: &[&str], wrapper: &[&str]) -> Flotilla {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("flotilla.yaml");
    std::fs::write(&config, yaml).expect("write config");
    let f = Flotilla::start_under(dir, config, flags, wrapper).await;
    f.wait_ready().await;
    f
}

#[tokio::test]
async fn idle_connections_are_closed_and_those_above_the_cap_refused_while_envoy_is_served() {
    let backend = Backend::start("a").await;
    let listen = free_addr();
    let f = flotilla(
        &configs::web(listen, &backend.address()),
        &[
            "--xds-handshake-timeout",
            "3s",
            "--xds-max-connections",
            "20",
        ],
        &[],
    )
    .await;
    let envoy = Envoy::start(&f, "edge-1", "edge", Xds::Delta).await;
    envoy.wait_listener(listen).await;

    let mut flood = Vec::new();
    for _ in 0..40 {
        flood.push(TcpStream::connect(f.xds).await.expect("connect"));
    }
    let ends: Vec<_> = flood
        .into_iter()
        .map(|c| tokio::spawn(closed_after(c, Duration::from_secs(20))))
        .collect();
    let mut refused = 0;
    let mut timed_out = 0;
    for end in ends {
        let took = end
            .await
            .expect("join")
            .expect("every idle connection is closed");
        if took < Duration::from_secs(1) {
            refused += 1;
        } else {
            assert!(took >= Duration::from_secs(2), "closed after {took:?}");
            timed_out += 1;
        }
    }
    // The Envoy holds one or more of the 20; the rest of the 40 were refused at once.
    assert!(
        refused >= 20 && timed_out >= 16,
        "refused {refused}, timed out {timed_out}"
    );

    // The Envoy kept its stream, traffic flows, and the freed room takes a new Envoy.
    assert_eq!(
        client::spread(&format!("http://{listen}/"), 5)
            .await
            .get("a"),
        Some(&5)
    );
    let _second = Envoy::start(&f, "edge-2", "edge", Xds::Sotw).await;
    wait::until("both Envoys in sync", Duration::from_secs(20), || async {
        let nodes = f.json("/api/v1/nodes").await;
        let nodes = nodes.as_array()?;
        (nodes.len() >= 2 && nodes.iter().all(|n| n["in_sync"] == true)).then_some(())
    })
    .await;
}

/// CPU time (user + system) the process has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

#[tokio::test]
async fn running_out_of_file_descriptors_backs_off_instead_of_spinning() {
    let listen = free_addr();
    let f = flotilla(
        &configs::web(listen, "127.0.0.1:1"),
        &["--xds-handshake-timeout", "6s"],
        &["prlimit", "--nofile=64"],
    )
    .await;
    let pid = f.pid().expect("pid");
    // More connections than flotilla has descriptors: the rest wait in the backlog and every
    // accept fails with EMFILE until the idle ones are closed.
    let mut flood = Vec::new();
    for _ in 0..100 {
        flood.push(TcpStream::connect(f.xds).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_ticks(pid) - before;
    // A spinning accept loop burns a core: about 200 ticks in 2 s.
    assert!(
        used < 40,
        "{used} clock ticks of CPU in 2 s while out of descriptors"
    );
    // The log names the limit and what raises it (issue 26: fail loudly, naming the limit),
    // at start (the limit is below --xds-max-connections) and when accept fails.
    let log = f.log();
    assert!(
        log.contains("the open-files limit is below --xds-max-connections"),
        "{log}"
    );
    assert!(
        log.contains("out of file descriptors (open-files limit 64)"),
        "{log}"
    );
    drop(flood);
    // Once the flood is gone, flotilla serves again.
    wait::until("admin reachable again", Duration::from_secs(30), || async {
        reqwest::get(format!("http://{}/healthz", f.admin))
            .await
            .ok()
            .filter(|r| r.status().is_success())
    })
    .await;
    let _ = AggregatedDiscoveryServiceClient::connect(format!("http://{}", f.xds))
        .await
        .expect("xDS reachable again");
}

async fn first_status(xds: SocketAddr, node: Node) -> tonic::Status {
    let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{xds}"))
        .await
        .expect("connect");
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(DiscoveryRequest {
        node: Some(node),
        type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".into(),
        ..Default::default()
    })
    .await
    .expect("send");
    let mut responses = match client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
    {
        Ok(r) => r.into_inner(),
        Err(status) => return status,
    };
    match tokio::time::timeout(Duration::from_secs(10), responses.message()).await {
        Ok(Err(status)) => status,
        other => panic!("expected an error status, got {other:?}"),
    }
}

#[tokio::test]
async fn oversized_node_ids_and_metadata_are_refused_with_a_clear_status() {
    let backend = Backend::start("a").await;
    let listen = free_addr();
    let f = flotilla(&configs::web(listen, &backend.address()), &[], &[]).await;
    let envoy = Envoy::start(&f, "edge-1", "edge", Xds::Sotw).await;
    envoy.wait_listener(listen).await;

    let status = first_status(
        f.xds,
        Node {
            id: "x".repeat(1 << 20),
            cluster: "edge".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("node.id is 1048576 bytes"),
        "{status:?}"
    );

    let status = first_status(
        f.xds,
        Node {
            id: "big-metadata".into(),
            cluster: "edge".into(),
            user_agent_name: "m".repeat(1 << 20),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("--xds-max-node-bytes"),
        "{status:?}"
    );

    // Neither is listed or logged as an Envoy; the real one is.
    let nodes = f.json("/api/v1/nodes").await;
    let ids: Vec<&str> = nodes
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["node_id"].as_str())
        .collect();
    assert_eq!(ids, ["edge-1"]);
    assert_eq!(
        client::spread(&format!("http://{listen}/"), 3)
            .await
            .get("a"),
        Some(&3)
    );
}

#[tokio::test]
async fn an_envoy_of_an_undeclared_fleet_receives_nothing_once_fleets_exist() {
    let backend = Backend::start("a").await;
    let (public, internal) = (free_addr(), free_addr());
    let yaml = format!(
        "version: 1
clusters:
  shopfront: {{ endpoints: [{a}] }}
  backoffice: {{ endpoints: [{a}] }}
listeners:
  storefront: {{ address: {public}, routes: [ {{ to: shopfront }} ] }}
  backdoor: {{ address: {internal}, routes: [ {{ to: backoffice }} ] }}
fleets:
  edge: {{ listeners: [storefront] }}
  mesh: {{ listeners: [backdoor] }}
",
        a = backend.address()
    );
    let f = flotilla(&yaml, &[], &[]).await;
    let edge = Envoy::start(&f, "edge-1", "edge", Xds::Delta).await;
    edge.wait_listener(public).await;
    let rogue = Envoy::start(&f, "rogue-1", "typo", Xds::Sotw).await;
    wait::until(
        "the rogue Envoy connected",
        Duration::from_secs(20),
        || async {
            let nodes = f.json("/api/v1/nodes").await;
            nodes
                .as_array()?
                .iter()
                .any(|n| n["node_id"] == "rogue-1" && n["in_sync"] == true)
                .then_some(())
        },
    )
    .await;
    let dump = rogue.config_dump().await.to_string();
    for name in ["storefront", "backdoor", "shopfront", "backoffice"] {
        assert!(!dump.contains(name), "the rogue Envoy got {name}: {dump}");
    }
    let events = f.json("/api/v1/events").await.to_string();
    assert!(
        events.contains("\\\"typo\\\", which is not declared under fleets"),
        "{events}"
    );
    // The declared fleet is served as before.
    assert_eq!(
        client::spread(&format!("http://{public}/"), 3)
            .await
            .get("a"),
        Some(&3)
    );
}

/// flotilla's gauge of request bytes the xDS streams hold buffered.
async fn buffered(f: &Flotilla) -> u64 {
    let text = f.get("/metrics").await.text().await.expect("metrics");
    text.lines()
        .find_map(|l| {
            l.strip_prefix("flotilla_xds_request_buffer_bytes ")?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map(|v| v as u64)
        .expect("flotilla_xds_request_buffer_bytes is exported")
}

/// Issue 27: unfinished ~4 MB gRPC messages on 128 streams of one connection cost +540 MB,
/// not returned when the connection closed. One connection opens 8 ADS streams, each
/// announcing a 4,000,000-byte request and sending 64 KiB of it: with an 8 MiB budget per
/// connection two fit and the others end with RESOURCE_EXHAUSTED; once the connection
/// closes, nothing is held.
#[tokio::test]
async fn unfinished_requests_are_bounded_per_connection_and_freed_when_it_closes() {
    use http_body_util::StreamBody;
    use hyper::body::{Bytes, Frame};

    let backend = Backend::start("a").await;
    let listen = free_addr();
    let limit: u64 = 8 << 20;
    let f = flotilla(
        &configs::web(listen, &backend.address()),
        &[
            "--xds-max-buffered-bytes-per-connection",
            &limit.to_string(),
        ],
        &[],
    )
    .await;
    assert_eq!(buffered(&f).await, 0);

    let tcp = TcpStream::connect(f.xds).await.expect("connect");
    let (mut h2, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("HTTP/2 handshake");
    let connection = tokio::spawn(connection);
    let mut announced = vec![0u8];
    announced.extend_from_slice(&4_000_000u32.to_be_bytes());
    announced.extend_from_slice(&vec![0u8; 64 * 1024]);
    let mut senders = Vec::new();
    let mut responses = Vec::new();
    for _ in 0..8 {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(2);
        tx.send(Ok(Frame::data(Bytes::from(announced.clone()))))
            .await
            .expect("queue");
        senders.push(tx); // never finished
        let req = hyper::Request::post(
            "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources",
        )
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(StreamBody::new(ReceiverStream::new(rx)))
        .expect("request");
        h2.ready().await.expect("ready");
        responses.push(h2.send_request(req));
    }
    let held = wait::until(
        "the streams hold their messages",
        Duration::from_secs(10),
        || async {
            let b = buffered(&f).await;
            (b >= 8_000_000).then_some(b)
        },
    )
    .await;
    assert!(
        held <= limit + (1 << 20),
        "{held} bytes held, over the limit"
    );
    wait::holds_for("the budget holds", Duration::from_millis(500), || async {
        buffered(&f).await <= limit + (1 << 20)
    })
    .await;

    drop(senders);
    drop(responses);
    drop(h2);
    connection.abort();
    wait::until(
        "the closed connection's bytes are given back",
        Duration::from_secs(10),
        || async { (buffered(&f).await == 0).then_some(()) },
    )
    .await;
}
