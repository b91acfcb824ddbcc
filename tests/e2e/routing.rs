//! Virtual hosts, redirects, rewrites, header edits, direct responses, rate limits, CORS,
//! mirroring and WebSocket upgrades, driven through real Envoy with Host headers to 127.0.0.1.
//! The main test runs `examples/edge.yaml` itself, with its addresses pointed at local servers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use reqwest::{Method, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::backend::Backend;
use crate::support::dns::Dnsmasq;
use crate::support::envoy::{Envoy, Xds};
use crate::support::flotilla::Flotilla;
use crate::support::tcp::{TcpEcho, backend_of, exchange};
use crate::support::upgrade::UpgradeEcho;
use crate::support::{free_addr, repo_root, wait};

/// Follows no redirect: the tests look at them.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

struct Edge {
    url: String,
    addr: SocketAddr,
    client: reqwest::Client,
    /// Kept alive for the test; its log is printed if the test fails.
    _envoy: Envoy,
}

impl Edge {
    async fn send(
        &self,
        method: Method,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Response {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.url))
            .header("host", host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send()
            .await
            .unwrap_or_else(|e| panic!("{host}{path}: {e}"))
    }

    async fn get(&self, host: &str, path: &str) -> Response {
        self.send(Method::GET, host, path, &[]).await
    }
}

fn header<'r>(r: &'r Response, name: &str) -> &'r str {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_example_serves_hosts_redirects_limits_and_websockets() {
    let names = ["www", "docs", "api-v1", "api-v2"];
    let mut backends = BTreeMap::new();
    for n in names {
        backends.insert(n, Backend::start(n).await);
    }
    let chat = UpgradeEcho::start().await;
    let (pg_a, pg_b) = (TcpEcho::start("pg-a").await, TcpEcho::start("pg-b").await);
    let logs = tempfile::tempdir().expect("log dir");
    let db_log = logs.path().join("database.json");
    let db_addr = free_addr();
    let addr = free_addr();
    let yaml = std::fs::read_to_string(repo_root().join("examples/edge.yaml"))
        .expect("examples/edge.yaml")
        .replace("10.0.1.10:8080", &backends["www"].address())
        .replace("10.0.2.10:8080", &backends["docs"].address())
        .replace("10.0.3.10:8080", &backends["api-v1"].address())
        .replace("10.0.3.20:8080", &backends["api-v2"].address())
        .replace("10.0.4.10:8080", &chat.addr.to_string())
        .replace("10.0.5.10:5432", &pg_a.address())
        .replace("10.0.5.11:5432", &pg_b.address())
        .replace(
            "/var/log/envoy/database.json",
            &db_log.display().to_string(),
        )
        .replace("0.0.0.0:5432", &db_addr.to_string())
        .replace("0.0.0.0:8080", &addr.to_string())
        .replace(
            "jwks: jwks.json",
            &format!("jwks: {}", repo_root().join("examples/jwks.json").display()),
        );
    let log_dir = format!("{}/", logs.path().display());
    // The example's JWKS stays in examples/, outside the test's config directory.
    let examples = repo_root().join("examples").display().to_string();
    // The partner host's names, which Envoy resolves itself (its cluster and the JWKS
    // cluster), answered on loopback: Envoy keeps every listener back until such a cluster's
    // first lookup ends, and a name the test machine cannot look up at all would hold the
    // whole example for the 15 s of Envoy's initial fetch timeout.
    let dns =
        Dnsmasq::start("127.0.0.1 api.partner.example\n127.0.0.1 login.partner.example\n").await;
    let dns_server = dns.addr.to_string();
    let flotilla = Flotilla::start_args(
        &yaml,
        &[
            "--access-log-dir",
            &log_dir,
            "--secrets-dir",
            &examples,
            "--dns-server",
            &dns_server,
        ],
    )
    .await;
    let envoy = Envoy::start(&flotilla, "edge-1", "edge", Xds::Sotw).await;
    envoy.wait_listener(addr).await;
    let edge = Edge {
        url: format!("http://{addr}"),
        addr,
        client: client(),
        _envoy: envoy,
    };
    wait::until(
        "www and api-v1 healthy",
        Duration::from_secs(20),
        || async {
            let www = edge.get("www.example.com", "/").await;
            let api = edge
                .send(
                    Method::GET,
                    "api.example.com",
                    "/",
                    &[("x-canary", "never")],
                )
                .await;
            (www.status() == 200 && api.status() == 200).then_some(())
        },
    )
    .await;

    // The partner host checks tokens before anything else: none is a 401.
    let r = edge
        .get("partner.example.com", "/partner.v1.Orders/List")
        .await;
    assert_eq!(r.status(), 401);
    assert!(
        header(&r, "www-authenticate").starts_with("Bearer"),
        "{r:?}"
    );

    // Bare domains redirect to www over https, keeping path and query.
    let r = edge.get("example.com", "/pricing?plan=pro").await;
    assert_eq!(r.status(), 301);
    assert_eq!(
        header(&r, "location"),
        "https://www.example.com/pricing?plan=pro"
    );
    let r = edge.get("example.org:8080", "/").await;
    assert_eq!(
        header(&r, "location"),
        "https://www.example.org/",
        "the Host's port is ignored"
    );
    // A prefix redirect on the site.
    let r = edge.get("www.example.com", "/old-news/2024/launch").await;
    assert_eq!(r.status(), 308);
    assert_eq!(
        header(&r, "location"),
        "http://www.example.com/news/2024/launch"
    );

    // The site: request headers set per route, response header per host, and x-forwarded-for
    // gets the real peer appended to whatever the client claimed.
    let r = edge
        .send(
            Method::GET,
            "WWW.Example.com",
            "/",
            &[("x-forwarded-for", "203.0.113.9")],
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-backend"), "www");
    assert_eq!(header(&r, "seen-x-site"), "example.com");
    assert_eq!(header(&r, "seen-x-client"), "127.0.0.1");
    // Envoy appends the peer; for a loopback peer it appends its own local address instead.
    let xff: Vec<&str> = header(&r, "seen-x-forwarded-for").split(',').collect();
    assert_eq!(xff.len(), 2, "{xff:?}");
    assert_eq!(xff[0], "203.0.113.9");
    assert_eq!(header(&r, "seen-x-forwarded-proto"), "http");
    assert_eq!(header(&r, "strict-transport-security"), "max-age=31536000");

    // Docs: a regex route rewrites the path and the Host.
    let r = edge.get("www.example.org", "/v2/guide/start").await;
    assert_eq!(header(&r, "x-backend"), "docs");
    assert_eq!(header(&r, "x-seen-path"), "/guide/start");
    assert_eq!(header(&r, "x-seen-host"), "docs.internal");
    let r = edge.get("www.example.org", "/about").await;
    assert_eq!(header(&r, "x-seen-path"), "/about");

    // API: header match to the canary, a 90/10 split otherwise, a per-host response header.
    let r = edge
        .send(
            Method::GET,
            "api.example.com",
            "/users",
            &[("x-canary", "always")],
        )
        .await;
    assert_eq!(header(&r, "x-backend"), "api-v2");
    assert_eq!(header(&r, "x-content-type-options"), "nosniff");
    let mut spread: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..100 {
        let r = edge.get("api.example.com", "/users").await;
        *spread
            .entry(header(&r, "x-backend").to_string())
            .or_default() += 1;
    }
    assert!(
        spread.get("api-v1").copied().unwrap_or(0) >= 70,
        "{spread:?}"
    );
    assert!(
        spread.get("api-v2").copied().unwrap_or(0) >= 1,
        "{spread:?}"
    );
    // CORS preflight answered by Envoy for the allowed origin.
    let r = edge
        .send(
            Method::OPTIONS,
            "api.example.com",
            "/users",
            &[
                ("origin", "https://www.example.com"),
                ("access-control-request-method", "POST"),
            ],
        )
        .await;
    assert_eq!(
        header(&r, "access-control-allow-origin"),
        "https://www.example.com"
    );
    assert_eq!(header(&r, "access-control-allow-methods"), "GET,POST");
    assert_eq!(header(&r, "access-control-max-age"), "3600");
    // The search is rate limited: a burst of 10, then 429 with retry-after.
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let mut retry_after = String::new();
    for _ in 0..30 {
        let r = edge.get("api.example.com", "/search?q=x").await;
        if r.status() == 429 {
            retry_after = header(&r, "retry-after").to_string();
        }
        *statuses.entry(r.status().as_u16()).or_default() += 1;
    }
    let ok = statuses.get(&200).copied().unwrap_or(0);
    assert!(
        (10..=20).contains(&ok),
        "burst 10 + 5/s refill: {statuses:?}"
    );
    assert!(
        statuses.get(&429).copied().unwrap_or(0) >= 10,
        "{statuses:?}"
    );
    assert_eq!(retry_after, "1");
    // Only GET is routed to the search; a POST falls through to the split (not limited).
    let r = edge
        .send(Method::POST, "api.example.com", "/search", &[])
        .await;
    assert_eq!(r.status(), 200);

    // Maintenance host answered by Envoy; unknown hosts get 404.
    let r = edge.get("legacy.example.com", "/anything").await;
    assert_eq!(r.status(), 503);
    assert!(r.text().await.expect("body").starts_with("back soon"));
    let r = edge.get("unknown.example.net", "/").await;
    assert_eq!(r.status(), 404);

    // WebSocket upgrade through to the chat backend, then bytes both ways.
    let mut s = TcpStream::connect(edge.addr).await.expect("connect");
    s.write_all(
        b"GET /ws HTTP/1.1\r\nhost: chat.example.com\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n",
    )
    .await
    .expect("write");
    let head = read_until(&mut s, b"\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(b"hello over ws").await.expect("write");
    let echoed = read_until(&mut s, b"ws").await;
    assert_eq!(echoed, "hello over ws");

    // The database pool: a byte stream through the TCP listener to one of its backends, and
    // the connection in that listener's access log.
    let reply = wait::until(
        "a reply through the database listener",
        Duration::from_secs(20),
        || async { exchange(db_addr, "SELECT 1;\n").await },
    )
    .await;
    assert!(["pg-a", "pg-b"].contains(&backend_of(&reply)), "{reply}");
    assert!(reply.ends_with(":SELECT 1;\n"), "{reply}");
    let line = wait::until(
        "the database connection in the access log",
        Duration::from_secs(15),
        || async {
            let text = std::fs::read_to_string(&db_log).ok()?;
            text.lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON line"))
                .find(|l| l["bytes_received"] == 10)
        },
    )
    .await;
    assert_eq!(line["upstream_cluster"], "postgres", "{line}");
    assert_eq!(line["listener"], "database", "{line}");
}

async fn read_until(s: &mut TcpStream, end: &[u8]) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(Duration::from_secs(10), async {
        while !got.ends_with(end) {
            let n = s.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("read in time");
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrored_requests_reach_the_shadow_cluster() {
    let main = Backend::start("main").await;
    let shadow = Backend::start("shadow").await;
    let addr = free_addr();
    let yaml = format!(
        "version: 1
clusters:
  main: {{ endpoints: [{}] }}
  shadow: {{ endpoints: [{}] }}
listeners:
  l:
    address: {addr}
    hosts:
      app:
        domains: [app.test]
        routes: [ {{ to: main, mirror: {{ to: shadow, percent: 100 }} }} ]
fleets:
  edge: {{ listeners: [l] }}
",
        main.address(),
        shadow.address()
    );
    let flotilla = Flotilla::start(&yaml).await;
    let envoy = Envoy::start(&flotilla, "edge-1", "edge", Xds::Delta).await;
    envoy.wait_listener(addr).await;
    let c = client();
    for _ in 0..5 {
        let r = c
            .get(format!("http://{addr}/x"))
            .header("host", "app.test")
            .send()
            .await
            .expect("send");
        assert_eq!(header(&r, "x-backend"), "main");
    }
    // The fleet received the mirror cluster (it is a cluster the route uses) and Envoy sends
    // the shadow a copy of each request.
    wait::until("5 mirrored requests", Duration::from_secs(10), || async {
        (shadow.hits() >= 5).then_some(())
    })
    .await;
    assert_eq!(main.hits(), 5);
}
