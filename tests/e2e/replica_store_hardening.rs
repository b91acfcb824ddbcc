//! What others write under flotilla's etcd prefix is checked as the API checks it: skipped
//! and counted, never applied, never costing the store (issue 27, point 8). Real etcd, a real
//! replica and its Envoy: a registration without a lease never reaches the Envoy (a leased
//! one written in the same transaction does), 50 unleased replica keys take no probes (a
//! killed backend is still marked unhealthy), a 10 MB value is skipped while changes keep
//! working, and 80,000 health facts (~5 MB, more than one unpaged answer) load again on a
//! restarted replica.

use std::time::{Duration, Instant};

use base64::Engine;

use crate::operations::call;
use crate::replicas::replica;
use crate::support::backend::Backend;
use crate::support::envoy::{Envoy, Xds};
use crate::support::etcd::Etcd;
use crate::support::flotilla::Flotilla;
use crate::support::{free_addr, wait};

/// Health facts written (each a valid fact of an endpoint flotilla does not serve).
const HEALTH_KEYS: u32 = 80_000;
/// Operations per transaction (the test etcd allows 10,000, see tests/support/etcd.rs).
const OPS_PER_TXN: usize = 10_000;

/// etcd's JSON gateway.
struct Gateway<'a> {
    etcd: &'a Etcd,
    http: reqwest::Client,
}

impl Gateway<'_> {
    async fn post(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let r = self
            .http
            .post(format!("http://{}{path}", self.etcd.client))
            .json(&body)
            .send()
            .await
            .expect("etcd gateway");
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or_default()
    }

    /// Writes `kvs` (key, value, lease) in transactions of [`OPS_PER_TXN`].
    async fn put_all(&self, kvs: &[(String, Vec<u8>, i64)]) {
        let b64 = base64::engine::general_purpose::STANDARD;
        for chunk in kvs.chunks(OPS_PER_TXN) {
            let success: Vec<serde_json::Value> = chunk
                .iter()
                .map(|(k, v, lease)| {
                    serde_json::json!({ "request_put": {
                        "key": b64.encode(k), "value": b64.encode(v), "lease": lease.to_string()
                    } })
                })
                .collect();
            self.post("/v3/kv/txn", serde_json::json!({ "success": success }))
                .await;
        }
    }

    async fn grant(&self, ttl_seconds: u64) -> i64 {
        let r = self
            .post("/v3/lease/grant", serde_json::json!({ "TTL": ttl_seconds }))
            .await;
        r["ID"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("lease grant: {r}"))
    }
}

/// The value of one series (`name{labels}` or `name`), 0 if absent. Exact: a HELP line
/// mentioning the series never counts.
async fn metric(f: &Flotilla, series: &str) -> f64 {
    f.text("/metrics")
        .await
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

async fn skipped(f: &Flotilla, reason: &str) -> f64 {
    metric(
        f,
        &format!("flotilla_store_skipped_keys_total{{reason=\"{reason}\"}}"),
    )
    .await
}

/// Waits until `f` follows etcd (it listed everything) and returns how long that took.
async fn following(f: &Flotilla) -> Duration {
    let start = Instant::now();
    wait::until(
        "the replica to follow etcd",
        Duration::from_secs(30),
        || async { (metric(f, "flotilla_store_available").await == 1.0).then_some(()) },
    )
    .await;
    start.elapsed()
}

fn config(listen: std::net::SocketAddr, endpoint: &str) -> String {
    format!(
        "version: 1
clusters:
  web:
    endpoints: [{endpoint}]
    registrations: {{}}
    health_check:
      http: {{ path: /healthz }}
      interval: 300ms
      timeout: 250ms
      jitter: 0ms
      healthy_threshold: 1
      unhealthy_threshold: 1
listeners:
  public:
    address: {listen}
    routes: [ {{ to: web }} ]
"
    )
}

#[tokio::test]
async fn a_replica_follows_a_large_hostile_prefix_skipping_what_flotilla_would_not_write() {
    let started = Instant::now();
    let etcd = Etcd::start().await;
    let gateway = Gateway {
        etcd: &etcd,
        http: reqwest::Client::new(),
    };
    let mut backend = Backend::start("x").await;
    let unleased = Backend::start("unleased").await;
    let leased = Backend::start("leased").await;
    let (backend_addr, unleased_addr, leased_addr) =
        (backend.address(), unleased.address(), leased.address());

    let mut kvs: Vec<(String, Vec<u8>, i64)> = (0..HEALTH_KEYS)
        .map(|i| {
            let address = format!("10.{}.{}.{}:80", i >> 16, (i >> 8) & 255, i & 255);
            (
                format!("/flotilla/health/web/{address}"),
                b"healthy".to_vec(),
                0,
            )
        })
        .collect();
    // 50 replicas without a lease: were they members, they would own most probes and never
    // run them.
    kvs.extend((0..50).map(|i| (format!("/flotilla/replicas/fake-{i}"), Vec::new(), 0)));
    gateway.put_all(&kvs).await;
    // One 10 MB value.
    gateway
        .put_all(&[(
            "/flotilla/health/web/10.9.9.9:80".into(),
            vec![b'x'; 10_000_000],
            0,
        )])
        .await;

    let listen = free_addr();
    let mut f = replica(&config(listen, &backend_addr), &etcd).await;
    let first_load = following(&f).await;
    let envoy = Envoy::start(&f, "edge-1", "edge", Xds::Delta).await;
    envoy.wait_listener(listen).await;
    wait::until(
        "the configured backend healthy in Envoy",
        Duration::from_secs(10),
        || async { (envoy.health_flags("web", &backend_addr).await? == "healthy").then_some(()) },
    )
    .await;
    assert_eq!(skipped(&f, "too_large").await, 1.0);
    assert_eq!(skipped(&f, "no_lease").await, 50.0);
    assert_eq!(
        skipped(&f, "value").await,
        0.0,
        "the 80,000 facts are valid"
    );

    // A registration without a lease (and one with an absurd weight) beside a leased one, in
    // one transaction: only the leased one reaches the Envoy.
    let lease = gateway.grant(60).await;
    let registration = br#"{"weight":1,"ttl_ms":60000}"#.to_vec();
    gateway
        .put_all(&[
            (
                format!("/flotilla/registrations/web/{unleased_addr}"),
                registration.clone(),
                0,
            ),
            (
                "/flotilla/registrations/web/169.254.169.254:80".into(),
                br#"{"weight":4000000000,"ttl_ms":10000}"#.to_vec(),
                lease,
            ),
            (
                format!("/flotilla/registrations/web/{leased_addr}"),
                registration,
                lease,
            ),
        ])
        .await;
    wait::until(
        "the leased registration in Envoy",
        Duration::from_secs(10),
        || async { envoy.health_flags("web", &leased_addr).await },
    )
    .await;
    let clusters = envoy.clusters().await;
    assert!(!clusters.contains(&unleased_addr), "{clusters}");
    assert!(!clusters.contains("169.254.169.254"), "{clusters}");
    assert_eq!(skipped(&f, "no_lease").await, 51.0);
    assert_eq!(skipped(&f, "value").await, 1.0, "the absurd weight");
    let state = f.json("/api/v1/state").await;
    assert_eq!(
        state["registrations"].as_array().map(Vec::len),
        Some(1),
        "{state}"
    );

    // The fake members own no probes: a killed backend is marked unhealthy.
    backend.kill();
    wait::until(
        "the killed backend unhealthy in Envoy",
        Duration::from_secs(10),
        || async {
            envoy
                .health_flags("web", &backend_addr)
                .await?
                .contains("failed_eds_health")
                .then_some(())
        },
    )
    .await;

    // The store works: changes go through, and a bad key written while following is
    // skipped without breaking the watch.
    let path = format!("/api/v1/clusters/web/endpoints/{leased_addr}/drain");
    let (status, body) = call(&f, "POST", &path, None, None).await;
    assert_eq!(status, 200, "{body}");
    gateway
        .put_all(&[(
            format!("/flotilla/state/weights/web/{leased_addr}"),
            b"4000000000".to_vec(),
            0,
        )])
        .await;
    wait::until("the bad weight counted", Duration::from_secs(5), || async {
        (skipped(&f, "value").await == 2.0).then_some(())
    })
    .await;
    let (status, body) = call(&f, "DELETE", &path, None, None).await;
    assert_eq!(status, 200, "{body}");

    // A restarted replica lists all of it again, in pages.
    f.restart().await;
    f.wait_ready().await;
    let reload = following(&f).await;
    assert_eq!(skipped(&f, "too_large").await, 1.0);
    assert_eq!(skipped(&f, "no_lease").await, 51.0);
    assert_eq!(skipped(&f, "value").await, 2.0);
    let state = f.json("/api/v1/state").await;
    assert_eq!(
        state["registrations"].as_array().map(Vec::len),
        Some(1),
        "{state}"
    );
    eprintln!(
        "listing took {first_load:?}, again after a restart {reload:?}; whole test {:?}",
        started.elapsed()
    );
}
