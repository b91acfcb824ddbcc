//! The xDS port over mTLS (issue 16): Envoys connect with `flotilla certs` certificates and
//! `flotilla bootstrap --xds-ca/--xds-cert/--xds-key`; every client that is not who it
//! claims to be is refused with a clear error and counted, while the legitimate Envoy keeps
//! getting updates.

use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::metrics::v3::metrics_service_client::MetricsServiceClient;
use envoy_types::pb::envoy::service::metrics::v3::{StreamMetricsMessage, stream_metrics_message};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::transport::Channel;

use crate::support::backend::Backend;
use crate::support::envoy::{Envoy, Xds};
use crate::support::flotilla::Flotilla;
use crate::support::pki::certs_dir::CertsDir;
use crate::support::pki::https::https_get;
use crate::support::{configs, free_addr, wait};

const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

fn node(id: &str, fleet: &str) -> Node {
    Node {
        id: id.into(),
        cluster: fleet.into(),
        ..Default::default()
    }
}

/// Opens an ADS stream claiming `claim` and returns its first response or error.
async fn first_response(channel: Channel, claim: Node) -> Result<(), tonic::Status> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(DiscoveryRequest {
        type_url: CDS.into(),
        node: Some(claim),
        ..Default::default()
    })
    .await
    .expect("queue request");
    let mut responses = AggregatedDiscoveryServiceClient::new(channel)
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let got = tokio::time::timeout(Duration::from_secs(10), responses.message())
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("no response within 10 s"))?;
    got.map(|_| ())
}

/// The stream claiming `claim` is refused with PERMISSION_DENIED: its message.
async fn permission_denied(channel: Channel, claim: Node) -> String {
    let status = first_response(channel, claim)
        .await
        .expect_err("a claim the certificate does not allow");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    status.message().to_string()
}

/// The connection, or the stream on it, fails: a refused handshake shows as either.
async fn refused(pki: &CertsDir, f: &Flotilla, client: Option<&(String, String)>) -> String {
    let channel = match pki.channel(f.xds, client).await {
        Ok(c) => c,
        Err(e) => return e,
    };
    match first_response(channel, node("edge-9", "edge")).await {
        Ok(()) => panic!("a client with certificate {client:?} was served"),
        Err(s) => format!("{s:?}"),
    }
}

/// flotilla over mTLS (with `extra` flags) serving `configs::web` at a free listen address.
async fn start_web(pki: &CertsDir, extra: &[&str]) -> (Flotilla, Backend, std::net::SocketAddr) {
    let backend = Backend::start("a").await;
    let listen = free_addr();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("flotilla.yaml");
    std::fs::write(&config, configs::web(listen, &backend.address())).expect("config");
    let flags = pki.serve_flags();
    let mut flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    flags.extend(extra);
    let f = Flotilla::start_with(dir, config, &flags).await;
    f.wait_ready().await;
    (f, backend, listen)
}

/// Adds a second listener to the `start_web` config; its address, for Envoys to wait for.
fn add_listener(
    f: &Flotilla,
    listen: std::net::SocketAddr,
    backend: &Backend,
) -> std::net::SocketAddr {
    let second = free_addr();
    let yaml = configs::web(listen, &backend.address()).replace(
        "listeners:\n",
        &format!("listeners:\n  second:\n    address: {second}\n    routes: [ {{ to: web }} ]\n"),
    );
    f.write_config(&yaml);
    second
}

async fn rejected(f: &Flotilla, reason: &str) -> u64 {
    let metrics = f.text("/metrics").await;
    let prefix = format!("flotilla_xds_rejected_streams_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in /metrics"))
}

#[tokio::test]
async fn only_clients_whose_certificates_allow_their_node_are_served() {
    let pki = CertsDir::new();
    let (f, backend, listen) = start_web(&pki, &[]).await;

    // A real Envoy with its own node certificate is served over mTLS.
    let envoy = Envoy::start_with(
        &f,
        "edge-1",
        "edge",
        Xds::Sotw,
        &pki.bootstrap_flags("edge", "edge-1"),
    )
    .await;
    envoy.wait_listener(listen).await;

    // An Envoy claiming fleet "mesh" with a certificate for fleet "edge" gets nothing.
    let mut intruder_flags = pki.bootstrap_flags("edge", "mesh-1");
    let (edge_cert, edge_key) = pki.issue("edge", None);
    intruder_flags[3] = edge_cert.clone();
    intruder_flags[5] = edge_key.clone();
    let intruder = Envoy::start_with(&f, "mesh-1", "mesh", Xds::Sotw, &intruder_flags).await;
    wait::until(
        "the intruder Envoy is refused",
        Duration::from_secs(20),
        || async { (rejected(&f, "wrong_fleet").await >= 1).then_some(()) },
    )
    .await;
    let events = f.json("/api/v1/events").await.to_string();
    assert!(
        events.contains(
            "is not allowed by the client certificate, which allows fleet \\\"edge\\\", any node"
        ),
        "{events}"
    );
    let updates = intruder.stat("cluster_manager.cds.update_success").await;
    assert!(
        matches!(updates, None | Some(0)),
        "the intruder got clusters: {updates:?}"
    );

    // Plaintext to the TLS port, TLS without a certificate, an expired one, a foreign CA's:
    // each fails its handshake.
    let before = rejected(&f, "tls_handshake").await;
    let plaintext = Channel::from_shared(format!("http://{}", f.xds))
        .expect("endpoint")
        .connect()
        .await;
    let plaintext = match plaintext {
        Err(e) => format!("{e:?}"),
        Ok(c) => format!(
            "{:?}",
            first_response(c, node("edge-9", "edge"))
                .await
                .expect_err("plaintext served")
        ),
    };
    assert!(!plaintext.is_empty());
    let no_cert = refused(&pki, &f, None).await;
    let expired = refused(&pki, &f, Some(&pki.issue_expired("edge"))).await;
    let foreign = refused(&pki, &f, Some(&pki.issue_foreign("edge"))).await;
    for (what, err) in [
        ("no cert", &no_cert),
        ("expired", &expired),
        ("foreign", &foreign),
    ] {
        assert!(
            !err.contains("PermissionDenied"),
            "{what} passed the handshake: {err}"
        );
    }
    wait::until(
        "handshake failures counted",
        Duration::from_secs(10),
        || async { (rejected(&f, "tls_handshake").await >= before + 4).then_some(()) },
    )
    .await;

    // A node certificate claiming another fleet: PERMISSION_DENIED saying what it allows.
    let (e1_cert, e1_key) = pki.issue("edge", Some("e1"));
    let e1 = (e1_cert, e1_key);
    let channel = pki.channel(f.xds, Some(&e1)).await.expect("mTLS connect");
    let message = permission_denied(channel.clone(), node("e1", "mesh")).await;
    assert!(
        message.contains("allows fleet \"edge\", node \"e1\""),
        "{message}"
    );
    // … or another node of its own fleet.
    let denied = first_response(channel.clone(), node("e2", "edge"))
        .await
        .expect_err("another node");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(rejected(&f, "wrong_node").await >= 1);

    // A fleet-wide certificate may claim any node of its fleet, but not one connected under
    // another identity (edge-1, bound to its node certificate): refused, not merged.
    let fleet_wide = (edge_cert, edge_key);
    let channel = pki
        .channel(f.xds, Some(&fleet_wide))
        .await
        .expect("mTLS connect");
    first_response(channel.clone(), node("edge-7", "edge"))
        .await
        .expect("a fleet-wide certificate claims a free node");
    let hijack = first_response(channel.clone(), node("edge-1", "edge"))
        .await
        .expect_err("hijack");
    assert_eq!(hijack.code(), Code::PermissionDenied, "{hijack:?}");
    assert!(
        hijack
            .message()
            .contains("already connected under another identity"),
        "{hijack:?}"
    );
    assert!(rejected(&f, "node_in_use").await >= 1);

    // Stats for another fleet's node on the stats sink: refused the same way.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(StreamMetricsMessage {
        identifier: Some(stream_metrics_message::Identifier {
            node: Some(node("mesh-1", "mesh")),
        }),
        envoy_metrics: Vec::new(),
    })
    .await
    .expect("queue stats");
    drop(tx);
    let sink = MetricsServiceClient::new(pki.channel(f.xds, Some(&e1)).await.expect("connect"))
        .stream_metrics(ReceiverStream::new(rx))
        .await
        .expect_err("stats from a wrong identity");
    assert_eq!(sink.code(), Code::PermissionDenied, "{sink:?}");
    assert!(
        sink.message()
            .contains("allows fleet \"edge\", node \"e1\""),
        "{sink:?}"
    );

    // Through all of it, the legitimate Envoy keeps getting updates, and flotilla is healthy.
    envoy
        .wait_listener(add_listener(&f, listen, &backend))
        .await;
    assert!(f.get("/readyz").await.status().is_success());
    assert!(
        f.log().contains("wrong_fleet"),
        "refusals are logged with their reason"
    );
}

#[tokio::test]
async fn the_admin_api_beyond_loopback_speaks_tls_and_reads_need_the_token() {
    let pki = CertsDir::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("flotilla.yaml");
    std::fs::write(&config, configs::web(free_addr(), "127.0.0.1:8081")).expect("config");
    let log_path = dir.path().join("flotilla.log");
    let log = std::fs::File::create(&log_path).expect("log");
    // Beyond loopback: every address of the machine, reached here through 127.0.0.1.
    let port = free_addr().port();
    let xds_port = free_addr().port();
    let _flotilla = tokio::process::Command::new(crate::support::flotilla_bin())
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .args(["--xds-listen", &format!("0.0.0.0:{xds_port}")])
        .args(["--admin-listen", &format!("0.0.0.0:{port}")])
        .args(["--admin-tls-cert", &pki.path("server.pem")])
        .args(["--admin-tls-key", &pki.path("server.key")])
        .args(["--admin-token", "s3cret"])
        .arg("--state-file")
        .arg(dir.path().join("state.json"))
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn flotilla");
    let admin: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let ca = pki.path("ca.pem");
    wait::until("admin over TLS", Duration::from_secs(20), || async {
        https_get(admin, &ca, "/readyz", None)
            .await
            .ok()
            .filter(|(status, _)| *status == 200)
    })
    .await;

    let get = |path: &'static str, token: Option<&'static str>| {
        let ca = ca.clone();
        async move { https_get(admin, &ca, path, token).await.expect("https") }
    };
    assert_eq!(get("/healthz", None).await.0, 200, "probes stay open");
    let (status, body) = get("/api/v1/state", None).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("--admin-public-read"), "{body}");
    assert_eq!(get("/metrics", Some("wrong")).await.0, 401);
    let (status, body) = get("/api/v1/state", Some("s3cret")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"web\""), "{body}");

    // flotilla status over TLS: the CA and the token, or exit 2 with the reason.
    let status = |extra: &[&str]| {
        let mut args = vec!["status", "--admin"];
        let url = format!("https://{admin}");
        args.push(&url);
        args.extend_from_slice(extra);
        std::process::Command::new(crate::support::flotilla_bin())
            .args(&args)
            .output()
            .expect("flotilla status")
    };
    let out = status(&["--admin-ca", &ca, "--admin-token", "s3cret", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = status(&["--admin-ca", &ca]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{out:?}"
    );
    let out = status(&["--admin-token", "s3cret"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "no CA: the certificate is not trusted: {out:?}"
    );

    // Plain HTTP to the TLS port gets no answer.
    let plain = reqwest::get(format!("http://{admin}/healthz")).await;
    assert!(plain.is_err(), "{plain:?}");

    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        log.contains("the xDS port listens beyond loopback without TLS"),
        "a warning for the plaintext xDS port: {log}"
    );
    assert!(
        !log.contains("the admin API listens beyond loopback without TLS"),
        "no warning for the TLS admin port: {log}"
    );
}

#[tokio::test]
async fn registrations_over_mtls_need_an_identity_of_the_trust_domain() {
    use flotilla::registry::client::{Client, ClientError};
    use flotilla::registry::proto::Endpoint;
    use flotilla::tls::ClientTls;

    let pki = CertsDir::new();
    let backend = Backend::start("instance").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("flotilla.yaml");
    std::fs::write(
        &config,
        format!(
            "version: 1\nclusters:\n  pool: {{ endpoints: [], registrations: {{ from: [edge] }} }}\nlisteners:\n  public:\n    address: {}\n    routes: [ {{ to: pool }} ]\n",
            free_addr()
        ),
    )
    .expect("config");
    let flags = pki.serve_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let f = Flotilla::start_with(dir, config, &flags).await;
    f.wait_ready().await;

    let tls = |pair: (String, String)| ClientTls {
        ca: Some(pki.path("ca.pem").into()),
        cert_and_key: Some((pair.0.into(), pair.1.into())),
    };
    let instance = Endpoint {
        cluster: "pool".into(),
        address: backend.address(),
        weight: 1,
        ..Default::default()
    };
    let mut client = Client::connect_with(&f.xds.to_string(), Some(&tls(pki.issue("edge", None))))
        .await
        .expect("a fleet identity may register");
    // Another fleet's identity may not register into `pool` (registrations.from: [edge]).
    let mut other = Client::connect_with(&f.xds.to_string(), Some(&tls(pki.issue("batch", None))))
        .await
        .expect("a stream of another fleet opens");
    match other.register(instance.clone()).await {
        Err(ClientError::Rejected { code, message }) => {
            assert_eq!(code, "PERMISSION_DENIED", "{message}");
            assert!(message.contains("registrations.from"), "{message}");
        }
        other => panic!("another fleet registered: {other:?}"),
    }
    client.register(instance.clone()).await.expect("registered");
    wait::until(
        "the registration is served",
        Duration::from_secs(10),
        || async {
            let state = f.json("/api/v1/state").await.to_string();
            state.contains(&backend.address()).then_some(())
        },
    )
    .await;

    let refused =
        Client::connect_with(&f.xds.to_string(), Some(&tls(pki.issue_without_identity())))
            .await
            .err()
            .expect("a certificate without an identity may not register");
    let ClientError::Status(status) = &refused else {
        panic!("{refused}");
    };
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains(
            "registration needs a client certificate with a spiffe://flotilla.local/fleet/"
        ),
        "{status:?}"
    );
    assert!(rejected(&f, "no_identity").await >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proxyless_grpc_client_takes_its_config_over_mtls() {
    use crate::support::grpc::{GrpcBackends, GrpcClient};
    let pki = CertsDir::new();
    let backends = GrpcBackends::start(&["a", "b"]).await;
    let target = "greeter.test:50051";
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("flotilla.yaml");
    std::fs::write(
        &config,
        format!(
            "version: 1\nclusters:\n  greeter: {{ endpoints: [{}, {}] }}\nlisteners:\n  \"{target}\":\n    proxyless_grpc: true\n    routes:\n      - {{ match: {{ prefix: / }}, to: greeter, timeout: 5s }}\n",
            backends.address("a"),
            backends.address("b"),
        ),
    )
    .expect("config");
    let flags = pki.serve_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let f = Flotilla::start_with(dir, config, &flags).await;
    f.wait_ready().await;
    // gRFC A65 `tls` channel credentials from `bootstrap --grpc --xds-ca/--xds-cert/--xds-key`.
    let mut client = GrpcClient::start_with(
        &f,
        "grpc-client-1",
        target,
        &pki.bootstrap_flags("default", "grpc-client-1"),
    )
    .await;
    client.wait_ready().await;
    let calls = client.calls(20, &[]).await;
    assert_eq!(calls.failures, 0, "{calls:?}");
    assert_eq!(calls.to("a") + calls.to("b"), 20, "{calls:?}");
    let nodes = f.json("/api/v1/nodes").await.to_string();
    assert!(
        nodes.contains("spiffe://flotilla.local/fleet/default/node/grpc-client-1"),
        "the client's node is bound to its certificate: {nodes}"
    );
}

#[tokio::test]
async fn a_dns_name_matching_the_identity_pattern_names_the_fleet() {
    let pki = CertsDir::new();
    let pattern = ["--identity-dns-pattern", "{node}.{fleet}.envoy.example.com"];
    let (f, backend, listen) = start_web(&pki, &pattern).await;

    // A real Envoy whose certificate carries only the DNS name e1.edge.envoy.example.com
    // (mixed case: DNS names are case-insensitive) is served as node e1 of fleet edge.
    let e1 = pki.issue_dns("E1.edge.Envoy.example.com");
    let envoy =
        Envoy::start_with(&f, "e1", "edge", Xds::Sotw, &pki.bootstrap_flags_with(&e1)).await;
    envoy.wait_listener(listen).await;
    let nodes = f.json("/api/v1/nodes").await.to_string();
    assert!(
        nodes.contains("\"identity\":\"e1.edge.envoy.example.com\""),
        "the node is bound to its DNS name: {nodes}"
    );

    // A real Envoy of fleet mesh presenting a DNS name of fleet edge gets nothing.
    let m1 = pki.issue_dns("m1.edge.envoy.example.com");
    let intruder =
        Envoy::start_with(&f, "m1", "mesh", Xds::Sotw, &pki.bootstrap_flags_with(&m1)).await;
    wait::until(
        "the Envoy of another fleet is refused",
        Duration::from_secs(20),
        || async { (rejected(&f, "wrong_fleet").await >= 1).then_some(()) },
    )
    .await;
    let updates = intruder.stat("cluster_manager.cds.update_success").await;
    assert!(
        matches!(updates, None | Some(0)),
        "the intruder got clusters: {updates:?}"
    );
    // The same claim over gRPC shows the status: PERMISSION_DENIED saying what the name allows.
    let channel = pki.channel(f.xds, Some(&m1)).await.expect("mTLS connect");
    let message = permission_denied(channel, node("m1", "mesh")).await;
    assert!(
        message.contains("allows fleet \"edge\", node \"m1\" (DNS name m1.edge.envoy.example.com)"),
        "{message}"
    );
    // A wildcard name allows nothing.
    let wildcard = pki.issue_dns("*.edge.envoy.example.com");
    let channel = pki
        .channel(f.xds, Some(&wildcard))
        .await
        .expect("mTLS connect");
    let message = permission_denied(channel, node("e5", "edge")).await;
    assert!(message.contains("allows nothing"), "{message}");
    assert!(rejected(&f, "no_identity").await >= 1);

    // The legitimate Envoy keeps getting updates.
    envoy
        .wait_listener(add_listener(&f, listen, &backend))
        .await;
}
