//! Telemetry floods (issue 12.7, 16.6): stats and load reports on names flotilla never sent
//! the reporting Envoy are dropped, and a stream sending thousands of them is cut off, so fake
//! names neither hide real failures from /api/v1/traffic and /metrics nor slow the admin API.

use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::{Address, Node, SocketAddress, socket_address};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterStats, UpstreamEndpointStats, UpstreamLocalityStats,
};
use envoy_types::pb::envoy::service::load_stats::v3::LoadStatsRequest;
use envoy_types::pb::envoy::service::load_stats::v3::load_reporting_service_client::LoadReportingServiceClient;
use envoy_types::pb::envoy::service::metrics::v3::metrics_service_client::MetricsServiceClient;
use envoy_types::pb::envoy::service::metrics::v3::{StreamMetricsMessage, stream_metrics_message};
use envoy_types::pb::io::prometheus::client::{Counter, LabelPair, Metric, MetricFamily};
use serde_json::Value;

use crate::support::client::Load;
use crate::support::envoy::Xds;
use crate::support::setup::Setup;
use crate::support::wait;

const FAKES: usize = 2_000;
const FAKE_ENDPOINTS: usize = 20_000;

fn node(id: &str) -> Node {
    Node {
        id: id.into(),
        cluster: "edge".into(),
        ..Default::default()
    }
}

/// A stats flush claiming `FAKES` clusters, each with 5xx responses.
fn fake_flush(first: bool) -> StreamMetricsMessage {
    let metric = |i: usize| Metric {
        label: vec![
            LabelPair {
                name: Some("envoy.cluster_name".into()),
                value: Some(format!("fake-{i}")),
            },
            LabelPair {
                name: Some("envoy.response_code_class".into()),
                value: Some("5".into()),
            },
        ],
        counter: Some(Counter {
            value: Some(100.0),
            ..Counter::default()
        }),
        ..Metric::default()
    };
    StreamMetricsMessage {
        identifier: first.then(|| stream_metrics_message::Identifier {
            node: Some(node("fake-stats")),
        }),
        envoy_metrics: vec![MetricFamily {
            name: Some("cluster.upstream_rq_xx".into()),
            metric: (0..FAKES).map(metric).collect(),
            ..MetricFamily::default()
        }],
    }
}

/// A load report on `FAKE_ENDPOINTS` endpoints of `web` that flotilla never sent.
fn fake_load_report() -> LoadStatsRequest {
    let endpoint = |i: usize| UpstreamEndpointStats {
        address: Some(Address {
            address: Some(
                envoy_types::pb::envoy::config::core::v3::address::Address::SocketAddress(
                    SocketAddress {
                        address: format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255),
                        port_specifier: Some(socket_address::PortSpecifier::PortValue(80)),
                        ..Default::default()
                    },
                ),
            ),
        }),
        total_successful_requests: 7,
        ..Default::default()
    };
    LoadStatsRequest {
        node: Some(node("fake-lrs")),
        cluster_stats: vec![ClusterStats {
            cluster_name: "web".into(),
            upstream_locality_stats: vec![UpstreamLocalityStats {
                upstream_endpoint_stats: (0..FAKE_ENDPOINTS).map(endpoint).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[tokio::test]
async fn fake_cluster_and_endpoint_names_are_dropped_and_real_failures_stay_visible() {
    let s = Setup::new(&["a", "b"], Xds::Delta, crate::fleet_traffic::config).await;
    s.backends["a"].set_status(503);
    s.backends["b"].set_status(503);
    let load = Load::start(&[s.url("/")], 2, Duration::from_millis(5));

    let mut stats = MetricsServiceClient::connect(format!("http://{}", s.flotilla.xds))
        .await
        .expect("connect");
    let flushes = vec![fake_flush(true), fake_flush(false)];
    let stats_stream =
        tokio::spawn(async move { stats.stream_metrics(tokio_stream::iter(flushes)).await });
    let mut lrs = LoadReportingServiceClient::connect(format!("http://{}", s.flotilla.xds))
        .await
        .expect("connect");
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(fake_load_report()).await.expect("send");
    tx.send(fake_load_report()).await.expect("send");
    let mut asks = lrs
        .stream_load_stats(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("load stats stream")
        .into_inner();
    let _ = asks.message().await.expect("flotilla asks for reports");
    // Thousands of names it was never sent: not an Envoy; its stream is cut off.
    let cut = stats_stream
        .await
        .expect("join")
        .expect_err("the fake stats stream is cut off");
    assert_eq!(cut.code(), tonic::Code::ResourceExhausted, "{cut:?}");
    assert!(cut.message().contains("never sent"), "{cut:?}");
    let cut = asks
        .message()
        .await
        .expect_err("the fake load reports are cut off");
    assert_eq!(cut.code(), tonic::Code::ResourceExhausted, "{cut:?}");

    // The real Envoy's 5xx are visible, and nothing else is there.
    let traffic: Value = wait::until(
        "the real 5xx in the traffic view",
        Duration::from_secs(30),
        || async {
            let t = s.flotilla.json("/api/v1/traffic").await;
            let web = t["clusters"]
                .as_array()?
                .iter()
                .find(|c| c["name"] == "web")?
                .clone();
            (web["success_rate"].as_f64()? < 0.5 && web["endpoints"].as_array()?.len() == 2)
                .then_some(t)
        },
    )
    .await;
    let names: Vec<&str> = traffic["clusters"]
        .as_array()
        .expect("clusters")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["web"], "{traffic}");
    let endpoints: Vec<&str> = traffic["clusters"][0]["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .filter_map(|e| e["address"].as_str())
        .collect();
    let mut real = vec![s.addr("a"), s.addr("b")];
    real.sort();
    assert_eq!(endpoints, real, "{traffic}");

    let metrics = s.flotilla.text("/metrics").await;
    assert!(!metrics.contains("fake-"), "fake series in /metrics");
    assert!(
        !metrics.contains("endpoint=\"10."),
        "fake endpoint series in /metrics"
    );
    assert!(
        metrics.contains("flotilla_upstream_requests_total{cluster=\"web\",class=\"5xx\"}"),
        "{metrics}"
    );
    // The readiness check answers at once (a generous bound: it reads two flags).
    let started = Instant::now();
    assert!(s.flotilla.get("/readyz").await.status().is_success());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let _ = load.stop().await;
    drop(tx);
}
