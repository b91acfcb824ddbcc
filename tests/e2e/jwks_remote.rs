//! A JWKS URL (issue 25.2) through real Envoy: Envoy fetches the keys over HTTPS from a
//! server in the test (its certificate from a test CA named by `jwks_ca`, its name resolved
//! by the DNS server serve was given) through the cluster flotilla makes, verifies tokens with
//! them, and picks up a key rotation at the server within `jwks_cache`.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::jwt::{ISSUER, TestKey, jwks};
use crate::support::backend::Backend;
use crate::support::dns::Dnsmasq;
use crate::support::envoy::{Envoy, Xds};
use crate::support::flotilla::Flotilla;
use crate::support::pki::Pki;
use crate::support::pki::tls_backend::TlsBackend;
use crate::support::{client, free_addr, wait};

/// `jwks_cache` in the test: how long Envoy keeps the keys before fetching them again.
const CACHE: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_fetched_over_https_verify_tokens_and_a_rotation_at_the_server_reaches_envoy() {
    let (first, second) = (TestKey::new("first"), TestKey::new("second"));
    let pki = Pki::new();
    let keys = TlsBackend::start(&pki, "jwks", &["jwks.test"], false).await;
    keys.set_body(&jwks(&[&first]));
    let dns = Dnsmasq::start("127.0.0.1 jwks.test\n").await;
    let web = Backend::start("web").await;

    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("config")).expect("config dir");
    pki.write_ca(&dir.path().join("config"), "idp-ca");
    let addr = free_addr();
    let path = dir.path().join("config/flotilla.yaml");
    std::fs::write(
        &path,
        format!(
            r#"version: 1
clusters:
  web: {{ endpoints: ["{web}"] }}
listeners:
  public:
    address: {addr}
    auth:
      jwt:
        issuer: "{ISSUER}"
        audiences: [api]
        jwks: "https://jwks.test:{port}/keys.json"
        jwks_ca: idp-ca.pem
        jwks_cache: {cache}s
    routes: [ {{ to: web }} ]
"#,
            web = web.address(),
            port = keys.addr.port(),
            cache = CACHE.as_secs(),
        ),
    )
    .expect("write config");
    let server = dns.addr.to_string();
    let flotilla = Flotilla::start_with(dir, path, &["--dns-server", &server]).await;
    let envoy = Envoy::start(&flotilla, "edge-1", "edge", Xds::Sotw).await;
    envoy.wait_listener(addr).await;

    let http = client::http();
    let status = |token: Option<String>| {
        let http = http.clone();
        async move {
            let mut req = http.get(format!("http://{addr}/"));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            req.send().await.ok().map(|r| r.status().as_u16())
        }
    };
    let valid = first.token("api", 600);
    wait::until(
        "a valid token passes (keys fetched)",
        Duration::from_secs(20),
        || async { (status(Some(valid.clone())).await == Some(200)).then_some(()) },
    )
    .await;
    assert!(
        keys.requests() > 0,
        "Envoy fetched the JWKS from the server"
    );

    let mut tampered: Vec<String> = valid.split('.').map(str::to_string).collect();
    tampered[1] = URL_SAFE_NO_PAD
        .encode(br#"{"iss":"https://issuer.test","aud":"api","sub":"mallory","exp":99999999999}"#);
    let hits = web.hits();
    for (what, token) in [
        ("a missing token", None),
        ("a tampered token", Some(tampered.join("."))),
        (
            "a token signed by a key not (yet) published",
            Some(second.token("api", 600)),
        ),
    ] {
        assert_eq!(status(token).await, Some(401), "{what} is refused");
    }
    assert_eq!(web.hits(), hits, "refused requests never reach the backend");

    // Rotation at the server: the second key only. Envoy fetches again once the cache runs
    // out; the deadline is that plus a fetch and margin for a loaded machine.
    keys.set_body(&jwks(&[&second]));
    let rotated = Instant::now();
    let new = second.token("api", 600);
    wait::until(
        "a token signed by the new key passes",
        CACHE + Duration::from_secs(10),
        || async { (status(Some(new.clone())).await == Some(200)).then_some(()) },
    )
    .await;
    eprintln!("the rotation reached Envoy after {:?}", rotated.elapsed());
    assert_eq!(
        status(Some(first.token("api", 600))).await,
        Some(401),
        "the retired key no longer verifies"
    );
}
