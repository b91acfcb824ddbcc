//! Load-balancing policies, measured on real traffic through Envoy (SotW and delta).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::client::{self, Load};
use crate::support::envoy::Xds;
use crate::support::setup::{Setup, both_protocols};
use crate::support::wait;

fn share(counts: &BTreeMap<String, usize>, name: &str) -> f64 {
    let total: usize = counts.values().sum();
    *counts.get(name).unwrap_or(&0) as f64 / total as f64
}

fn one_cluster(policy: &str, endpoints: &str, listen: std::net::SocketAddr) -> String {
    format!(
        "version: 1
clusters:
  web:
    policy: {policy}
    endpoints: [{endpoints}]
listeners:
  public:
    address: {listen}
    routes: [ {{ to: web }} ]
"
    )
}

async fn round_robin_spreads_evenly(xds: Xds) {
    let s = Setup::new(&["a", "b", "c"], xds, |b, l| {
        one_cluster(
            "round_robin",
            &format!(
                "{}, {}, {}",
                b["a"].address(),
                b["b"].address(),
                b["c"].address()
            ),
            l,
        )
    })
    .await;
    let counts = client::spread(&s.url("/"), 300).await;
    // Envoy's round robin on one worker thread cycles through the hosts: exactly even, give or
    // take the first partial cycle.
    for name in ["a", "b", "c"] {
        let n = counts.get(name).copied().unwrap_or(0);
        assert!((99..=101).contains(&n), "{name}: {counts:?}");
    }
}

async fn weights_three_to_one(xds: Xds) {
    let s = Setup::new(&["heavy", "light"], xds, |b, l| {
        one_cluster(
            "round_robin",
            &format!(
                "{{ address: {}, weight: 3 }}, {{ address: {}, weight: 1 }}",
                b["heavy"].address(),
                b["light"].address()
            ),
            l,
        )
    })
    .await;
    let counts = client::spread(&s.url("/"), 400).await;
    // Weighted round robin is deterministic (an EDF schedule): 75 % within 3 points.
    let heavy = share(&counts, "heavy");
    assert!(
        (0.72..=0.78).contains(&heavy),
        "heavy share {heavy}: {counts:?}"
    );
}

async fn split_ninety_ten(xds: Xds) {
    let s = Setup::new(&["v1", "v2"], xds, |b, l| {
        format!(
            "version: 1
clusters:
  web-v1: {{ endpoints: [{}] }}
  web-v2: {{ endpoints: [{}] }}
listeners:
  public:
    address: {l}
    routes: [ {{ split: {{ web-v1: 90, web-v2: 10 }} }} ]
",
            b["v1"].address(),
            b["v2"].address()
        )
    })
    .await;
    let counts = client::spread(&s.url("/"), 1000).await;
    // Envoy draws the split per request: binomial, σ ≈ 0.95 points at n=1000; ±4 points is
    // more than 4σ.
    let v2 = share(&counts, "v2");
    assert!((0.06..=0.14).contains(&v2), "v2 share {v2}: {counts:?}");
}

async fn least_request_prefers_the_idle_backend(xds: Xds) {
    let s = Setup::new(&["slow", "idle"], xds, |b, l| {
        one_cluster(
            "least_request",
            &format!("{}, {}", b["slow"].address(), b["idle"].address()),
            l,
        )
    })
    .await;
    s.backends["slow"].set_delay(Duration::from_millis(200));
    let load = Load::start(&[s.url("/")], 8, Duration::ZERO);
    // Enough picks for the share to mean something, however busy the machine is.
    wait::until(
        "300 requests at the idle backend",
        Duration::from_secs(60),
        || async { (s.backends["idle"].arrivals() >= 300).then_some(()) },
    )
    .await;
    let report = load.stop().await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let slow = s.backends["slow"].arrivals() as f64;
    let idle = s.backends["idle"].arrivals() as f64;
    // Round robin would send the slow backend half the requests. Envoy's least request picks
    // two hosts at random and takes the less busy: the busy one only wins when drawn twice
    // (1 in 4).
    let slow_share = slow / (slow + idle);
    assert!(
        slow_share < 0.35,
        "slow got {slow} of {} requests",
        slow + idle
    );
}

async fn random_and_maglev_spread_traffic(xds: Xds) {
    let s = Setup::new(&["a", "b"], xds, |b, l| {
        format!(
            "version: 1
clusters:
  rnd: {{ policy: random, endpoints: [{a}, {b}] }}
  mag: {{ policy: maglev, endpoints: [{a}, {b}] }}
listeners:
  public:
    address: {l}
    routes:
      - {{ match: {{ prefix: /random }}, to: rnd }}
      - {{ match: {{ prefix: /maglev }}, to: mag }}
",
            a = b["a"].address(),
            b = b["b"].address()
        )
    })
    .await;
    for path in ["/random", "/maglev"] {
        let counts = client::spread(&s.url(path), 200).await;
        // Both pick at random here (maglev without a hash key hashes a random value):
        // each host gets 50 % ± 15 points, far more than 4σ at n=200.
        let a = share(&counts, "a");
        assert!((0.35..=0.65).contains(&a), "{path}: {counts:?}");
        assert_eq!(
            counts.values().sum::<usize>(),
            200,
            "{path}: every request answered {counts:?}"
        );
    }
}

both_protocols!(
    round_robin_spreads_evenly,
    weights_three_to_one,
    split_ninety_ten,
    least_request_prefers_the_idle_backend,
    random_and_maglev_spread_traffic,
);
