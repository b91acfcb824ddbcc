//! Traffic numbers from every Envoy, brought together by flotilla: per cluster and per
//! endpoint, in /api/v1/traffic and /metrics; a misbehaving stats stream hurts nothing else.

use std::time::Duration;

use envoy_types::pb::envoy::service::metrics::v3::StreamMetricsMessage;
use envoy_types::pb::envoy::service::metrics::v3::metrics_service_client::MetricsServiceClient;
use serde_json::Value;
use tonic::Code;

use crate::support::client::{self, Load};
use crate::support::envoy::{Envoy, Xds};
use crate::support::setup::Setup;
use crate::support::wait;

pub(crate) fn config(
    b: &std::collections::BTreeMap<String, crate::support::backend::Backend>,
    l: std::net::SocketAddr,
) -> String {
    format!(
        "version: 1
clusters:
  web: {{ endpoints: [{}, {}], outlier_detection: false }}
listeners:
  public:
    address: {l}
    routes: [ {{ to: web, retries: false }} ]
",
        b["a"].address(),
        b["b"].address()
    )
}

fn cluster(traffic: &Value, name: &str) -> Option<Value> {
    traffic["clusters"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
}

#[tokio::test]
async fn every_envoy_reports_traffic_per_cluster_and_endpoint() {
    let s = Setup::new(&["a", "b"], Xds::Delta, config).await;
    let second = Envoy::start(&s.flotilla, "edge-2", "edge", Xds::Sotw).await;
    let load = Load::start(&[s.url("/")], 2, Duration::from_millis(5));

    let web = wait::until(
        "traffic numbers from both Envoys",
        Duration::from_secs(30),
        || async {
            let t = s.flotilla.json("/api/v1/traffic").await;
            let web = cluster(&t, "web")?;
            let endpoints = web["endpoints"].as_array()?;
            (t["reporting_envoys"] == 2
                && web["rps"].as_f64()? > 10.0
                && web["p95_ms"].as_f64().is_some()
                && endpoints.len() == 2
                && endpoints
                    .iter()
                    .all(|e| e["rps"].as_f64().unwrap_or(0.0) > 1.0))
            .then_some(web)
        },
    )
    .await;
    assert_eq!(web["success_rate"], 1.0, "{web}");
    let p95 = web["p95_ms"].as_f64().expect("p95");
    assert!(p95 > 0.0 && p95 < 1000.0, "{web}");
    assert!(web["p50_ms"].as_f64().expect("p50") <= p95);

    // A backend failing its requests shows in the success rates.
    s.backends["b"].set_status(503);
    let web = wait::until(
        "the failures in the numbers",
        Duration::from_secs(30),
        || async {
            let web = cluster(&s.flotilla.json("/api/v1/traffic").await, "web")?;
            let b = web["endpoints"]
                .as_array()?
                .iter()
                .find(|e| e["address"] == s.addr("b").as_str())?
                .clone();
            (web["success_rate"].as_f64()? < 0.9 && b["success_rate"].as_f64()? < 0.5)
                .then_some(web)
        },
    )
    .await;
    let a = web["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .find(|e| e["address"] == s.addr("a").as_str())
        .cloned();
    assert_eq!(a.expect("a")["success_rate"], 1.0, "{web}");
    let _ = load.stop().await;

    let metrics = s
        .flotilla
        .get("/metrics")
        .await
        .text()
        .await
        .expect("metrics");
    for series in [
        "flotilla_upstream_requests_total{cluster=\"web\",class=\"2xx\"}",
        "flotilla_upstream_requests_total{cluster=\"web\",class=\"5xx\"}",
        "flotilla_upstream_request_duration_seconds_bucket{le=\"0.005\",cluster=\"web\"}",
        "flotilla_endpoint_requests_total{cluster=\"web\",endpoint=",
        "flotilla_metrics_sink_streams 2",
    ] {
        assert!(metrics.contains(series), "no {series} in:\n{metrics}");
    }
    drop(second);
    wait::until("one Envoy reporting", Duration::from_secs(10), || async {
        (s.flotilla.json("/api/v1/traffic").await["reporting_envoys"] == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_misbehaving_stats_stream_is_dropped_and_xds_carries_on() {
    let s = Setup::new(&["a", "b"], Xds::Sotw, config).await;
    let mut client = MetricsServiceClient::connect(format!("http://{}", s.flotilla.xds))
        .await
        .expect("connect");
    // A stream that never says which Envoy it is.
    let status = client
        .stream_metrics(tokio_stream::iter(vec![StreamMetricsMessage::default()]))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    // xDS and traffic are unaffected.
    assert_eq!(
        client::spread(&s.url("/"), 10)
            .await
            .values()
            .sum::<usize>(),
        10
    );
    let nodes = s.flotilla.json("/api/v1/nodes").await;
    assert_eq!(nodes[0]["node_id"], "edge-1");
}
