//! `fault` on a route: delays and aborts Envoy (or a proxyless gRPC client, gRFC A33) injects
//! into a share of its requests, to test how clients and dashboards behave when a backend is
//! slow or failing.

use crate::config::diagnostic::Sink;
use crate::config::model::{AbortStatus, Fault, FaultAbort, FaultDelay};
use crate::config::reader::Fields;
use crate::config::shape::{Kind, Object, object, optional, required, secs};
use crate::config::yaml::Node;

/// The longest delay a fault may inject.
pub const MAX_FAULT_DELAY: std::time::Duration = secs(3600);

const PERCENT: Kind = Kind::Integer { min: 1, max: 100 };

pub(crate) const FAULT: Object = object(
    "fault",
    "Faults Envoy injects into a share of the route's requests (resilience testing).",
    &[
        optional(
            "delay",
            Kind::Object(&DELAY),
            "Hold requests before forwarding them.",
        ),
        optional(
            "abort",
            Kind::Object(&ABORT),
            "Answer requests with an error status instead of forwarding them.",
        ),
    ],
);

const DELAY: Object = object(
    "fault_delay",
    "A fixed delay added before forwarding.",
    &[
        required(
            "duration",
            Kind::Duration {
                min: crate::config::shape::ms(1),
                max: MAX_FAULT_DELAY,
            },
            "How long requests are held (1ms to 1h).",
        ),
        optional(
            "percent",
            PERCENT,
            "Share of requests delayed (default 100).",
        ),
    ],
);

/// gRPC status codes an abort may answer: every one but OK (0).
const GRPC_STATUS: Kind = Kind::Integer { min: 1, max: 16 };

const ABORT: Object = object(
    "fault_abort",
    "An error status answered instead of forwarding: `status` or `grpc_status`.",
    &[
        optional(
            "status",
            Kind::Integer { min: 200, max: 599 },
            "The HTTP status answered (gRPC clients see the gRPC status it maps to).",
        ),
        optional(
            "grpc_status",
            GRPC_STATUS,
            "A gRPC status code (1-16, e.g. 14 UNAVAILABLE) answered to gRPC calls instead of an HTTP status.",
        ),
        optional(
            "percent",
            PERCENT,
            "Share of requests aborted (default 100).",
        ),
    ],
);

/// Reads `fault`; the same on a proxyless gRPC listener's routes (gRPC runs faults, gRFC A33).
pub(crate) fn fault(sink: &mut Sink, node: &Node, path: &str) -> Option<Fault> {
    let f = Fields::read(sink, node, path, &FAULT)?;
    if f.get("delay").is_none() && f.get("abort").is_none() {
        sink.error(node, path, "a fault needs `delay`, `abort` or both");
        return None;
    }
    let delay = match f.get("delay") {
        Some(n) => delay(sink, n, &f.path("delay")).map(Some),
        None => Some(None),
    };
    let abort = match f.get("abort") {
        Some(n) => abort(sink, n, &f.path("abort")).map(Some),
        None => Some(None),
    };
    Some(Fault {
        delay: delay?,
        abort: abort?,
    })
}

fn delay(sink: &mut Sink, node: &Node, path: &str) -> Option<FaultDelay> {
    let f = Fields::read(sink, node, path, &DELAY)?;
    let duration = match f.get("duration") {
        Some(n) => f.duration(sink, n, "duration"),
        None => {
            sink.error(node, path, "missing field `duration`");
            None
        }
    };
    let percent = percent(sink, &f);
    Some(FaultDelay {
        duration: duration?,
        percent: percent?,
    })
}

fn abort(sink: &mut Sink, node: &Node, path: &str) -> Option<FaultAbort> {
    let f = Fields::read(sink, node, path, &ABORT)?;
    let status = match (f.get("status"), f.get("grpc_status")) {
        (Some(n), None) => f
            .integer(sink, n, "status")
            .map(|s| AbortStatus::Http(s as u16)),
        (None, Some(n)) => f.u32(sink, n, "grpc_status").map(AbortStatus::Grpc),
        (Some(_), Some(n)) => {
            sink.error(
                n,
                &f.path("grpc_status"),
                "give either `status` (HTTP) or `grpc_status`, not both",
            );
            None
        }
        (None, None) => {
            sink.error(node, path, "missing field `status` (or `grpc_status`)");
            None
        }
    };
    let percent = percent(sink, &f);
    Some(FaultAbort {
        status: status?,
        percent: percent?,
    })
}

fn percent(sink: &mut Sink, f: &Fields<'_>) -> Option<u32> {
    match f.get("percent") {
        Some(n) => f.u32(sink, n, "percent"),
        None => Some(100),
    }
}
