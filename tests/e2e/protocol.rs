//! The xDS protocol edges, driven by a raw gRPC client next to a real Envoy: bad requests get
//! a clear error on their own stream only, a client that does not keep up gets only the
//! newest state, SIGTERM ends streams cleanly.

use std::time::Duration;

use bytes::{Buf, BufMut};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};

use crate::support::client;
use crate::support::envoy::Xds;
use crate::support::setup::Setup;
use crate::support::wait;
use crate::support::xds_client::{CDS, DeltaClient, EDS, LDS, RDS, SotwClient, sotw_names};
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;

fn node(id: &str) -> Option<Node> {
    Some(crate::support::xds_client::node(id, "edge"))
}

async fn setup() -> Setup {
    Setup::new(&["a"], Xds::Sotw, |b, l| config(l, &b["a"].address(), "1s")).await
}

fn config(listen: std::net::SocketAddr, endpoint: &str, connect_timeout: &str) -> String {
    format!(
        "version: 1
clusters:
  web: {{ endpoints: [{endpoint}], connect_timeout: {connect_timeout} }}
listeners:
  public:
    address: {listen}
    routes: [ {{ to: web }} ]
"
    )
}

/// The real Envoy keeps working: traffic flows and it is still listed as connected.
async fn envoy_unaffected(s: &Setup) {
    assert_eq!(client::spread(&s.url("/"), 5).await.get("a"), Some(&5));
    let nodes = s.flotilla.json("/api/v1/nodes").await;
    assert!(
        nodes
            .as_array()
            .expect("nodes")
            .iter()
            .any(|n| n["node_id"] == "edge-1"),
        "{nodes}"
    );
}

#[tokio::test]
async fn a_first_request_without_node_is_refused_with_a_clear_error() {
    let s = setup().await;
    let mut ads = SotwClient::open(s.flotilla.xds, None).await;
    ads.send(DiscoveryRequest {
        type_url: CDS.into(),
        ..Default::default()
    })
    .await;
    let status = ads.recv().await.expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("node"), "{status:?}");
    envoy_unaffected(&s).await;
}

#[tokio::test]
async fn an_unknown_type_url_is_refused_and_other_streams_carry_on() {
    let s = setup().await;
    let mut ads = SotwClient::open(s.flotilla.xds, None).await;
    ads.send(DiscoveryRequest {
        node: node("raw-1"),
        type_url: "type.googleapis.com/envoy.service.runtime.v3.Runtime".into(),
        ..Default::default()
    })
    .await;
    let status = ads.recv().await.expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("unknown type_url"), "{status:?}");
    let events = s.flotilla.json("/api/v1/events").await.to_string();
    assert!(
        events.contains("raw-1: request refused") && events.contains("unknown type_url"),
        "{events}"
    );
    envoy_unaffected(&s).await;
}

/// Sends raw bytes as a gRPC message, to deliver something that is not a DiscoveryRequest.
#[derive(Clone, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

#[tokio::test]
async fn an_undecodable_request_is_refused_and_other_streams_carry_on() {
    let s = setup().await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", s.flotilla.xds))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let garbage = tokio_stream::iter(vec![vec![0xff, 0xff, 0xff, 0x01]]);
    let path = http::uri::PathAndQuery::from_static(
        "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources",
    );
    let result = grpc
        .streaming(tonic::Request::new(garbage), path, RawCodec)
        .await;
    let status = match result {
        Err(status) => status,
        Ok(response) => {
            let mut stream = response.into_inner();
            match tokio::time::timeout(Duration::from_secs(10), stream.message()).await {
                Ok(Err(status)) => status,
                other => panic!("expected an error, got {other:?}"),
            }
        }
    };
    assert_ne!(status.code(), Code::Ok);
    assert!(
        status.message().to_lowercase().contains("decode"),
        "{status:?}"
    );
    envoy_unaffected(&s).await;
}

#[tokio::test]
async fn a_client_that_falls_behind_gets_only_the_newest_state() {
    let s = setup().await;
    let mut ads = SotwClient::open(s.flotilla.xds, None).await;
    ads.send(DiscoveryRequest {
        node: node("slow-1"),
        type_url: CDS.into(),
        ..Default::default()
    })
    .await;
    let first = ads.recv().await.expect("first response");

    // Five config changes while the client does not acknowledge.
    for seconds in 2..=6 {
        let before = s.flotilla.json("/api/v1/state").await["config"]["version"].clone();
        s.flotilla
            .write_config(&config(s.listen, &s.addr("a"), &format!("{seconds}s")));
        wait::until("the config reload", Duration::from_secs(10), || async {
            (s.flotilla.json("/api/v1/state").await["config"]["version"] != before).then_some(())
        })
        .await;
    }
    // Nothing was queued for it meanwhile.
    assert!(
        ads.recv_within(Duration::from_millis(300)).await.is_none(),
        "a response arrived before the first was acknowledged"
    );

    ads.send(DiscoveryRequest {
        node: node("slow-1"),
        type_url: CDS.into(),
        version_info: first.version_info.clone(),
        response_nonce: first.nonce.clone(),
        ..Default::default()
    })
    .await;
    let newest = ads.recv().await.expect("newest state");
    let cluster = Cluster::decode(newest.resources[0].value.as_slice()).expect("cluster");
    assert_eq!(
        cluster.connect_timeout.expect("timeout").seconds,
        6,
        "the newest state, not the next one"
    );
    assert!(
        ads.recv_within(Duration::from_millis(500)).await.is_none(),
        "the intermediate states were not queued behind it"
    );
    envoy_unaffected(&s).await;
}

#[tokio::test]
async fn sigterm_ends_streams_and_exits_cleanly() {
    let mut s = setup().await;
    let mut ads = SotwClient::open(s.flotilla.xds, None).await;
    ads.send(DiscoveryRequest {
        node: node("raw-1"),
        type_url: CDS.into(),
        ..Default::default()
    })
    .await;
    ads.recv().await.expect("first response");
    let status = s.flotilla.terminate().await;
    assert!(status.success(), "exit status {status}");
    let ended = ads.recv().await.expect_err("stream ends");
    assert_eq!(ended.code(), Code::Unavailable, "{ended:?}");
    wait::until(
        "Envoy to see the control plane go",
        Duration::from_secs(10),
        || async { (s.envoy.stat("control_plane.connected_state").await == Some(0)).then_some(()) },
    )
    .await;
    // Envoy keeps forwarding on what it has.
    assert_eq!(client::spread(&s.url("/"), 5).await.get("a"), Some(&5));
}

#[tokio::test]
async fn fetch_returns_the_current_clusters_and_wrong_calls_get_clear_errors() {
    use envoy_types::pb::envoy::service::cluster::v3::cluster_discovery_service_client::ClusterDiscoveryServiceClient;
    use envoy_types::pb::envoy::service::endpoint::v3::endpoint_discovery_service_client::EndpointDiscoveryServiceClient;

    let s = setup().await;
    let url = format!("http://{}", s.flotilla.xds);
    let mut cds = ClusterDiscoveryServiceClient::connect(url.clone())
        .await
        .expect("connect");
    let fetched = cds
        .fetch_clusters(DiscoveryRequest {
            node: node("fetcher"),
            type_url: CDS.into(),
            ..Default::default()
        })
        .await
        .expect("fetch clusters")
        .into_inner();
    assert_eq!(fetched.type_url, CDS);
    assert!(!fetched.version_info.is_empty());
    let names: Vec<String> = fetched
        .resources
        .iter()
        .map(|any| {
            Cluster::decode(any.value.as_slice())
                .expect("a Cluster")
                .name
        })
        .collect();
    assert_eq!(names, ["web"]);

    // The same call again gives the same version: it is a function of the resources.
    let again = cds
        .fetch_clusters(DiscoveryRequest {
            node: node("fetcher"),
            ..Default::default()
        })
        .await
        .expect("fetch clusters")
        .into_inner();
    assert_eq!(again.version_info, fetched.version_info);

    // A type the service does not serve, and a fetch without a node, are refused.
    let mut eds = EndpointDiscoveryServiceClient::connect(url)
        .await
        .expect("connect");
    let wrong = eds
        .fetch_endpoints(DiscoveryRequest {
            node: node("fetcher"),
            type_url: CDS.into(),
            ..Default::default()
        })
        .await
        .expect_err("a cluster request on the endpoint service");
    assert_eq!(wrong.code(), Code::InvalidArgument);
    assert!(wrong.message().contains("not served"), "{wrong:?}");
    let nameless = eds
        .fetch_endpoints(DiscoveryRequest::default())
        .await
        .expect_err("no node");
    assert_eq!(nameless.code(), Code::InvalidArgument);
    envoy_unaffected(&s).await;
}

/// Issue 11, point 1. Proxyless gRPC asks for LDS, then RDS, then the clusters its routes
/// name, then their endpoints: it cannot hold a cluster before it has the listener, so
/// make-before-break must not keep the listener back (the spec: a SotW LDS/CDS response
/// carries every resource the client asked for).
#[tokio::test]
async fn a_client_that_asks_for_listeners_before_clusters_gets_them_at_once() {
    let s = setup().await;
    let mut ads = SotwClient::open(s.flotilla.xds, node("grpc-like-1")).await;
    ads.request(LDS, &[], None).await;
    let listeners = ads.recv().await.expect("listeners");
    assert_eq!(listeners.type_url, LDS);
    assert_eq!(sotw_names(&listeners), ["public"], "the listener at once");
    ads.request(LDS, &[], Some(&listeners)).await;
    ads.request(RDS, &["public"], None).await;
    let routes = ads.recv().await.expect("routes");
    assert_eq!(
        (routes.type_url.as_str(), sotw_names(&routes)),
        (RDS, vec!["public".to_string()])
    );
    ads.request(RDS, &["public"], Some(&routes)).await;
    ads.request(CDS, &["web"], None).await;
    let clusters = ads.recv().await.expect("clusters");
    assert_eq!(sotw_names(&clusters), ["web"]);
    ads.request(CDS, &["web"], Some(&clusters)).await;
    ads.request(EDS, &["web"], None).await;
    let endpoints = ads.recv().await.expect("endpoints");
    assert_eq!(sotw_names(&endpoints), ["web"]);
    ads.request(EDS, &["web"], Some(&endpoints)).await;
    wait::until("the client in sync", Duration::from_secs(10), || async {
        let nodes = s.flotilla.json("/api/v1/nodes").await;
        let me = nodes
            .as_array()?
            .iter()
            .find(|n| n["node_id"] == "grpc-like-1")?
            .clone();
        (me["in_sync"] == true).then_some(())
    })
    .await;
    envoy_unaffected(&s).await;
}

/// The node `id` in `/api/v1/nodes`, once present.
async fn node_status(s: &Setup, id: &str) -> serde_json::Value {
    wait::until(
        &format!("{id} in /api/v1/nodes"),
        Duration::from_secs(10),
        || async {
            let nodes = s.flotilla.json("/api/v1/nodes").await;
            nodes
                .as_array()?
                .iter()
                .find(|n| n["node_id"] == id)
                .cloned()
        },
    )
    .await
}

/// Writes `config` with `connect_timeout` and waits until flotilla has loaded it.
async fn reload(s: &Setup, connect_timeout: &str) {
    let before = s.flotilla.json("/api/v1/state").await["config"]["version"].clone();
    s.flotilla
        .write_config(&config(s.listen, &s.addr("a"), connect_timeout));
    wait::until("the config reload", Duration::from_secs(10), || async {
        (s.flotilla.json("/api/v1/state").await["config"]["version"] != before).then_some(())
    })
    .await;
}

fn rejection() -> Option<envoy_types::pb::google::rpc::Status> {
    Some(envoy_types::pb::google::rpc::Status {
        code: 3,
        message: "test client refuses this".into(),
        ..Default::default()
    })
}

/// Issue 11, points 2 and 5 (SotW). `/api/v1/nodes` shows the `version_info` exactly as sent
/// and as acknowledged; a NACK is reported as the client's (not "Envoy"'s); after a NACK the
/// client's state is unknown, so a revert to what it held before is sent, and the node is
/// in sync only once it ACKs.
#[tokio::test]
async fn sotw_versions_are_shown_as_sent_and_a_revert_after_a_nack_is_sent() {
    let s = setup().await;
    let mut ads = SotwClient::open(s.flotilla.xds, node("raw-sotw")).await;
    ads.request(CDS, &[], None).await;
    let first = ads.recv().await.expect("clusters");
    ads.request(CDS, &[], Some(&first)).await;
    let acked = wait::until("the ACK recorded", Duration::from_secs(10), || async {
        let n = node_status(&s, "raw-sotw").await;
        (n["in_sync"] == true).then_some(n)
    })
    .await;
    let cds = &acked["types"]["cds"];
    assert_eq!(cds["sent_version"], first.version_info.as_str(), "{acked}");
    assert_eq!(cds["acked_version"], first.version_info.as_str(), "{acked}");

    reload(&s, "2s").await;
    let changed = ads.recv().await.expect("the change");
    assert_ne!(changed.version_info, first.version_info);
    ads.send(DiscoveryRequest {
        type_url: CDS.into(),
        version_info: first.version_info.clone(),
        response_nonce: changed.nonce.clone(),
        error_detail: rejection(),
        ..Default::default()
    })
    .await;
    let nacked = wait::until("the NACK recorded", Duration::from_secs(10), || async {
        let n = node_status(&s, "raw-sotw").await;
        (n["types"]["cds"]["nacks"] == 1).then_some(n)
    })
    .await;
    let cds = &nacked["types"]["cds"];
    assert_eq!(
        cds["sent_version"],
        changed.version_info.as_str(),
        "{nacked}"
    );
    assert_eq!(
        cds["acked_version"],
        first.version_info.as_str(),
        "{nacked}"
    );
    assert_eq!(
        cds["last_nack"]["version"],
        changed.version_info.as_str(),
        "{nacked}"
    );
    assert_eq!(nacked["in_sync"], false, "{nacked}");
    let events = s.flotilla.json("/api/v1/events").await.to_string();
    assert!(
        events.contains("client raw-sotw rejected cds") && !events.contains("Envoy raw-sotw"),
        "{events}"
    );
    // Not sent again while the config stays as rejected.
    assert!(ads.recv_within(Duration::from_millis(500)).await.is_none());

    // The revert: the client may hold part of the rejected response, so it is sent.
    reload(&s, "1s").await;
    let reverted = ads.recv().await.expect("the revert, sent in full");
    assert_eq!(reverted.version_info, first.version_info);
    assert_eq!(sotw_names(&reverted), ["web"]);
    let n = node_status(&s, "raw-sotw").await;
    assert_eq!(n["in_sync"], false, "in sync only once ACKed: {n}");
    ads.request(CDS, &[], Some(&reverted)).await;
    wait::until("back in sync", Duration::from_secs(10), || async {
        (node_status(&s, "raw-sotw").await["in_sync"] == true).then_some(())
    })
    .await;
    envoy_unaffected(&s).await;
}

/// Issue 11, points 2 and 5 (delta): `system_version_info` as sent and acknowledged, and a
/// revert after a NACK is sent again.
#[tokio::test]
async fn delta_versions_are_shown_as_sent_and_a_revert_after_a_nack_is_sent() {
    let s = setup().await;
    let mut ads = DeltaClient::open(s.flotilla.xds, node("raw-delta")).await;
    ads.send(DeltaDiscoveryRequest {
        type_url: CDS.into(),
        ..Default::default()
    })
    .await;
    let first = ads.next().await.expect("clusters (acknowledged)");
    let acked = wait::until("the ACK recorded", Duration::from_secs(10), || async {
        let n = node_status(&s, "raw-delta").await;
        (n["in_sync"] == true).then_some(n)
    })
    .await;
    let cds = &acked["types"]["cds"];
    assert_eq!(
        cds["sent_version"],
        first.system_version_info.as_str(),
        "{acked}"
    );
    assert_eq!(
        cds["acked_version"],
        first.system_version_info.as_str(),
        "{acked}"
    );

    reload(&s, "2s").await;
    let changed = ads.recv().await.expect("the change");
    assert_eq!(changed.resources.len(), 1);
    ads.send(DeltaDiscoveryRequest {
        type_url: CDS.into(),
        response_nonce: changed.nonce.clone(),
        error_detail: rejection(),
        ..Default::default()
    })
    .await;
    let nacked = wait::until("the NACK recorded", Duration::from_secs(10), || async {
        let n = node_status(&s, "raw-delta").await;
        (n["types"]["cds"]["nacks"] == 1).then_some(n)
    })
    .await;
    let cds = &nacked["types"]["cds"];
    assert_eq!(
        cds["sent_version"],
        changed.system_version_info.as_str(),
        "{nacked}"
    );
    assert_eq!(
        cds["acked_version"],
        first.system_version_info.as_str(),
        "{nacked}"
    );
    assert_eq!(nacked["in_sync"], false, "{nacked}");
    assert!(ads.recv_within(Duration::from_millis(500)).await.is_none());

    reload(&s, "1s").await;
    let reverted = ads.next().await.expect("the revert");
    assert_eq!(reverted.names.iter().collect::<Vec<_>>(), ["web"]);
    wait::until("back in sync", Duration::from_secs(10), || async {
        (node_status(&s, "raw-delta").await["in_sync"] == true).then_some(())
    })
    .await;
    envoy_unaffected(&s).await;
}

/// Issue 11, point 3: only a first request with no names (or `*`) is a wildcard; a client
/// that named resources and then sends an empty list has unsubscribed from everything.
#[tokio::test]
async fn a_sotw_client_that_clears_its_names_gets_nothing_more() {
    let s = setup().await;
    let mut ads = SotwClient::open(s.flotilla.xds, node("raw-named")).await;
    ads.request(CDS, &["web"], None).await;
    let named = ads.recv().await.expect("the named cluster");
    assert_eq!(sotw_names(&named), ["web"]);
    ads.request(CDS, &[], Some(&named)).await;
    reload(&s, "2s").await;
    assert!(
        ads.recv_within(Duration::from_millis(500)).await.is_none(),
        "a change to a cluster the client no longer subscribes to is not sent"
    );
    envoy_unaffected(&s).await;
}

/// Issue 11, point 4 (delta): a subscription to a missing name is answered in
/// `removed_resources`; re-subscribing to a held resource re-sends it; unsubscribing from a
/// name while wildcard-subscribed is answered with the resource (it is in the wildcard).
#[tokio::test]
async fn a_delta_client_gets_an_answer_to_every_subscription() {
    let s = setup().await;
    let subscribe = |names: &[&str]| DeltaDiscoveryRequest {
        type_url: CDS.into(),
        resource_names_subscribe: names.iter().map(|n| n.to_string()).collect(),
        ..Default::default()
    };
    let mut named = DeltaClient::open(s.flotilla.xds, node("raw-delta-named")).await;
    named.send(subscribe(&["web", "missing"])).await;
    let got = named.next().await.expect("an answer");
    assert_eq!(got.names.iter().collect::<Vec<_>>(), ["web"]);
    assert_eq!(
        got.removed.iter().collect::<Vec<_>>(),
        ["missing"],
        "a name that does not exist is answered, not left to the client's timer"
    );
    named.send(subscribe(&["web"])).await;
    let again = named.next().await.expect("the held resource again");
    assert_eq!(again.names.iter().collect::<Vec<_>>(), ["web"]);

    let mut wildcard = DeltaClient::open(s.flotilla.xds, node("raw-delta-wildcard")).await;
    wildcard.send(subscribe(&[])).await;
    assert_eq!(wildcard.next().await.expect("all").names.len(), 1);
    wildcard.send(subscribe(&["web"])).await;
    wildcard.next().await.expect("web, subscribed by name");
    wildcard
        .send(DeltaDiscoveryRequest {
            type_url: CDS.into(),
            resource_names_unsubscribe: vec!["web".into()],
            ..Default::default()
        })
        .await;
    let answer = wildcard
        .next()
        .await
        .expect("the answer to the unsubscribe");
    assert_eq!(
        (
            answer.names.iter().map(String::as_str).collect::<Vec<_>>(),
            answer.removed.len()
        ),
        (vec!["web"], 0),
        "still in the wildcard: sent, not removed"
    );
    envoy_unaffected(&s).await;
}
