//! Fault injection on gRPC calls: `abort: { grpc_status }` answers a gRPC status and `delay`
//! holds calls, both in a proxyless gRPC client (grpcio runs the fault filter itself, gRFC
//! A33) and in a real Envoy in front of gRPC servers. Calls on other routes are untouched.

use std::time::{Duration, Instant};

use crate::support::envoy::{Envoy, Xds};
use crate::support::flotilla::Flotilla;
use crate::support::free_addr;
use crate::support::grpc::{Calls, GrpcBackends, GrpcClient};

const TARGET: &str = "greeter.test:50051";
const DELAY: Duration = Duration::from_millis(300);

/// Routes by the `x-chaos` header: `abort` answers RESOURCE_EXHAUSTED (8), `delay` holds.
fn routes() -> String {
    format!(
        "    routes:
      - {{ match: {{ prefix: /, headers: {{ x-chaos: abort }} }}, to: greeter, fault: {{ abort: {{ grpc_status: 8 }} }} }}
      - {{ match: {{ prefix: /, headers: {{ x-chaos: delay }} }}, to: greeter, fault: {{ delay: {{ duration: {}ms }} }} }}
      - {{ to: greeter }}
",
        DELAY.as_millis()
    )
}

/// Aborted calls fail with RESOURCE_EXHAUSTED and reach no server; delayed calls succeed after
/// the delay each; plain calls go through.
async fn faults_as_configured(client: &mut GrpcClient) {
    let aborted = client.calls(5, &[("x-chaos", "abort")]).await;
    assert_eq!((aborted.failures, aborted.to("a")), (5, 0), "{aborted:?}");
    assert!(
        aborted
            .errors
            .iter()
            .all(|e| e.starts_with("RESOURCE_EXHAUSTED")),
        "{aborted:?}"
    );
    let started = Instant::now();
    let delayed = client.calls(3, &[("x-chaos", "delay")]).await;
    let took = started.elapsed();
    assert_eq!((delayed.failures, delayed.to("a")), (0, 3), "{delayed:?}");
    assert!(took >= DELAY * 3, "3 calls, each held {DELAY:?}: {took:?}");
    let plain: Calls = client.calls(5, &[]).await;
    assert_eq!((plain.failures, plain.to("a")), (0, 5), "{plain:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proxyless_grpc_client_injects_the_route_faults() {
    let backends = GrpcBackends::start(&["a"]).await;
    let yaml = format!(
        "version: 1
clusters:
  greeter: {{ endpoints: [{a}] }}
listeners:
  \"{TARGET}\":
    proxyless_grpc: true
{routes}",
        a = backends.address("a"),
        routes = routes(),
    );
    let flotilla = Flotilla::start(&yaml).await;
    flotilla.wait_ready().await;
    let mut client = GrpcClient::start(&flotilla, "grpc-client-fault", TARGET).await;
    client.wait_ready().await;
    faults_as_configured(&mut client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_injects_grpc_faults_in_front_of_grpc_servers() {
    let backends = GrpcBackends::start(&["a"]).await;
    let listen = free_addr();
    let yaml = format!(
        "version: 1
clusters:
  greeter: {{ endpoints: [{a}], upstream_protocol: http2 }}
listeners:
  public:
    address: {listen}
{routes}",
        a = backends.address("a"),
        routes = routes(),
    );
    let flotilla = Flotilla::start(&yaml).await;
    flotilla.wait_ready().await;
    let envoy = Envoy::start(&flotilla, "edge-1", "edge", Xds::Sotw).await;
    envoy.wait_listener(listen).await;
    let mut client = GrpcClient::direct(listen);
    client.wait_ready().await;
    faults_as_configured(&mut client).await;
}
