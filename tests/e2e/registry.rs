//! Registration streams (flotilla.registry.v1) against real Envoy: endpoints live as long as
//! their stream, bad input is refused on the stream without touching other instances, and the
//! drain handshake lets every backend restart under load without a failed request.

use std::time::{Duration, Instant};

use flotilla::registry::client::{Client, ClientError};
use flotilla::registry::proto::Endpoint;
use serde_json::Value;

use crate::support::backend::Backend;
use crate::support::client::Load;
use crate::support::envoy::{Envoy, Xds};
use crate::support::flotilla::Flotilla;
use crate::support::{free_addr, registration, wait};

pub struct Setup {
    pub flotilla: Flotilla,
    pub envoy: Envoy,
    pub listen: std::net::SocketAddr,
    /// A configured endpoint of `web`.
    pub configured: Backend,
}

impl Setup {
    /// Cluster `web` with one configured endpoint, and cluster `pool` with none: instances
    /// fill it by registering.
    pub async fn new(xds: Xds) -> Setup {
        let configured = Backend::start("configured").await;
        let listen = free_addr();
        let flotilla = Flotilla::start(&format!(
            "version: 1
clusters:
  web: {{ endpoints: [{}], registrations: {{}} }}
  pool: {{ endpoints: [], registrations: {{}} }}
  closed: {{ endpoints: [] }}
listeners:
  public:
    address: {listen}
    routes: [ {{ to: pool }} ]
",
            configured.address()
        ))
        .await;
        let envoy = Envoy::start(&flotilla, "edge-1", "edge", xds).await;
        envoy.wait_listener(listen).await;
        Setup {
            flotilla,
            envoy,
            listen,
            configured,
        }
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.flotilla.xds.to_string())
            .await
            .expect("registry stream")
    }

    pub async fn wait_envoy_has(&self, address: &str, present: bool) {
        wait::until(
            &format!(
                "Envoy to {} {address}",
                if present { "have" } else { "drop" }
            ),
            Duration::from_secs(10),
            || async {
                let flags = self.envoy.health_flags("pool", address).await;
                (flags.is_some() == present && flags.is_none_or(|f| f.contains("healthy")))
                    .then_some(())
            },
        )
        .await;
    }

    pub async fn registrations(&self) -> Vec<Value> {
        registration::listed(&self.flotilla).await
    }
}

pub fn endpoint(cluster: &str, address: &str) -> Endpoint {
    Endpoint {
        cluster: cluster.into(),
        address: address.into(),
        weight: 1,
        ..Default::default()
    }
}

fn rejected_code(e: ClientError) -> String {
    match e {
        ClientError::Rejected { code, .. } => code,
        other => panic!("expected a rejection, got {other}"),
    }
}

#[tokio::test]
async fn an_endpoint_lives_while_its_stream_lives_and_leaves_at_once_when_it_breaks() {
    let s = Setup::new(Xds::Delta).await;
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let mut client = s.client().await;
    let mut e = endpoint("pool", &a.address());
    e.zone = "z1".into();
    e.metadata.insert("version".into(), "1.2.3".into());
    client.register(e).await.expect("register a");
    client
        .register(endpoint("pool", &b.address()))
        .await
        .expect("register b on the same stream");
    s.wait_envoy_has(&a.address(), true).await;
    s.wait_envoy_has(&b.address(), true).await;
    let regs = s.registrations().await;
    assert_eq!(regs.len(), 2, "{regs:?}");
    let ra = regs.iter().find(|r| r["address"] == a.address()).unwrap();
    assert_eq!(ra["metadata"]["version"], "1.2.3");
    assert_eq!(ra["zone"], "z1");
    assert!(ra["stream"].is_u64());

    // The stream breaks (the connection is dropped, as when the process is killed).
    let broke = Instant::now();
    drop(client);
    s.wait_envoy_has(&a.address(), false).await;
    s.wait_envoy_has(&b.address(), false).await;
    let took = broke.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "left Envoy {took:?} after the stream broke"
    );
    assert!(s.registrations().await.is_empty());
}

#[tokio::test]
async fn a_killed_register_process_leaves_within_a_second() {
    let s = Setup::new(Xds::Sotw).await;
    let a = Backend::start("a").await;
    let mut child = tokio::process::Command::new(crate::support::flotilla_bin())
        .args(["register", "--registry", &s.flotilla.xds.to_string()])
        .args(["--cluster", "pool", "--address", &a.address()])
        .args(["--", "sleep", "30"])
        .kill_on_drop(true)
        .spawn()
        .expect("flotilla register");
    s.wait_envoy_has(&a.address(), true).await;
    let killed = Instant::now();
    child.start_kill().expect("kill -9");
    s.wait_envoy_has(&a.address(), false).await;
    assert!(
        killed.elapsed() < Duration::from_secs(2),
        "{:?}",
        killed.elapsed()
    );
    let _ = child.wait().await;
}

#[tokio::test]
async fn bad_registrations_are_refused_on_the_stream_and_leave_nothing_behind() {
    let s = Setup::new(Xds::SotwNoAds).await;
    let good = Backend::start("good").await;
    let mut other = s.client().await;
    other
        .register(endpoint("pool", &good.address()))
        .await
        .expect("another instance registers");

    let mut c = s.client().await;
    let code = rejected_code(
        c.register(endpoint("nope", "127.0.0.1:9"))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, "NOT_FOUND");
    let code = rejected_code(
        c.register(endpoint("closed", "127.0.0.1:9"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        code, "PERMISSION_DENIED",
        "a cluster without `registrations:`"
    );
    // The Envoy's own admin interface (announced by the bootstrap flotilla wrote).
    let code = rejected_code(
        c.register(endpoint("pool", &s.envoy.admin.to_string()))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, "PERMISSION_DENIED", "an Envoy's admin interface");
    let code = rejected_code(
        c.register(endpoint("web", &s.configured.address()))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, "ALREADY_EXISTS");
    let code = rejected_code(
        c.register(endpoint("pool", &good.address()))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, "ALREADY_EXISTS", "another instance's address");
    let code = rejected_code(
        c.register(endpoint("pool", "not-an-address"))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, "INVALID_ARGUMENT");
    // The cluster's admission rules hold on the stream as over HTTP.
    let code = rejected_code(
        c.register(endpoint("pool", "169.254.169.254:80"))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, "INVALID_ARGUMENT", "a metadata service address");

    // 10,000 registrations from one stream: the first ones up to the limit, then refusals.
    let mut accepted = 0;
    let mut refused = 0;
    for i in 0..10_000u32 {
        let address = format!("127.0.{}.{}:80", 1 + i / 250, 1 + i % 250);
        match c.register(endpoint("pool", &address)).await {
            Ok(()) => accepted += 1,
            Err(e) => {
                assert_eq!(rejected_code(e), "RESOURCE_EXHAUSTED");
                refused += 1;
            }
        }
    }
    assert_eq!(
        accepted,
        flotilla::runtime::session::MAX_ENDPOINTS_PER_STREAM
    );
    assert_eq!(refused, 10_000 - accepted);
    drop(c);
    wait::until(
        "the flood's registrations to go",
        Duration::from_secs(5),
        || async { (s.registrations().await.len() == 1).then_some(()) },
    )
    .await;
    // The other instance never noticed.
    s.wait_envoy_has(&good.address(), true).await;
    assert_eq!(s.registrations().await[0]["address"], good.address());
}

#[tokio::test]
async fn garbage_after_a_registration_ends_that_stream_only() {
    let s = Setup::new(Xds::Delta).await;
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let mut other = s.client().await;
    other
        .register(endpoint("pool", &b.address()))
        .await
        .unwrap();

    let mut raw = raw::RawStream::open(s.flotilla.xds).await;
    raw.send(raw::register_bytes("pool", &a.address())).await;
    raw.expect_registered().await;
    s.wait_envoy_has(&a.address(), true).await;
    raw.send(vec![0xff, 0xff, 0xff, 0xff, 0x0f, 0x08]).await;
    let status = raw.expect_status().await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("unreadable message"),
        "{status:?}"
    );
    s.wait_envoy_has(&a.address(), false).await;
    s.wait_envoy_has(&b.address(), true).await;
    assert_eq!(s.registrations().await.len(), 1);
}

#[tokio::test]
async fn a_rolling_restart_of_every_backend_under_load_fails_no_request() {
    let s = Setup::new(Xds::Delta).await;
    let mut instances = Vec::new();
    for i in 0..3 {
        let backend = Backend::start(&format!("v1-{i}")).await;
        backend.set_delay(Duration::from_millis(40));
        let mut client = s.client().await;
        client
            .register(endpoint("pool", &backend.address()))
            .await
            .unwrap();
        s.wait_envoy_has(&backend.address(), true).await;
        instances.push((backend, client));
    }
    let url = format!("http://{}/", s.listen);
    let load = Load::start(&[url], 8, Duration::from_millis(2));
    load.wait_for_more(200).await;

    let mut drains = Vec::new();
    for i in 0..3 {
        // Start the replacement first, then drain the old instance and stop it.
        let fresh = Backend::start(&format!("v2-{i}")).await;
        fresh.set_delay(Duration::from_millis(40));
        let mut fresh_client = s.client().await;
        fresh_client
            .register(endpoint("pool", &fresh.address()))
            .await
            .unwrap();
        s.wait_envoy_has(&fresh.address(), true).await;

        let (mut old, mut old_client) = instances.remove(0);
        let started = Instant::now();
        let may_exit = old_client.leave(Duration::from_secs(20)).await.unwrap();
        assert!(!may_exit.deadline_passed, "{may_exit:?}");
        assert_eq!(
            old.arrivals(),
            old.hits(),
            "told to exit with requests in flight"
        );
        drains.push(started.elapsed());
        old.kill();
        drop(old_client);
        s.wait_envoy_has(&old.address(), false).await;
        instances.push((fresh, fresh_client));
        load.wait_for_more(100).await;
    }
    let report = load.stop().await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert!(report.ok > 500, "{report:?}");
    let served: Vec<&String> = report.by_backend.keys().collect();
    for i in 0..3 {
        assert!(
            served.iter().any(|b| **b == format!("v2-{i}")),
            "{served:?}"
        );
    }
    eprintln!("drain handshakes took {drains:?}");
}

#[tokio::test]
async fn an_operator_drain_runs_the_same_handshake() {
    let s = Setup::new(Xds::Sotw).await;
    let a = Backend::start("a").await;
    let mut client = s.client().await;
    client
        .register(endpoint("pool", &a.address()))
        .await
        .unwrap();
    s.wait_envoy_has(&a.address(), true).await;
    let resp = reqwest::Client::new()
        .post(format!(
            "http://{}/api/v1/clusters/pool/registrations/{}/leave",
            s.flotilla.admin,
            a.address()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let may_exit = tokio::time::timeout(Duration::from_secs(20), client.watch())
        .await
        .expect("told to exit")
        .unwrap();
    assert!(!may_exit.deadline_passed);
    assert_eq!(may_exit.endpoints[0].address, a.address());
    let flags = s.envoy.health_flags("pool", &a.address()).await.unwrap();
    assert!(flags.contains("draining"), "{flags}");
}

/// A registration stream written by hand, to send bytes no client library would.
mod raw {
    use std::net::SocketAddr;

    use bytes::{Buf, BufMut};
    use flotilla::registry::proto::register_request::Request;
    use flotilla::registry::proto::register_response::Response;
    use flotilla::registry::proto::{RegisterRequest, RegisterResponse};
    use prost::Message;
    use tokio::sync::mpsc;
    use tokio_stream::wrappers::ReceiverStream;
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

    /// Sends raw bytes as messages; decodes responses as RegisterResponse.
    #[derive(Default)]
    struct RawCodec;

    struct RawEncoder;
    struct ResponseDecoder;

    impl Encoder for RawEncoder {
        type Item = Vec<u8>;
        type Error = tonic::Status;
        fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
            dst.put_slice(&item);
            Ok(())
        }
    }

    impl Decoder for ResponseDecoder {
        type Item = RegisterResponse;
        type Error = tonic::Status;
        fn decode(
            &mut self,
            src: &mut DecodeBuf<'_>,
        ) -> Result<Option<RegisterResponse>, tonic::Status> {
            let bytes = src.copy_to_bytes(src.remaining());
            RegisterResponse::decode(bytes)
                .map(Some)
                .map_err(|e| tonic::Status::internal(e.to_string()))
        }
    }

    impl Codec for RawCodec {
        type Encode = Vec<u8>;
        type Decode = RegisterResponse;
        type Encoder = RawEncoder;
        type Decoder = ResponseDecoder;
        fn encoder(&mut self) -> RawEncoder {
            RawEncoder
        }
        fn decoder(&mut self) -> ResponseDecoder {
            ResponseDecoder
        }
    }

    pub fn register_bytes(cluster: &str, address: &str) -> Vec<u8> {
        RegisterRequest {
            request: Some(Request::Register(super::endpoint(cluster, address))),
        }
        .encode_to_vec()
    }

    pub struct RawStream {
        tx: mpsc::Sender<Vec<u8>>,
        responses: tonic::Streaming<RegisterResponse>,
    }

    impl RawStream {
        pub async fn open(addr: SocketAddr) -> RawStream {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
                .expect("connect");
            let mut grpc = tonic::client::Grpc::new(channel);
            grpc.ready().await.expect("ready");
            let (tx, rx) = mpsc::channel(4);
            let path =
                http::uri::PathAndQuery::from_static("/flotilla.registry.v1.Registry/Register");
            let responses = grpc
                .streaming(tonic::Request::new(ReceiverStream::new(rx)), path, RawCodec)
                .await
                .expect("stream")
                .into_inner();
            RawStream { tx, responses }
        }

        pub async fn send(&self, bytes: Vec<u8>) {
            self.tx.send(bytes).await.expect("send");
        }

        pub async fn expect_registered(&mut self) {
            let r = self
                .responses
                .message()
                .await
                .expect("answer")
                .expect("open");
            assert!(matches!(r.response, Some(Response::Registered(_))), "{r:?}");
        }

        pub async fn expect_status(&mut self) -> tonic::Status {
            loop {
                match self.responses.message().await {
                    Ok(Some(_)) => {}
                    Ok(None) => panic!("stream ended without a status"),
                    Err(status) => return status,
                }
            }
        }
    }
}

#[tokio::test]
async fn flotilla_register_drains_before_passing_sigterm_on_and_exits_with_the_childs_status() {
    let s = Setup::new(Xds::Delta).await;
    let address = free_addr();
    let mut register = registration::command(s.flotilla.xds, "pool", &address.to_string())
        .args(["--weight", "2", "--drain-deadline", "10s", "--"])
        .args(registration::instance_exiting_7(address))
        .spawn()
        .expect("flotilla register");
    s.wait_envoy_has(&address.to_string(), true).await;
    let reply = reqwest::get(format!("http://{}/", s.listen)).await.unwrap();
    assert_eq!(reply.status(), 200, "the instance serves through Envoy");
    registration::sigterm_drains(&mut register, &s.envoy, "pool", address).await;
    s.wait_envoy_has(&address.to_string(), false).await;
    assert!(s.registrations().await.is_empty());
}
