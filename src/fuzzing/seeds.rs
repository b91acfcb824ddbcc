//! Seed inputs for the targets whose input is not text an operator writes: well-formed
//! requests and reports of the kinds Envoy sends, for the fuzzer to mutate. (The config
//! target is seeded with the files in `examples/`.) `fuzz/examples/seeds.rs` writes them.

use envoy_types::pb::envoy::config::core::v3::{
    Address, Node, SocketAddress, address, socket_address,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterStats, UpstreamEndpointStats, UpstreamLocalityStats,
};
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use envoy_types::pb::envoy::service::load_stats::v3::LoadStatsRequest;
use envoy_types::pb::envoy::service::metrics::v3::{StreamMetricsMessage, stream_metrics_message};
use envoy_types::pb::google::rpc::Status;
use envoy_types::pb::io::prometheus::client::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily,
};
use prost::Message;

use crate::cache::ResourceType;

/// Seeds for `target`, by name (none for the config target).
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "xds_request" => xds(),
        "stats_sink" => vec![stats().encode_to_vec()],
        "load_report" => vec![load().encode_to_vec()],
        "admin_api" => admin(),
        "state_file" => vec![state()],
        "history_file" => vec![history()],
        "diff_input" => vec![served()],
        "etcd_value" => super::etcd::seeds(),
        "dns_answer" => super::dns::seeds(),
        "sidecar_iptables" => super::iptables::seeds(),
        _ => Vec::new(),
    }
}

fn node() -> Node {
    Node {
        id: "edge-1".into(),
        cluster: "edge".into(),
        ..Node::default()
    }
}

fn framed(messages: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        out.push(0);
        out.extend_from_slice(&(m.len() as u32).to_be_bytes());
        out.extend_from_slice(m);
    }
    out
}

fn xds() -> Vec<Vec<u8>> {
    let sotw = |t: ResourceType, names: &[&str], version: &str, nonce: &str| DiscoveryRequest {
        version_info: version.into(),
        node: Some(node()),
        resource_names: names.iter().map(|n| n.to_string()).collect(),
        type_url: t.type_url().into(),
        response_nonce: nonce.into(),
        ..DiscoveryRequest::default()
    };
    let mut nack = sotw(ResourceType::Listener, &[], "", "1");
    nack.error_detail = Some(Status {
        code: 3,
        message: "rejected".into(),
        details: Vec::new(),
    });
    let sotw_stream = framed(&[
        sotw(ResourceType::Cluster, &[], "", "").encode_to_vec(),
        sotw(ResourceType::Cluster, &[], "v1", "1").encode_to_vec(),
        sotw(ResourceType::Endpoint, &["demo", "*"], "", "").encode_to_vec(),
        nack.encode_to_vec(),
    ]);
    let delta = |t: ResourceType, sub: &[&str], unsub: &[&str], nonce: &str| {
        DeltaDiscoveryRequest {
            node: Some(node()),
            type_url: t.type_url().into(),
            resource_names_subscribe: sub.iter().map(|n| n.to_string()).collect(),
            resource_names_unsubscribe: unsub.iter().map(|n| n.to_string()).collect(),
            initial_resource_versions: [("demo".to_string(), "abc".to_string())].into(),
            response_nonce: nonce.into(),
            ..DeltaDiscoveryRequest::default()
        }
        .encode_to_vec()
    };
    let delta_stream = framed(&[
        delta(ResourceType::Cluster, &[], &[], ""),
        delta(ResourceType::Endpoint, &["demo"], &[], ""),
        delta(ResourceType::Endpoint, &["*"], &["demo"], "1"),
    ]);
    // Byte 0: even is SotW, odd is delta; the rest picks the frame size.
    vec![
        [&[0u8][..], &sotw_stream].concat(),
        [&[6u8][..], &sotw_stream].concat(),
        [&[1u8][..], &delta_stream].concat(),
        [&[9u8][..], &delta_stream].concat(),
    ]
}

fn metric(cluster: &str, extra: Option<(&str, &str)>) -> Metric {
    let label = |n: &str, v: &str| LabelPair {
        name: Some(n.into()),
        value: Some(v.into()),
    };
    Metric {
        label: std::iter::once(label("envoy.cluster_name", cluster))
            .chain(extra.map(|(n, v)| label(n, v)))
            .collect(),
        ..Metric::default()
    }
}

fn stats() -> StreamMetricsMessage {
    let counter = |cluster, class: Option<&str>, v: f64| Metric {
        counter: Some(Counter {
            value: Some(v),
            ..Counter::default()
        }),
        ..metric(cluster, class.map(|c| ("envoy.response_code_class", c)))
    };
    let gauge = |cluster, v: f64| Metric {
        gauge: Some(Gauge { value: Some(v) }),
        ..metric(cluster, None)
    };
    let family = |name: &str, metric: Vec<Metric>| MetricFamily {
        name: Some(name.into()),
        metric,
        ..MetricFamily::default()
    };
    let histogram = Metric {
        histogram: Some(Histogram {
            sample_count: Some(3),
            sample_sum: Some(12.5),
            bucket: [(1.0, 1), (5.0, 2), (10.0, 3)]
                .map(|(b, c)| Bucket {
                    upper_bound: Some(b),
                    cumulative_count: Some(c),
                    ..Bucket::default()
                })
                .into(),
            ..Histogram::default()
        }),
        ..metric("demo", None)
    };
    StreamMetricsMessage {
        identifier: Some(stream_metrics_message::Identifier { node: Some(node()) }),
        envoy_metrics: vec![
            family(
                "cluster.upstream_rq_xx",
                vec![
                    counter("demo", Some("2"), 10.0),
                    counter("demo", Some("5"), 1.0),
                ],
            ),
            family(
                "cluster.upstream_rq_retry",
                vec![counter("demo", None, 2.0)],
            ),
            family("cluster.upstream_rq_active", vec![gauge("demo", 3.0)]),
            family("cluster.upstream_cx_active", vec![gauge("demo", 1.0)]),
            family(
                "cluster.outlier_detection.ejections_active",
                vec![gauge("demo", 0.0)],
            ),
            family("cluster.upstream_rq_time", vec![histogram]),
        ],
    }
}

fn load() -> LoadStatsRequest {
    let endpoint = |ip: &str, port| UpstreamEndpointStats {
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: ip.into(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
                ..SocketAddress::default()
            })),
        }),
        total_successful_requests: 7,
        total_error_requests: 1,
        total_requests_in_progress: 2,
        ..UpstreamEndpointStats::default()
    };
    LoadStatsRequest {
        node: Some(node()),
        cluster_stats: vec![ClusterStats {
            cluster_name: "demo".into(),
            upstream_locality_stats: vec![UpstreamLocalityStats {
                upstream_endpoint_stats: vec![endpoint("127.0.0.1", 8081), endpoint("::1", 8082)],
                ..UpstreamLocalityStats::default()
            }],
            ..ClusterStats::default()
        }],
    }
}

fn admin() -> Vec<Vec<u8>> {
    // Byte 0: the method (GET, POST, PUT, DELETE, PATCH, HEAD by its value modulo 6; +8
    // leaves out the JSON content type); then the path line, then the body.
    let endpoint = "/api/v1/clusters/demo/endpoints/127.0.0.1:8081";
    [
        (0u8, "/api/v1/state", ""),
        (0, "/api/v1/events?since=3", ""),
        (0, "/api/v1/traffic", ""),
        (1, &format!("{endpoint}/drain"), ""),
        (3, &format!("{endpoint}/drain"), ""),
        (2, &format!("{endpoint}/weight"), r#"{"weight": 5}"#),
        (3, &format!("{endpoint}/weight"), ""),
        (
            1,
            "/api/v1/clusters/demo/registrations",
            r#"{"address": "10.0.0.7:8080", "weight": 2, "ttl": "10s"}"#,
        ),
        (3, "/api/v1/clusters/demo/registrations/10.0.0.7:8080", ""),
    ]
    .iter()
    .map(|(method, path, body)| [&[*method][..], path.as_bytes(), b"\n", body.as_bytes()].concat())
    .collect()
}

fn state() -> Vec<u8> {
    br#"{
  "version": 1,
  "drains": [ { "cluster": "demo", "address": "127.0.0.1:8081" } ],
  "weights": [ { "cluster": "demo", "address": "[::1]:8082", "weight": 7 } ]
}"#
    .to_vec()
}

fn history() -> Vec<u8> {
    let entry = serde_json::json!({
        "id": 1,
        "revision": { "commit": "0123456789abcdef0123456789abcdef01234567", "dirty": false,
            "source": "git", "author": "Ada <ada@example.com>", "subject": "add web" },
        "at": 1_700_000_000_000u64,
        "trigger": "file",
        "who": "Ada <ada@example.com>",
        "summary": "listeners +web",
        "outcome": { "edge": { "sync": "OutOfSync", "rejected_by": ["edge-1"],
            "rejections": ["rejected by edge-1: web.yaml:4:3 listeners.web: bad"] } }
    });
    serde_json::json!({ "version": 1, "entries": [entry] })
        .to_string()
        .into_bytes()
}

fn served() -> Vec<u8> {
    let config = crate::config::parse_str(
        "web.yaml",
        "version: 1\nclusters:\n  web: { endpoints: [127.0.0.1:8080] }\nlisteners:\n  public: { address: 127.0.0.1:10080, routes: [{ to: web }] }\n",
    )
    .expect("a valid seed config");
    let served = crate::gitops::diff::served(&config, Some("abc".into())).expect("renders");
    serde_json::to_vec(&served).expect("serialises")
}
