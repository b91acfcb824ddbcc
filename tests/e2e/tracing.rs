//! Tracing (issue 25.4) through real Envoy: spans reach an OTLP/gRPC collector the test runs
//! (opentelemetry-proto's TraceService), named after the route and tagged with the cluster,
//! and the backend receives a W3C `traceparent`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;

use crate::support::envoy::Xds;
use crate::support::servers::serve_grpc;
use crate::support::setup::Setup;
use crate::support::wait;

/// A span as received: its name and its attributes as `key=value`.
type Span = (String, Vec<String>);

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().expect("spans");
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                for span in scope.spans {
                    let attributes = span
                        .attributes
                        .iter()
                        .map(|kv| {
                            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                                Some(any_value::Value::StringValue(s)) => s.clone(),
                                other => format!("{other:?}"),
                            };
                            format!("{}={value}", kv.key)
                        })
                        .collect();
                    spans.push((span.name, attributes));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_the_collector_and_the_backend_gets_a_traceparent() {
    let collector = Collector::default();
    let otel = serve_grpc(tonic::service::Routes::new(TraceServiceServer::new(
        collector.clone(),
    )))
    .await;
    let s = Setup::new(&["web"], Xds::Sotw, |b, addr| {
        format!(
            r#"
version: 1
clusters:
  web: {{ endpoints: ["{web}"] }}
  otel: {{ endpoints: ["{otel}"], upstream_protocol: http2 }}
listeners:
  public:
    address: {addr}
    tracing: {{ collector: otel, sampling: 100, service_name: edge-test }}
    routes:
      - {{ match: {{ prefix: /api }}, to: web }}
"#,
            web = b["web"].address()
        )
    })
    .await;
    let reply = s.wait_answers("/api/x").await;
    let traceparent = reply
        .headers()
        .get("seen-traceparent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        traceparent.starts_with("00-") && traceparent.len() == 55,
        "the backend sees a W3C traceparent, got {traceparent:?}"
    );
    // Envoy's exporter flushes every 5 s (or every 5 spans): send a few more.
    for _ in 0..5 {
        let _ = s.status_of("/api/y").await;
    }
    let (name, attributes) = wait::until(
        "spans at the collector",
        Duration::from_secs(30),
        || async { collector.spans.lock().expect("spans").first().cloned() },
    )
    .await;
    assert_eq!(name, "public.routes[0]", "spans are named after the route");
    assert!(
        attributes.iter().any(|a| a == "upstream_cluster=web"),
        "spans carry the cluster: {attributes:?}"
    );
}
