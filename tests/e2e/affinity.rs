//! Session affinity performed by Envoy: cookie, header and source-IP hashing keep a key on one
//! backend, on every proxy; sticky cookies pin a client and move it when its backend leaves.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::support::client::{self, Reply};
use crate::support::envoy::{Envoy, Xds};
use crate::support::setup::{Setup, both_protocols};
use crate::support::{free_addr, wait};

const BACKENDS: [&str; 3] = ["a", "b", "c"];

/// Two fleets of proxies, each with its own listener in front of the same clusters, so a test
/// can address each proxy and check that they agree.
fn affinity_config(
    b: &std::collections::BTreeMap<String, crate::support::backend::Backend>,
    l: SocketAddr,
    second: SocketAddr,
) -> String {
    let eps = BACKENDS.map(|n| b[n].address()).join(", ");
    let routes = "
      - { match: { prefix: /cookie }, to: cookie }
      - { match: { prefix: /header }, to: header }
      - { match: { prefix: /source }, to: source }
      - { match: { prefix: /sticky }, to: sticky }";
    format!(
        "version: 1
clusters:
  cookie: {{ endpoints: [{eps}], affinity: {{ cookie: {{ name: fl-session, ttl: 1h }} }} }}
  header: {{ policy: maglev, endpoints: [{eps}], affinity: {{ header: x-user-id }} }}
  source: {{ endpoints: [{eps}], affinity: {{ source_ip: true }} }}
  sticky: {{ endpoints: [{eps}], affinity: {{ sticky_cookie: {{ name: fl-sticky, ttl: 1h }} }} }}
listeners:
  public:
    address: {l}
    routes:{routes}
  public-2:
    address: {second}
    routes:{routes}
fleets:
  edge: {{ listeners: [public] }}
  edge-2: {{ listeners: [public-2] }}
"
    )
}

/// The setup (first proxy, fleet `edge`) and a second proxy (fleet `edge-2`) with its URL.
async fn two_proxies(xds: Xds) -> (Setup, Envoy, String, SocketAddr) {
    let second = free_addr();
    let s = Setup::new(&BACKENDS, xds, |b, l| affinity_config(b, l, second)).await;
    let other = Envoy::start(&s.flotilla, "edge-2", "edge-2", xds).await;
    other.wait_listener(second).await;
    (s, other, format!("http://{second}"), second)
}

/// Sends `n` requests with the same headers and returns the backends that answered.
async fn backends_for(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
    n: usize,
) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for _ in 0..n {
        let r = client::get_with(client, url, headers)
            .await
            .expect("request");
        assert_eq!(r.status, 200, "{url}: {r:?}");
        seen.insert(r.backend);
    }
    seen
}

fn set_cookie(reply: &Reply, name: &str) -> String {
    reply
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("no {name} cookie set: {:?}", reply.headers))
        .to_string()
}

async fn cookie_hash_keeps_a_client_on_one_backend_on_every_proxy(xds: Xds) {
    let (s, _other, other_url, _) = two_proxies(xds).await;
    let http = client::http();
    let first = client::get_with(&http, &s.url("/cookie"), &[])
        .await
        .expect("request");
    let cookie = set_cookie(&first, "fl-session");
    let seen = backends_for(&http, &s.url("/cookie"), &[("cookie", &cookie)], 100).await;
    assert_eq!(
        seen,
        BTreeSet::from([first.backend.clone()]),
        "cookie {cookie}"
    );
    // Another proxy hashes the same cookie onto the same backend.
    let seen = backends_for(
        &http,
        &format!("{other_url}/cookie"),
        &[("cookie", &cookie)],
        20,
    )
    .await;
    assert_eq!(seen, BTreeSet::from([first.backend]));
}

async fn header_hash_keeps_a_user_on_one_backend_on_every_proxy(xds: Xds) {
    let (s, _other, other_url, _) = two_proxies(xds).await;
    let http = client::http();
    let mut used = BTreeSet::new();
    for user in 0..12 {
        let user = format!("user-{user}");
        let h = [("x-user-id", user.as_str())];
        let seen = backends_for(
            &http,
            &s.url("/header"),
            &h,
            if user == "user-0" { 100 } else { 10 },
        )
        .await;
        assert_eq!(seen.len(), 1, "{user} moved between {seen:?}");
        let there = backends_for(&http, &format!("{other_url}/header"), &h, 10).await;
        assert_eq!(seen, there, "{user}: the proxies disagree");
        used.extend(seen);
    }
    assert!(used.len() >= 2, "12 users all hashed to {used:?}");
}

async fn source_ip_hash_keeps_a_client_on_one_backend_on_every_proxy(xds: Xds) {
    let (s, _other, other_url, _) = two_proxies(xds).await;
    let mut used = BTreeSet::new();
    for last in 2..10u8 {
        let ip: IpAddr = format!("127.0.0.{last}").parse().expect("ip");
        let http = client::http_from(ip);
        let seen = backends_for(
            &http,
            &s.url("/source"),
            &[],
            if last == 2 { 100 } else { 10 },
        )
        .await;
        assert_eq!(seen.len(), 1, "{ip} moved between {seen:?}");
        let there = backends_for(&http, &format!("{other_url}/source"), &[], 10).await;
        assert_eq!(seen, there, "{ip}: the proxies disagree");
        used.extend(seen);
    }
    assert!(used.len() >= 2, "8 client addresses all hashed to {used:?}");
}

async fn sticky_cookie_pins_a_client_and_moves_it_when_its_backend_leaves(xds: Xds) {
    let (s, _other, _, second) = two_proxies(xds).await;
    let http = client::http();
    let first = client::get_with(&http, &s.url("/sticky"), &[])
        .await
        .expect("request");
    let cookie = set_cookie(&first, "fl-sticky");
    let seen = backends_for(&http, &s.url("/sticky"), &[("cookie", &cookie)], 100).await;
    assert_eq!(seen, BTreeSet::from([first.backend.clone()]));

    // Remove the pinned backend from the sticky cluster only.
    let pinned = first.backend.clone();
    let remaining: Vec<String> = BACKENDS
        .iter()
        .filter(|n| **n != pinned)
        .map(|n| s.addr(n))
        .collect();
    let yaml = affinity_config(&s.backends, s.listen, second).replace(
        &format!(
            "sticky: {{ endpoints: [{}]",
            BACKENDS.map(|n| s.addr(n)).join(", ")
        ),
        &format!("sticky: {{ endpoints: [{}]", remaining.join(", ")),
    );
    s.flotilla.write_config(&yaml);
    let moved = wait::until(
        "the sticky client to move",
        Duration::from_secs(10),
        || async {
            let r = client::get_with(&http, &s.url("/sticky"), &[("cookie", &cookie)])
                .await
                .ok()?;
            assert_eq!(r.status, 200, "{r:?}");
            (r.backend != pinned).then_some(r)
        },
    )
    .await;
    // The client is re-pinned to its new backend.
    let new_cookie = set_cookie(&moved, "fl-sticky");
    let seen = backends_for(&http, &s.url("/sticky"), &[("cookie", &new_cookie)], 50).await;
    assert_eq!(seen, BTreeSet::from([moved.backend]));
}

both_protocols!(
    cookie_hash_keeps_a_client_on_one_backend_on_every_proxy,
    header_hash_keeps_a_user_on_one_backend_on_every_proxy,
    source_ip_hash_keeps_a_client_on_one_backend_on_every_proxy,
    sticky_cookie_pins_a_client_and_moves_it_when_its_backend_leaves,
);
