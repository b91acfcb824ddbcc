//! TLS listeners: SNI between two certificates, plain HTTP redirected, client certificates
//! and the minimum version, what `validate`, the admin API, the metrics and the dashboard
//! show (never a key), and Secrets kept to the fleets that use them.

use std::time::Duration;

use super::{certs_dir, key_body, serve, serve_web};
use crate::support::backend::Backend;
use crate::support::envoy::{Envoy, Xds};
use crate::support::pki::https::{https_client, peer_certificate};
use crate::support::pki::{Issued, Pki};
use crate::support::{free_addr, wait};

/// The first response `client` gets from `url`, retried while Envoy warms the listener.
async fn first_answer(client: &reqwest::Client, url: &str) -> reqwest::Response {
    wait::until(
        &format!("an answer from {url}"),
        Duration::from_secs(10),
        || async { client.get(url).send().await.ok() },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_picks_the_certificate_by_sni_and_plain_http_redirects() {
    let pki = Pki::new();
    let web = Backend::start("web").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = certs_dir(&dir);
    let (a, b) = (
        pki.issue(&["a.example.com"]),
        pki.issue(&["*.b.example.com"]),
    );
    a.write(&certs, "a");
    b.write(&certs, "b");
    let (https, plain) = (free_addr(), free_addr());
    let flotilla = serve_web(
        dir,
        &web,
        &format!(
            "  public:
    address: {https}
    tls:
      certificates:
        - {{ cert: certs/a.pem, key: certs/a.key }}
        - {{ cert: certs/b.pem, key: certs/b.key }}
    hosts:
      a: {{ domains: [a.example.com], routes: [{{ match: {{ prefix: / }}, to: web }}] }}
      b: {{ domains: [\"*.b.example.com\"], routes: [{{ match: {{ prefix: / }}, to: web }}] }}
  plain:
    address: {plain}
    https_redirect: true
"
        ),
    )
    .await;
    let envoy = Envoy::start(&flotilla, "edge-1", "edge", Xds::Sotw).await;
    envoy.wait_listener(https).await;
    let client = https_client(
        &pki.ca_pem,
        &[("a.example.com", https), ("x.b.example.com", https)],
        None,
    );
    for (host, cert) in [("a.example.com", &a), ("x.b.example.com", &b)] {
        let url = format!("https://{host}:{}/hello", https.port());
        let resp = first_answer(&client, &url).await;
        assert_eq!(
            peer_certificate(&resp).as_deref(),
            Some(cert.leaf.as_ref()),
            "{host}"
        );
        assert_eq!(resp.status(), 200, "{host}");
        assert_eq!(resp.text().await.expect("body"), "web", "{host}");
    }

    envoy.wait_listener(plain).await;
    let url = format!("http://a.example.com:{}/x/y?q=1", plain.port());
    let resp = first_answer(&client, &url).await;
    assert_eq!(resp.status(), 301);
    assert_eq!(
        resp.headers()["location"].to_str().expect("location"),
        "https://a.example.com/x/y?q=1"
    );

    // What flotilla shows of the certificates, and that no key is anywhere.
    let listed = flotilla.json("/api/v1/certificates").await;
    let listed = listed.as_array().expect("list");
    assert_eq!(listed.len(), 2, "{listed:?}");
    for c in listed {
        assert_eq!(c["listeners"], serde_json::json!(["public"]), "{c}");
        assert_eq!(c["sha256"].as_str().map(str::len), Some(64), "{c}");
        assert!(c["not_after"].as_i64().is_some(), "{c}");
    }
    assert_eq!(listed[0]["sans"], serde_json::json!(["a.example.com"]));
    let metrics = flotilla.text("/metrics").await;
    assert_eq!(
        metrics
            .lines()
            .filter(|l| l.starts_with("flotilla_certificate_expiry_timestamp_seconds{"))
            .count(),
        2,
        "{metrics}"
    );
    for text in [
        flotilla.text("/api/v1/certificates").await,
        flotilla.text("/api/v1/state").await,
        flotilla.text("/api/v1/events").await,
        flotilla.text("/").await,
        flotilla.log(),
    ] {
        assert!(!text.contains("PRIVATE KEY"), "a key leaked: {text}");
        assert!(!text.contains(key_body(&a)), "a key leaked: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_required_and_checked_and_min_version_holds() {
    let pki = Pki::new();
    let stranger = Pki::new();
    let web = Backend::start("web").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = certs_dir(&dir);
    pki.issue(&["m.example.com"]).write(&certs, "m");
    pki.write_ca(&certs, "clients");
    let https = free_addr();
    let flotilla = serve_web(
        dir,
        &web,
        &format!(
            "  partners:
    address: {https}
    tls:
      certificates: [{{ cert: certs/m.pem, key: certs/m.key }}]
      client_ca: certs/clients.pem
      require_client_cert: true
      min_version: \"1.3\"
    hosts: {{ m: {{ domains: [m.example.com], routes: [{{ to: web }}] }} }}
"
        ),
    )
    .await;
    let envoy = Envoy::start(&flotilla, "edge-1", "edge", Xds::Sotw).await;
    envoy.wait_listener(https).await;
    let url = format!("https://m.example.com:{}/", https.port());
    let with = |id: Option<&Issued>| https_client(&pki.ca_pem, &[("m.example.com", https)], id);
    let good = pki.issue(&["client.example.com"]);
    let resp = first_answer(&with(Some(&good)), &url).await;
    assert_eq!(resp.status(), 200);
    assert!(
        with(None).get(&url).send().await.is_err(),
        "no client certificate must be refused"
    );
    let tls12_only = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).expect("ca"))
        .identity(
            reqwest::Identity::from_pem(format!("{}{}", good.chain, good.key).as_bytes())
                .expect("identity"),
        )
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .resolve("m.example.com", https)
        .build()
        .expect("client");
    let refused = tls12_only.get(&url).send().await;
    assert!(
        refused.is_err(),
        "min_version 1.3 must refuse TLS 1.2: {refused:?}"
    );
    let foreign = stranger.issue(&["client.example.com"]);
    assert!(
        with(Some(&foreign)).get(&url).send().await.is_err(),
        "a certificate from another CA must be refused"
    );
}

#[test]
fn validate_names_bad_certificates_and_warns_before_expiry() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = certs_dir(&dir);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    pki.issue_until(&["a.example.com"], Some(now + 5 * 86_400 + 3_600))
        .write(&certs, "soon");
    pki.issue(&["a.example.com"]).write(&certs, "other");
    let config = dir.path().join("flotilla.yaml");
    let yaml = |key: &str| {
        format!(
            "version: 1
clusters: {{ web: {{ endpoints: [127.0.0.1:1] }} }}
listeners:
  public:
    address: 127.0.0.1:2
    tls: {{ certificates: [{{ cert: certs/soon.pem, key: certs/{key}.key }}] }}
    hosts: {{ a: {{ domains: [a.example.com], routes: [{{ to: web }}] }} }}
"
        )
    };
    let run = |yaml: String| {
        std::fs::write(&config, yaml).expect("write");
        std::process::Command::new(crate::support::flotilla_bin())
            .arg("validate")
            .arg(&config)
            .output()
            .expect("flotilla validate")
    };
    let out = run(yaml("soon"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("soon.pem (CN=a.example.com) expires in 5 days"),
        "{stderr}"
    );
    let out = run(yaml("other"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(":6:35: listeners.public.tls.certificates[0].cert: ")
            && stderr.contains("other.key): the private key does not match the certificate"),
        "{stderr}"
    );
    assert!(!stderr.contains("PRIVATE KEY"), "{stderr}");
}

#[tokio::test]
async fn the_dashboard_lists_certificates_and_never_a_key() {
    use crate::support::browser::Browser;

    let pki = Pki::new();
    let web = Backend::start("web").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = certs_dir(&dir);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let soon = pki.issue_until(&["a.example.com"], Some(now + 10 * 86_400 + 3_600));
    soon.write(&certs, "a");
    let flotilla = serve_web(
        dir,
        &web,
        &format!(
            "  public:
    address: {}
    tls: {{ certificates: [{{ cert: certs/a.pem, key: certs/a.key }}] }}
    hosts: {{ a: {{ domains: [a.example.com], routes: [{{ to: web }}] }} }}
",
            free_addr()
        ),
    )
    .await;
    let b = Browser::start("tls-certificates").await;
    b.goto(&format!("http://{}/", flotilla.admin)).await;
    let item = "#certificates li.certificate";
    let wait = Duration::from_secs(20);
    b.wait_contains(item, "CN=a.example.com", wait).await;
    b.wait_contains(item, "10 days left", wait).await;
    b.wait_contains(item, "SANs a.example.com", wait).await;
    b.wait_contains(item, "listener public", wait).await;
    let level = b
        .js("return document.querySelector('#certificates li.certificate').dataset.level")
        .await;
    assert_eq!(level, "warn", "10 days left is a warning");
    let page = b.js("return document.documentElement.outerHTML").await;
    let page = page.as_str().expect("html");
    assert!(!page.contains("PRIVATE KEY") && !page.contains(key_body(&soon)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_is_served_only_to_the_fleets_that_use_it() {
    use crate::support::xds_client::{SotwClient, node};

    const SDS: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
    let pki = Pki::new();
    let web = Backend::start("web").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = certs_dir(&dir);
    pki.issue(&["a.example.com"]).write(&certs, "a");
    let secret = format!("cert:{}", certs.join("a.pem").display());
    let flotilla = serve(
        dir,
        &format!(
            "version: 1
clusters:
  web: {{ endpoints: [{}] }}
listeners:
  public:
    address: {}
    tls: {{ certificates: [{{ cert: certs/a.pem, key: certs/a.key }}] }}
    hosts: {{ a: {{ domains: [a.example.com], routes: [{{ to: web }}] }} }}
  internal: {{ address: {}, routes: [{{ to: web }}] }}
fleets:
  edge: {{ listeners: [public] }}
  inside: {{ listeners: [internal] }}
",
            web.address(),
            free_addr(),
            free_addr()
        ),
    )
    .await;
    let mut edge = SotwClient::open(flotilla.xds, Some(node("edge-1", "edge"))).await;
    edge.request(SDS, &[&secret], None).await;
    let got = edge.recv().await.expect("the edge fleet's secret");
    assert_eq!(got.resources.len(), 1, "{got:?}");
    assert_eq!(got.resources[0].type_url, SDS);

    let mut inside = SotwClient::open(flotilla.xds, Some(node("inside-1", "inside"))).await;
    inside.request(SDS, &[&secret], None).await;
    match inside.recv_within(Duration::from_secs(2)).await {
        None => {}
        Some(Ok(r)) => assert!(r.resources.is_empty(), "another fleet's secret: {r:?}"),
        Some(Err(status)) => panic!("stream failed: {status:?}"),
    }
}
