//! The service mesh, part 1 (issue 22), with real Envoy sidecars: frontend → orders →
//! payments (two payments instances), every hop mutual TLS with workload certificates
//! flotilla mints, `allow` rules enforced by Envoy's RBAC, instances that join their service
//! while their sidecar is connected, and certificate and CA rotations that fail no request.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::backend::Backend;
use crate::support::envoy::Envoy;
use crate::support::flotilla::Flotilla;
use crate::support::mesh::{Load, MeshCa, envoy_certs, serve_flags, sidecar, until_ok};
use crate::support::pki::certs_dir::CertsDir;
use crate::support::{client, free_addr, wait};

/// Local (outbound) ports the apps dial, and the sidecars' inbound addresses.
struct Ports {
    orders_to_payments: SocketAddr,
    frontend_to_orders: SocketAddr,
    frontend_to_payments: SocketAddr,
    payments_1: SocketAddr,
    payments_2: SocketAddr,
    orders_1: SocketAddr,
}

impl Ports {
    fn new() -> Ports {
        Ports {
            orders_to_payments: free_addr(),
            frontend_to_orders: free_addr(),
            frontend_to_payments: free_addr(),
            payments_1: free_addr(),
            payments_2: free_addr(),
            orders_1: free_addr(),
        }
    }
}

fn config(p: &Ports, payments: &Backend, orders: &Backend, ttl: &str) -> String {
    format!(
        "version: 1
mesh:
  certificate_ttl: {ttl}
  default: deny
  services:
    payments: {{ port: {pay}, protocol: http }}
    orders:
      port: {ord}
      calls: {{ payments: {o2p} }}
    frontend:
      calls: {{ orders: {f2o}, payments: {f2p} }}
  allow:
    - {{ from: orders, to: payments, methods: [GET, POST], paths: [/charge*] }}
    - {{ from: frontend, to: orders }}
",
        pay = payments.addr.port(),
        ord = orders.addr.port(),
        o2p = p.orders_to_payments.port(),
        f2o = p.frontend_to_orders.port(),
        f2p = p.frontend_to_payments.port(),
    )
}

struct Mesh {
    pki: CertsDir,
    ca: MeshCa,
    f: Flotilla,
    ports: Ports,
    payments: Backend,
    _orders: Backend,
    payments_1: Envoy,
    payments_2: Envoy,
    orders_1: Envoy,
    frontend_1: Envoy,
}

async fn start(ttl: &str) -> Mesh {
    let pki = CertsDir::new();
    let ca = MeshCa::new();
    // The files flotilla reads, apart from the CA's own: a rotation rewrites them.
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key) = (
        dir.path().join("mesh-ca.pem"),
        dir.path().join("mesh-ca.key"),
    );
    std::fs::write(&cert, ca.cert_pem()).expect("write");
    std::fs::write(&key, ca.key_pem()).expect("write");
    let payments = Backend::start("payments").await;
    let orders = Backend::start("orders").await;
    let ports = Ports::new();
    let config_path = dir.path().join("flotilla.yaml");
    std::fs::write(&config_path, config(&ports, &payments, &orders, ttl)).expect("config");
    let flags = serve_flags(&pki, cert.to_str().unwrap(), key.to_str().unwrap());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let f = Flotilla::start_with(dir, config_path, &flags).await;
    f.wait_ready().await;
    let payments_1 = sidecar(&f, &pki, "payments", "payments-1", Some(ports.payments_1)).await;
    let payments_2 = sidecar(&f, &pki, "payments", "payments-2", Some(ports.payments_2)).await;
    let orders_1 = sidecar(&f, &pki, "orders", "orders-1", Some(ports.orders_1)).await;
    let frontend_1 = sidecar(&f, &pki, "frontend", "frontend-1", None).await;
    payments_1.wait_listener(ports.payments_1).await;
    payments_2.wait_listener(ports.payments_2).await;
    orders_1.wait_listener(ports.orders_1).await;
    frontend_1.wait_listener(ports.frontend_to_orders).await;
    orders_1.wait_listener(ports.orders_to_payments).await;
    Mesh {
        pki,
        ca,
        f,
        ports,
        payments,
        _orders: orders,
        payments_1,
        payments_2,
        orders_1,
        frontend_1,
    }
}

fn xfcc(reply: &client::Reply) -> String {
    reply
        .headers
        .get("seen-x-forwarded-client-cert")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn three_services_call_each_other_over_mtls_with_rules() {
    let m = start("24h").await;
    let http = client::http();
    let f2o = format!("http://{}/hello", m.ports.frontend_to_orders);
    let o2p = format!("http://{}/charge", m.ports.orders_to_payments);
    until_ok(&f2o).await;
    until_ok(&o2p).await;

    // frontend → orders: the callee sees the caller's SPIFFE ID, set by its own sidecar.
    let r = client::get_with(&http, &f2o, &[("x-forwarded-client-cert", "By=forged")])
        .await
        .unwrap();
    assert_eq!((r.status, r.backend.as_str()), (200, "orders"));
    let seen = xfcc(&r);
    assert!(
        seen.contains("URI=spiffe://flotilla.local/service/frontend") && !seen.contains("forged"),
        "{seen}"
    );
    assert!(
        seen.contains("By=spiffe://flotilla.local/service/orders"),
        "{seen}"
    );
    // orders → payments, on an allowed path and method.
    let r = client::get_with(&http, &o2p, &[]).await.unwrap();
    assert_eq!((r.status, r.backend.as_str()), (200, "payments"));
    assert!(
        xfcc(&r).contains("URI=spiffe://flotilla.local/service/orders"),
        "{}",
        xfcc(&r)
    );

    // Both payments instances are endpoints of payments in orders' sidecar.
    wait::until(
        "orders' sidecar holds both payments instances",
        Duration::from_secs(20),
        || async {
            let c = m.orders_1.clusters().await;
            (c.contains(&format!(
                "mesh-call:orders:payments::{}::",
                m.ports.payments_1
            )) && c.contains(&format!(
                "mesh-call:orders:payments::{}::",
                m.ports.payments_2
            )))
            .then_some(())
        },
    )
    .await;

    // No rule lets frontend call payments: 403, counted by payments' sidecars.
    let denied_before = denied(&m).await;
    let r = client::get_with(
        &http,
        &format!("http://{}/charge", m.ports.frontend_to_payments),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 403);
    // orders may call payments on /charge* only.
    let r = client::get_with(
        &http,
        &format!("http://{}/refund", m.ports.orders_to_payments),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 403);
    // RBAC reads the path the app acts on: `/charge/../refund` is `/refund` (it passed the
    // `/charge*` rule and reached payments before), an escaped slash is refused.
    let hits = m.payments.hits();
    for (path, want) in [("/charge/../refund", 403), ("/charge/..%2frefund", 400)] {
        let mut c = tokio::net::TcpStream::connect(m.ports.orders_to_payments)
            .await
            .expect("connect");
        let status = crate::support::conn::status_on(&mut c, path).await;
        assert_eq!(status, want, "{path}");
    }
    assert_eq!(m.payments.hits(), hits);
    wait::until(
        "2 more denied calls counted",
        Duration::from_secs(10),
        || async { (denied(&m).await >= denied_before + 2).then_some(()) },
    )
    .await;
    // The sidecars' stats reach flotilla: the decisions are flotilla's own series.
    wait::until(
        "denied calls into payments in flotilla's /metrics",
        Duration::from_secs(30),
        || async {
            let text = m.f.text("/metrics").await;
            let denied = text
                .lines()
                .find_map(|l| {
                    l.strip_prefix(
                        "flotilla_mesh_calls_total{service=\"payments\",decision=\"denied\"} ",
                    )
                })
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
            (denied >= 2).then_some(())
        },
    )
    .await;
    assert!(m.payments.hits() > 0);

    // The mesh graph: each call is an edge with its caller's request rate and success rate
    // (its sidecar's stats on its cluster of that call) and the calls from it the callee's
    // sidecars denied (their per-caller shadow rules).
    let load = Load::start(o2p.clone());
    let graph = wait::until(
        "rates and denied calls on the edges of /api/v1/mesh/graph",
        Duration::from_secs(30),
        || async {
            let g = m.f.json("/api/v1/mesh/graph").await;
            let edge = |from: &str, to: &str| {
                g["edges"]
                    .as_array()?
                    .iter()
                    .find(|e| e["from"] == from && e["to"] == to)
                    .cloned()
            };
            let (o2p, f2p) = (edge("orders", "payments")?, edge("frontend", "payments")?);
            (o2p["rps"].as_f64()? > 0.0
                && o2p["success_rate"].as_f64()? == 1.0
                && o2p["denied"].as_u64()? >= 1
                && f2p["denied"].as_u64()? >= 1)
                .then_some(g)
        },
    )
    .await;
    let (sent, failed, last) = load.stop().await;
    assert!(sent > 0 && failed == 0, "{failed} of {sent} failed: {last}");
    let f2o = graph["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["from"] == "frontend" && e["to"] == "orders")
        .unwrap();
    assert_eq!(f2o["denied"], 0, "{graph}");
    assert_eq!(f2o["via"], "port", "{graph}");
    // The traffic view holds the call clusters by their names (Envoy's stats spell them
    // with `_` for `:`).
    let traffic = m.f.json("/api/v1/traffic").await;
    assert!(
        traffic["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "mesh-call:orders:payments"),
        "{traffic}"
    );

    // Plaintext to an inbound port is refused (no TLS, no request reaches the app).
    let hits = m.payments.hits();
    let plain = http
        .get(format!("http://{}/charge", m.ports.payments_1))
        .send()
        .await;
    assert!(plain.is_err() || plain.is_ok_and(|r| r.status() != 200));
    assert_eq!(m.payments.hits(), hits);

    // A sidecar of orders cannot get payments' certificate: its xDS certificate names orders.
    let before = rejected(&m.f, "wrong_fleet").await;
    let orders_cert = m.pki.issue("orders", None);
    let channel = m
        .pki
        .channel(m.f.xds, Some(&orders_cert))
        .await
        .expect("channel");
    let status = claim(channel, "payments-x", "payments")
        .await
        .expect_err("refused");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert_eq!(rejected(&m.f, "wrong_fleet").await, before + 1);

    // A sidecar of payments cannot make an Envoy admin interface (its own, or a connected
    // one's) or one of flotilla's own ports an instance of payments.
    let payments_cert = m.pki.issue("payments", None);
    for (own_admin, inbound, want) in [
        (
            "127.0.0.1:19901",
            "127.0.0.1:19901".to_string(),
            "admin interface",
        ),
        (
            "127.0.0.1:19902",
            m.payments_1.admin.to_string(),
            "admin interface",
        ),
        ("127.0.0.1:19903", m.f.admin.to_string(), "flotilla's own"),
        ("127.0.0.1:19904", m.f.xds.to_string(), "flotilla's own"),
    ] {
        let channel = m
            .pki
            .channel(m.f.xds, Some(&payments_cert))
            .await
            .expect("channel");
        let status = announce(channel, "payments-x", own_admin, &inbound)
            .await
            .expect_err("refused");
        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
        assert!(status.message().contains(want), "{status:?}");
    }

    // The admin API lists the mesh.
    let api = m.f.json("/api/v1/mesh").await;
    let services = api["services"].as_array().expect("services");
    assert_eq!(services.len(), 3, "{api}");
    let payments = services.iter().find(|s| s["name"] == "payments").unwrap();
    assert_eq!(payments["instances"].as_array().unwrap().len(), 2, "{api}");
    assert_eq!(
        payments["identity"]["spiffe_id"],
        "spiffe://flotilla.local/service/payments"
    );
    assert!(!api.to_string().contains("PRIVATE KEY"));
}

/// Opens an ADS stream claiming node `id` of `fleet`: its first response, or its error.
async fn claim(
    channel: tonic::transport::Channel,
    id: &str,
    fleet: &str,
) -> Result<(), tonic::Status> {
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
    use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(DiscoveryRequest {
        type_url: "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret".into(),
        resource_names: vec!["mesh-workload:payments".into()],
        node: Some(envoy_types::pb::envoy::config::core::v3::Node {
            id: id.into(),
            cluster: fleet.into(),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .expect("queue request");
    let mut responses = AggregatedDiscoveryServiceClient::new(channel)
        .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let got = tokio::time::timeout(Duration::from_secs(10), responses.message())
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("no response within 10 s"))?;
    got.map(|_| ())
}

/// Opens an ADS stream of a payments sidecar announcing its admin and inbound addresses.
async fn announce(
    channel: tonic::transport::Channel,
    id: &str,
    admin: &str,
    inbound: &str,
) -> Result<(), tonic::Status> {
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
    use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
    use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
    let text = |s: &str| Value {
        kind: Some(Kind::StringValue(s.to_string())),
    };
    let metadata = Struct {
        fields: [
            ("flotilla.admin_address".to_string(), text(admin)),
            ("flotilla.inbound".to_string(), text(inbound)),
        ]
        .into_iter()
        .collect(),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(DiscoveryRequest {
        type_url: "type.googleapis.com/envoy.config.listener.v3.Listener".into(),
        node: Some(envoy_types::pb::envoy::config::core::v3::Node {
            id: id.into(),
            cluster: "payments".into(),
            metadata: Some(metadata),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .expect("queue request");
    let mut responses = AggregatedDiscoveryServiceClient::new(channel)
        .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let got = tokio::time::timeout(Duration::from_secs(10), responses.message())
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("no response within 10 s"))?;
    got.map(|_| ())
}

async fn denied(m: &Mesh) -> u64 {
    let mut n = 0;
    for e in [&m.payments_1, &m.payments_2] {
        n += e
            .stat("http.mesh_inbound_payments.rbac.denied")
            .await
            .unwrap_or(0);
    }
    n
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

/// The serial number of the certificate an Envoy presents (its workload certificate).
async fn workload_serial(envoy: &Envoy) -> Option<String> {
    let certs = envoy_certs(envoy).await;
    certs["certificates"]
        .as_array()?
        .iter()
        .flat_map(|c| c["cert_chain"].as_array().into_iter().flatten())
        .find(|c| {
            c["subject_alt_names"].as_array().is_some_and(|s| {
                s.iter()
                    .any(|n| n["uri"].as_str().is_some_and(|u| u.contains("/service/")))
            })
        })
        .and_then(|c| c["serial_number"].as_str().map(str::to_string))
}

async fn issued(f: &Flotilla, reason: &str) -> u64 {
    f.text("/metrics")
        .await
        .lines()
        .filter(|l| {
            l.starts_with("flotilla_mesh_workload_certificates_issued_total{")
                && l.contains(&format!("reason=\"{reason}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn certificates_and_the_ca_rotate_under_load_without_a_failed_request() {
    // 1m is the shortest lifetime the config accepts: renewal at 30 s.
    let m = start("1m").await;
    let o2p = format!("http://{}/charge", m.ports.orders_to_payments);
    let f2o = format!("http://{}/hello", m.ports.frontend_to_orders);
    until_ok(&o2p).await;
    until_ok(&f2o).await;
    let load = [Load::start(o2p.clone()), Load::start(f2o.clone())];
    let first = workload_serial(&m.payments_1)
        .await
        .expect("a workload certificate");

    // Half-life renewal reaches the sidecars.
    wait::until(
        "payments' certificate renewed at half life",
        Duration::from_secs(60),
        || async {
            let now = workload_serial(&m.payments_1).await?;
            (now != first && issued(&m.f, "half_life").await >= 3).then_some(())
        },
    )
    .await;

    // CA rotation: the new CA is trusted beside the old one, then signs, then the old goes.
    let (cert, key) = (m.f.dir().join("mesh-ca.pem"), m.f.dir().join("mesh-ca.key"));
    let new = MeshCa::new();
    std::fs::write(&cert, m.ca.cert_pem() + &new.cert_pem()).unwrap();
    wait::until(
        "every sidecar trusts both CAs",
        Duration::from_secs(20),
        || async {
            (trusted(&m.orders_1).await >= 2 && trusted(&m.payments_1).await >= 2).then_some(())
        },
    )
    .await;
    let before = issued(&m.f, "new_signer").await;
    let sidecars = [&m.payments_1, &m.payments_2, &m.orders_1, &m.frontend_1];
    let mut held = Vec::new();
    for e in sidecars {
        held.push(workload_serial(e).await);
    }
    // Key first would not match the old first certificate: both files change, and a pair
    // that does not belong together in between is refused (the last good CA keeps signing).
    std::fs::write(&key, new.key_pem()).unwrap();
    std::fs::write(&cert, new.cert_pem() + &m.ca.cert_pem()).unwrap();
    wait::until(
        "leaves re-issued by the new CA",
        Duration::from_secs(20),
        || async { (issued(&m.f, "new_signer").await >= before + 3).then_some(()) },
    )
    .await;
    // Give every sidecar the new leaves before the old CA goes.
    wait::until(
        "sidecars hold leaves of the new CA",
        Duration::from_secs(20),
        || async {
            for (e, was) in sidecars.iter().zip(&held) {
                if workload_serial(e).await == *was {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    std::fs::write(&cert, new.cert_pem()).unwrap();
    wait::until(
        "the old CA is no longer trusted",
        Duration::from_secs(20),
        || async {
            (trusted(&m.orders_1).await == 1 && trusted(&m.payments_1).await == 1).then_some(())
        },
    )
    .await;
    // Calls keep working with the new CA alone.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for l in load {
        let (sent, failed, last) = l.stop().await;
        assert!(sent > 100, "only {sent} requests sent");
        assert_eq!(failed, 0, "{failed} of {sent} failed; last: {last}");
    }
}

/// How many CA certificates Envoy holds in the mesh's trust bundle (the `ca_cert` entries of
/// /certs sent inline, which leaves out the xDS connection's CA file).
async fn trusted(envoy: &Envoy) -> usize {
    let certs = envoy_certs(envoy).await;
    let mut serials = std::collections::BTreeSet::new();
    for c in certs["certificates"].as_array().into_iter().flatten() {
        for ca in c["ca_cert"].as_array().into_iter().flatten() {
            if ca["path"] != "<inline>" {
                continue;
            }
            if let Some(s) = ca["serial_number"].as_str() {
                serials.insert(s.to_string());
            }
        }
    }
    serials.len()
}

#[tokio::test]
async fn a_killed_instance_fails_no_call() {
    let mut m = start("24h").await;
    let o2p = format!("http://{}/charge", m.ports.orders_to_payments);
    until_ok(&o2p).await;
    wait::until(
        "orders' sidecar holds both payments instances",
        Duration::from_secs(20),
        || async {
            let c = m.orders_1.clusters().await;
            (c.contains(&format!(
                "mesh-call:orders:payments::{}::",
                m.ports.payments_1
            )) && c.contains(&format!(
                "mesh-call:orders:payments::{}::",
                m.ports.payments_2
            )))
            .then_some(())
        },
    )
    .await;
    let load = Load::start(o2p.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    m.payments_2.kill().await;
    wait::until(
        "payments-2 leaves orders' sidecar",
        Duration::from_secs(30),
        || async {
            let c = m.orders_1.clusters().await;
            (!c.contains(&format!(
                "mesh-call:orders:payments::{}::",
                m.ports.payments_2
            )))
            .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (sent, failed, last) = load.stop().await;
    assert!(sent > 20, "only {sent} requests sent");
    assert_eq!(failed, 0, "{failed} of {sent} failed; last: {last}");
    let api = m.f.json("/api/v1/mesh").await;
    let payments = api["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "payments")
        .cloned()
        .unwrap();
    assert_eq!(payments["instances"].as_array().unwrap().len(), 1, "{api}");
}

/// Runs `flotilla serve` expecting it to refuse to start: its exit status and log.
async fn refused_start(config: &str, flags: &[String]) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("flotilla.yaml");
    std::fs::write(&path, config).expect("config");
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new(crate::support::flotilla_bin())
            .arg("serve")
            .arg("--config")
            .arg(&path)
            .args(["--xds-listen", &free_addr().to_string()])
            .args(["--admin-listen", &free_addr().to_string()])
            .arg("--state-file")
            .arg(dir.path().join("state.json"))
            .args(flags)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("serve exits by itself")
    .expect("run serve");
    (out.status, String::from_utf8_lossy(&out.stderr).to_string())
}

#[tokio::test]
async fn serve_refuses_a_mesh_it_cannot_secure() {
    let pki = CertsDir::new();
    let ca = MeshCa::new();
    let other = MeshCa::new();
    let yaml = "version: 1\nmesh:\n  services:\n    payments: { port: 9090 }\n";
    let (ca_cert, ca_key) = (ca.cert.to_str().unwrap(), ca.key.to_str().unwrap());

    // A mesh config without a CA to sign its certificates.
    let (status, log) = refused_start(yaml, &pki.serve_flags()).await;
    assert!(!status.success());
    assert!(log.contains("--mesh-ca-cert and --mesh-ca-key"), "{log}");

    // A mesh CA on an xDS port that does not authenticate its clients.
    let flags = vec![
        "--mesh-ca-cert".to_string(),
        ca_cert.to_string(),
        "--mesh-ca-key".into(),
        ca_key.to_string(),
    ];
    let (status, log) = refused_start(yaml, &flags).await;
    assert!(!status.success());
    assert!(
        log.contains("without client-certificate authentication"),
        "{log}"
    );

    // A CA key that is not the CA certificate's.
    let flags = serve_flags(&pki, ca_cert, other.key.to_str().unwrap());
    let (status, log) = refused_start(yaml, &flags).await;
    assert!(!status.success());
    assert!(
        log.contains("is not the key of the first certificate"),
        "{log}"
    );
}

#[tokio::test]
async fn a_mismatched_ca_on_reload_is_refused_and_the_last_good_one_signs_on() {
    let pki = CertsDir::new();
    let ca = MeshCa::new();
    let other = MeshCa::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key) = (
        dir.path().join("mesh-ca.pem"),
        dir.path().join("mesh-ca.key"),
    );
    std::fs::write(&cert, ca.cert_pem()).unwrap();
    std::fs::write(&key, ca.key_pem()).unwrap();
    let config = dir.path().join("flotilla.yaml");
    std::fs::write(
        &config,
        "version: 1\nmesh:\n  services:\n    payments: { port: 9090 }\n",
    )
    .unwrap();
    let flags = serve_flags(&pki, cert.to_str().unwrap(), key.to_str().unwrap());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let f = Flotilla::start_with(dir, config, &flags).await;
    f.wait_ready().await;
    let identity = || async {
        let api = f.json("/api/v1/mesh").await;
        api["services"][0]["identity"]["sha256"]
            .as_str()
            .map(str::to_string)
    };
    let first = wait::until("payments' identity", Duration::from_secs(10), identity).await;
    std::fs::write(&key, other.key_pem()).unwrap();
    wait::until(
        "the mismatched CA refused",
        Duration::from_secs(10),
        || async {
            f.text("/metrics")
                .await
                .lines()
                .any(|l| l == "flotilla_mesh_ca_rejected_total 1")
                .then_some(())
        },
    )
    .await;
    assert_eq!(identity().await, Some(first));
    assert!(f.log().contains("still signing with the last good CA"));
}

#[tokio::test]
async fn a_grpc_service_in_the_mesh() {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let pki = CertsDir::new();
    let ca = MeshCa::new();
    let greeter = crate::support::grpc::GrpcBackends::start(&["greeter"]).await;
    let port: u16 = greeter
        .address("greeter")
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let (local, inbound) = (free_addr(), free_addr());
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("flotilla.yaml");
    std::fs::write(
        &config,
        format!(
            "version: 1
mesh:
  services:
    greeter: {{ port: {port}, protocol: grpc }}
    caller: {{ calls: {{ greeter: {local} }} }}
  allow:
    - {{ from: caller, to: greeter, paths: [/grpc.health.v1.Health/Check] }}
",
            local = local.port()
        ),
    )
    .unwrap();
    let flags = serve_flags(&pki, ca.cert.to_str().unwrap(), ca.key.to_str().unwrap());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let f = Flotilla::start_with(dir, config, &flags).await;
    f.wait_ready().await;
    let server = sidecar(&f, &pki, "greeter", "greeter-1", Some(inbound)).await;
    let caller = sidecar(&f, &pki, "caller", "caller-1", None).await;
    server.wait_listener(inbound).await;
    caller.wait_listener(local).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{local}"))
        .unwrap()
        .connect_lazy();
    let mut client = HealthClient::new(channel);
    // Allowed: Check, over h2 and mTLS through both sidecars.
    let status = wait::until("a Check through the mesh", Duration::from_secs(30), || {
        let mut c = client.clone();
        async move {
            c.check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .ok()
        }
    })
    .await;
    assert_eq!(status.into_inner().status, 1, "SERVING");
    // Not allowed: Watch, another method of the same service.
    let denied = client
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|_| ())
        .expect_err("Watch is not allowed");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
}

#[tokio::test]
async fn the_dashboard_shows_the_mesh() {
    use crate::support::browser::{Browser, js_string};

    let m = start("24h").await;
    let f2p = format!("http://{}/charge", m.ports.frontend_to_payments);
    until_ok(&format!("http://{}/charge", m.ports.orders_to_payments)).await;
    let http = client::http();
    for _ in 0..3 {
        let r = client::get_with(&http, &f2p, &[]).await.unwrap();
        assert_eq!(r.status, 403);
    }
    let b = Browser::start("mesh").await;
    b.goto(&format!("http://{}/", m.f.admin)).await;
    let payments = js_string("#mesh li[data-service=\"payments\"]");
    b.wait_for(
        "payments with its 2 instances and denied calls on the dashboard",
        Duration::from_secs(40),
        &format!(
            "const e = document.querySelector({payments}); \
             return !!e && !document.querySelector('#mesh-panel').hidden \
               && e.textContent.includes('2/2 instances') \
               && e.textContent.includes('spiffe://flotilla.local/service/payments') \
               && Number(e.dataset.denied) >= 3;"
        ),
    )
    .await;
    let frontend = b
        .js(&format!(
            "return document.querySelector({}).textContent;",
            js_string("#mesh li[data-service=\"frontend\"]")
        ))
        .await;
    assert!(frontend.to_string().contains("caller only"), "{frontend}");

    // The service graph: services as boxes, calls as arrows with their rates and the calls
    // the callee denied to that caller.
    let load = Load::start(format!("http://{}/charge", m.ports.orders_to_payments));
    let edge = |from: &str, to: &str| {
        js_string(&format!(
            "#mesh-graph g.edge[data-from=\"{from}\"][data-to=\"{to}\"]"
        ))
    };
    let (o2p, f2p, f2o) = (
        edge("orders", "payments"),
        edge("frontend", "payments"),
        edge("frontend", "orders"),
    );
    b.wait_for(
        "the service graph with orders → payments busy and frontend → payments denied",
        Duration::from_secs(40),
        &format!(
            "const o = document.querySelector({o2p}), f = document.querySelector({f2p}); \
             return !document.querySelector('#mesh-graph-panel').hidden \
               && document.querySelectorAll('#mesh-graph g.gnode').length === 3 \
               && !!document.querySelector({f2o}) \
               && !!o && Number(o.dataset.rps) > 0 && Number(o.dataset.success) === 1 \
               && o.textContent.includes('req/s') && o.classList.contains('edge-ok') \
               && !!f && Number(f.dataset.denied) >= 3 && f.textContent.includes('denied') \
               && f.classList.contains('edge-bad');"
        ),
    )
    .await;
    let (sent, failed, last) = load.stop().await;
    assert!(sent > 0 && failed == 0, "{failed} of {sent} failed: {last}");
    b.screenshot(&crate::support::browser::artifacts_dir().join("dashboard-mesh.png"))
        .await;
}

#[tokio::test]
async fn a_mesh_added_on_reload_without_a_ca_is_refused_and_the_last_good_config_stays() {
    let backend = Backend::start("web").await;
    let listen = free_addr();
    let good = crate::support::configs::web(listen, &backend.address());
    let f = Flotilla::start(&good).await;
    f.wait_ready().await;
    let version = f.json("/api/v1/state").await["config"]["version"].clone();
    f.write_config(&format!(
        "{good}mesh:\n  services:\n    payments: {{ port: 9090 }}\n"
    ));
    wait::until(
        "the mesh config refused",
        Duration::from_secs(20),
        || async {
            let state = f.json("/api/v1/state").await;
            state["config"]["last_reload"]["errors"]
                .to_string()
                .contains("--mesh-ca-cert and --mesh-ca-key")
                .then_some(())
        },
    )
    .await;
    assert_eq!(f.json("/api/v1/state").await["config"]["version"], version);
}

#[tokio::test]
async fn a_tcp_service_in_the_mesh() {
    use crate::support::tcp::{TcpEcho, exchange};

    let pki = CertsDir::new();
    let ca = MeshCa::new();
    let db = TcpEcho::start("db").await;
    let port: u16 = db.address().rsplit(':').next().unwrap().parse().unwrap();
    let (allowed, denied, inbound) = (free_addr(), free_addr(), free_addr());
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("flotilla.yaml");
    std::fs::write(
        &config,
        format!(
            "version: 1
mesh:
  services:
    db: {{ port: {port}, protocol: tcp }}
    app: {{ calls: {{ db: {a} }} }}
    other: {{ calls: {{ db: {d} }} }}
  allow:
    - {{ from: app, to: db }}
",
            a = allowed.port(),
            d = denied.port()
        ),
    )
    .unwrap();
    let flags = serve_flags(&pki, ca.cert.to_str().unwrap(), ca.key.to_str().unwrap());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let f = Flotilla::start_with(dir, config, &flags).await;
    f.wait_ready().await;
    let server = sidecar(&f, &pki, "db", "db-1", Some(inbound)).await;
    let app = sidecar(&f, &pki, "app", "app-1", None).await;
    let other = sidecar(&f, &pki, "other", "other-1", None).await;
    server.wait_listener(inbound).await;
    app.wait_listener(allowed).await;
    other.wait_listener(denied).await;
    let reply = wait::until("a line through the mesh", Duration::from_secs(30), || {
        exchange(allowed, "hello")
    })
    .await;
    assert!(reply.contains("hello"), "{reply}");
    // No rule lets `other` call db: the connection is closed, and nothing echoes.
    assert_eq!(exchange(denied, "hello").await, None);
    wait::until(
        "the denied connection counted",
        Duration::from_secs(10),
        || async {
            (server
                .stat("mesh_inbound_db.rbac.denied")
                .await
                .unwrap_or(0)
                >= 1)
                .then_some(())
        },
    )
    .await;
    // Counted per caller too (the shadow rules of `other`), and so on the graph's edge.
    assert!(
        server
            .stat("mesh_inbound_db.rbac.mesh_from_other.shadow_denied")
            .await
            .unwrap_or(0)
            >= 1
    );
    assert_eq!(
        server
            .stat("mesh_inbound_db.rbac.mesh_from_app.shadow_denied")
            .await
            .unwrap_or(0),
        0
    );
    let g = wait::until(
        "the denied connection on the other → db edge",
        Duration::from_secs(30),
        || async {
            let g = f.json("/api/v1/mesh/graph").await;
            let denied = g["edges"]
                .as_array()?
                .iter()
                .find(|e| e["from"] == "other" && e["to"] == "db")?["denied"]
                .as_u64()?;
            (denied >= 1).then_some(g)
        },
    )
    .await;
    let app_edge = g["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["from"] == "app" && e["to"] == "db")
        .unwrap();
    assert_eq!(app_edge["denied"], 0, "{g}");
}
