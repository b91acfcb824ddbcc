//! The service mesh, part 2 (issue 23): transparent interception. In a network namespace the
//! test creates (loopback only), `flotilla sidecar iptables` redirects an unmodified client's
//! connections (curl, run as another UID than the proxy's) to its sidecar's outbound listener
//! (`flotilla bootstrap --transparent`), which sends calls to a service's VIP to that service
//! over mTLS, and other calls to their destination (`outbound: passthrough`) or nowhere
//! (`registry_only`). Removing the rules (`--clean`) restores direct traffic.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::backend::Backend;
use crate::support::envoy::{Envoy, Xds};
use crate::support::flotilla::Flotilla;
use crate::support::mesh::{MeshCa, serve_flags};
use crate::support::netns::{self, Netns};
use crate::support::pki::certs_dir::CertsDir;
use crate::support::wait;

/// The UID of the unmodified client: anyone but the proxy's (root here).
const APP_UID: u32 = 65534;
const PAYMENTS_VIP: &str = "127.240.0.2:80";
const LEDGER_VIP: &str = "127.240.0.3:80";
/// A server outside the mesh (no service's VIP).
const OUTSIDE: &str = "127.0.0.9:8080";

fn config(payments: &Backend, ledger: &Backend, outbound: &str) -> String {
    format!(
        "version: 1
mesh:
  default: deny
  outbound: {outbound}
  services:
    payments: {{ port: {pay}, vip: {PAYMENTS_VIP} }}
    ledger: {{ port: {led}, vip: {LEDGER_VIP} }}
    frontend: {{ calls: [payments, ledger] }}
  allow:
    - {{ from: frontend, to: payments }}
",
        pay = payments.addr.port(),
        led = ledger.addr.port(),
    )
}

/// What curl, run as [`APP_UID`], got: the status (None: no HTTP answer) and the headers.
#[derive(Debug)]
struct Curl {
    status: Option<u16>,
    head: String,
}

async fn curl(url: &str) -> Curl {
    let url = url.to_string();
    let out = tokio::task::spawn_blocking(move || {
        netns::run_as(APP_UID, "curl", &["-s", "-i", "-m", "5", &url])
    })
    .await
    .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok());
    Curl {
        status,
        head: text.to_ascii_lowercase(),
    }
}

async fn until_status(url: &str, want: Option<u16>) -> Curl {
    wait::until(
        &format!("{want:?} from {url}"),
        Duration::from_secs(30),
        || async {
            let c = curl(url).await;
            (c.status == want).then_some(c)
        },
    )
    .await
}

fn iptables(args: &[&str]) {
    let bin = netns::iptables_restore();
    let mut all = vec!["sidecar", "iptables", "--proxy-uid", "0"];
    all.extend(args);
    all.extend(["--apply", "--iptables-restore", &bin]);
    let flotilla = crate::support::flotilla_bin();
    netns::run_ok(flotilla.to_str().expect("path"), &all);
}

#[test]
fn an_unmodified_client_reaches_a_vip_through_transparent_sidecars() {
    // Everything the test starts lives in the namespace: its iptables rules never reach the
    // host.
    let ns = Netns::new(&[]);
    ns.run(transparent_mesh);
}

async fn transparent_mesh() {
    let pki = CertsDir::new();
    let ca = MeshCa::new();
    let payments = Backend::start("payments").await;
    let ledger = Backend::start("ledger").await;
    let outside = Backend::start_at("outside", OUTSIDE.parse().unwrap()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("flotilla.yaml");
    std::fs::write(&path, config(&payments, &ledger, "passthrough")).expect("config");
    let flags = serve_flags(&pki, ca.cert.to_str().unwrap(), ca.key.to_str().unwrap());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let f = Flotilla::start_with(dir, path, &flags).await;
    f.wait_ready().await;

    let inbound = |a: &str| a.parse::<SocketAddr>().unwrap();
    let sidecar = |service: &'static str, extra: Vec<String>| {
        let mut flags = pki.bootstrap_flags_with(&pki.issue(service, None));
        flags.extend(["--sidecar".to_string(), "--service".into(), service.into()]);
        flags.extend(extra);
        flags
    };
    let p = sidecar(
        "payments",
        vec!["--inbound".into(), "127.0.0.2:15006".into()],
    );
    let _payments_1 = Envoy::start_with(&f, "payments-1", "payments", Xds::Sotw, &p).await;
    let l = sidecar("ledger", vec!["--inbound".into(), "127.0.0.3:15006".into()]);
    let _ledger_1 = Envoy::start_with(&f, "ledger-1", "ledger", Xds::Sotw, &l).await;
    let fr = sidecar(
        "frontend",
        ["--no-inbound", "--transparent", "--outbound-port", "15001"]
            .map(String::from)
            .to_vec(),
    );
    let frontend_1 = Envoy::start_with(&f, "frontend-1", "frontend", Xds::Sotw, &fr).await;
    _payments_1.wait_listener(inbound("127.0.0.2:15006")).await;
    _ledger_1.wait_listener(inbound("127.0.0.3:15006")).await;
    frontend_1.wait_listener(inbound("127.0.0.1:15001")).await;
    // The sidecar holds a listener at each VIP its service calls, and none other.
    wait::until(
        "frontend's listeners at the VIPs",
        Duration::from_secs(30),
        || async {
            let l = frontend_1.admin_get("/listeners").await;
            (l.contains("mesh-vip:frontend:payments") && l.contains("mesh-vip:frontend:ledger"))
                .then_some(())
        },
    )
    .await;

    iptables(&["--outbound-port", "15001", "--exclude-ports", "22"]);

    // The client dials the VIP; its sidecar catches the call and sends it over mTLS: the
    // callee sees the caller's SPIFFE ID, set by the callee's sidecar from its certificate.
    let vip = format!("http://{PAYMENTS_VIP}/charge");
    let r = until_status(&vip, Some(200)).await;
    assert!(r.head.contains("x-backend: payments"), "{}", r.head);
    assert!(
        r.head.contains("seen-x-forwarded-client-cert") && r.head.contains("/service/frontend"),
        "{}",
        r.head
    );
    // A service frontend may not call: 403 from the callee's sidecar.
    let r = curl(&format!("http://{LEDGER_VIP}/")).await;
    assert_eq!(r.status, Some(403), "{}", r.head);
    assert_eq!(ledger.hits(), 0);

    // The mesh graph: an edge per call (through the VIP) with the caller's rate and success
    // rate; payments counts the call it allowed, ledger the one it denied, on its node and on
    // the frontend → ledger edge.
    let edge = wait::until(
        "the calls on /api/v1/mesh/graph",
        Duration::from_secs(30),
        || async {
            let _ = curl(&vip).await;
            let g = f.json("/api/v1/mesh/graph").await;
            let edge_to = |to: &str| {
                g["edges"]
                    .as_array()?
                    .iter()
                    .find(|e| e["from"] == "frontend" && e["to"] == to)
                    .cloned()
            };
            let (edge, to_ledger) = (edge_to("payments")?, edge_to("ledger")?);
            let ledger = g["nodes"]
                .as_array()?
                .iter()
                .find(|n| n["service"] == "ledger")?
                .clone();
            let payments = g["nodes"]
                .as_array()?
                .iter()
                .find(|n| n["service"] == "payments")?
                .clone();
            (payments["calls_in"]["allowed"].as_u64()? >= 1
                && ledger["calls_in"]["denied"].as_u64()? >= 1
                && to_ledger["denied"].as_u64()? >= 1
                && edge["rps"].as_f64()? > 0.0
                && edge["success_rate"].as_f64()? == 1.0
                && edge["denied"].as_u64()? == 0)
                .then_some(edge)
        },
    )
    .await;
    assert_eq!(edge["via"], "vip", "{edge}");

    // passthrough: another address is reached as dialled.
    let outside_url = format!("http://{OUTSIDE}/");
    let r = until_status(&outside_url, Some(200)).await;
    assert!(r.head.contains("x-backend: outside"), "{}", r.head);

    // registry_only: refused (no HTTP answer); the VIPs still work.
    f.write_config(&config(&payments, &ledger, "registry_only"));
    until_status(&outside_url, None).await;
    let hits = outside.hits();
    wait::holds_for(
        "registry_only keeps refusing",
        Duration::from_secs(2),
        || async { curl(&outside_url).await.status.is_none() },
    )
    .await;
    assert_eq!(outside.hits(), hits, "nothing reached the outside server");
    assert_eq!(curl(&vip).await.status, Some(200));

    // Without the rules, traffic is direct again: the outside server answers (registry_only
    // is the sidecar's, and the sidecar no longer sees the call), the VIP is nobody's.
    iptables(&[
        "--outbound-port",
        "15001",
        "--exclude-ports",
        "22",
        "--clean",
    ]);
    let r = until_status(&outside_url, Some(200)).await;
    assert!(r.head.contains("x-backend: outside"), "{}", r.head);
    assert_eq!(curl(&vip).await.status, None);
}
