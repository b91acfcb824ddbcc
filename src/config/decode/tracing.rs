//! `listeners.<name>.tracing`: Envoy's OpenTelemetry tracer, spans exported over OTLP/gRPC
//! to a collector cluster (which therefore speaks HTTP/2).

use crate::config::diagnostic::Sink;
use crate::config::model::Tracing;
use crate::config::reader::{self, Fields};
use crate::config::shape::{Kind, Object, object, optional, required};
use crate::config::yaml::Node;

use super::route::RouteContext;

/// The longest `service_name`.
pub const MAX_SERVICE_NAME: usize = 256;

pub(crate) const TRACING: Object = object(
    "tracing",
    "OpenTelemetry tracing by Envoy, exported over OTLP/gRPC.",
    &[
        required(
            "collector",
            Kind::NonEmpty,
            "The cluster of the OTLP collector (upstream_protocol: http2).",
        ),
        optional(
            "sampling",
            Kind::Percent,
            "Percent of requests traced, 0 to 100, decimals allowed (default 100).",
        ),
        optional(
            "service_name",
            Kind::NonEmpty,
            "The service.name spans carry (default: the listener's name).",
        ),
    ],
);

pub(crate) fn tracing(
    sink: &mut Sink,
    node: &Node,
    path: &str,
    listener: &str,
    ctx: &mut RouteContext<'_>,
) -> Option<Tracing> {
    if let Some(l) = &ctx.grpc_listener {
        sink.error(
            node,
            path,
            format!(
                "gRPC clients have no Envoy to trace requests; `{l}` is a proxyless_grpc listener"
            ),
        );
        return None;
    }
    let f = Fields::read(sink, node, path, &TRACING)?;
    let collector = match f.get("collector") {
        Some(n) => {
            let c = reader::non_empty_string(sink, n, &f.path("collector"));
            if let Some(c) = &c {
                ctx.edge_cluster_ref(c, n, &f.path("collector"), Some("an OTLP/gRPC collector"));
            }
            c
        }
        None => {
            sink.error(node, path, "missing field `collector`");
            None
        }
    };
    let sampling = match f.get("sampling") {
        Some(n) => percent(sink, n, &f.path("sampling")),
        None => Some(100.0),
    };
    let service_name = match f.get("service_name") {
        Some(n) => reader::non_empty_string(sink, n, &f.path("service_name")).filter(|s| {
            let ok = s.len() <= MAX_SERVICE_NAME;
            if !ok {
                sink.error(
                    n,
                    &f.path("service_name"),
                    format!("at most {MAX_SERVICE_NAME} bytes"),
                );
            }
            ok
        }),
        None => Some(listener.to_string()),
    };
    Some(Tracing {
        collector: collector?,
        sampling: sampling?,
        service_name: service_name?,
    })
}

/// A number from 0 to 100 (`10`, `0.5`).
pub(crate) fn percent(sink: &mut Sink, node: &Node, path: &str) -> Option<f64> {
    let parsed = node
        .as_str()
        .and_then(|t| t.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite());
    match parsed {
        Some(v) if (0.0..=100.0).contains(&v) => Some(v),
        Some(v) => {
            sink.error(node, path, format!("{v}: a percentage is from 0 to 100"));
            None
        }
        None => {
            sink.error(
                node,
                path,
                "expected a percentage from 0 to 100 (`10`, `0.5`)",
            );
            None
        }
    }
}
