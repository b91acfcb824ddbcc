//! Passive health and failure handling: `outlier_detection`, `circuit_breakers`, `retries`.

use std::time::Duration;

use crate::config::diagnostic::Sink;
use crate::config::model::{CircuitBreakers, OutlierDetection, Retries};
use crate::config::reader::{self, Fields};
use crate::config::shape::{Kind, Object, ms, object, optional, secs};
use crate::config::yaml::Node;

use super::defaults::is_off;

/// Envoy's `retry_on` conditions (HTTP and gRPC), as its router accepts them.
pub const RETRY_ON: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "envoy-ratelimited",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

/// The `retry_on` conditions gRPC clients run (gRFC A44): gRPC status names only.
pub const GRPC_RETRY_ON: &[&str] = &[
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

const FAILURES: Kind = Kind::AnyOf(&[Kind::Integer { min: 1, max: 1000 }, Kind::Switch]);
const EJECTION_TIME: Kind = Kind::Duration {
    min: ms(100),
    max: secs(3600),
};
const BREAKER: Kind = Kind::Integer {
    min: 0,
    max: 10_000_000,
};

pub(crate) const OUTLIER_DETECTION: Object = object(
    "outlier_detection",
    "Passive health: Envoy ejects endpoints whose requests fail.",
    &[
        optional(
            "consecutive_5xx",
            FAILURES,
            "5xx answers in a row that eject an endpoint (off: never).",
        )
        .defaults_to("5"),
        optional(
            "consecutive_gateway_failure",
            FAILURES,
            "502/503/504 or connection failures in a row that eject an endpoint (off: never).",
        )
        .defaults_to("2"),
        optional(
            "interval",
            EJECTION_TIME,
            "How often Envoy evaluates ejections (default 1s).",
        )
        .defaults_to("1s"),
        optional(
            "base_ejection_time",
            EJECTION_TIME,
            "Time an endpoint stays ejected, times its ejections (default 10s).",
        )
        .defaults_to("10s"),
        optional(
            "max_ejection_percent",
            Kind::Integer { min: 0, max: 100 },
            "Percent of endpoints that may be ejected at once (default 50).",
        )
        .defaults_to("50"),
    ],
);

pub(crate) const CIRCUIT_BREAKERS: Object = object(
    "circuit_breakers",
    "Envoy's limits on what it sends to the cluster at once.",
    &[
        optional("max_connections", BREAKER, "Open connections at most."),
        optional(
            "max_pending_requests",
            BREAKER,
            "Requests waiting for a connection at most.",
        ),
        optional("max_requests", BREAKER, "Requests in flight at most."),
        optional("max_retries", BREAKER, "Retries in flight at most.").defaults_to("64"),
    ],
);

pub(crate) const RETRIES: Object = object(
    "retries",
    "When Envoy (or a gRPC client) tries a request again.",
    &[
        optional(
            "attempts",
            Kind::Integer { min: 0, max: 10 },
            "Retries per request (0: none).",
        )
        .defaults_to("2"),
        optional(
            "on",
            Kind::List(&Kind::Enum(RETRY_ON)),
            "Conditions that trigger a retry (gRPC routes: gRPC status names only).",
        )
        .defaults_to("[connect-failure, refused-stream, reset]"),
        optional(
            "previous_hosts",
            Kind::Bool,
            "Retry on a different endpoint than the ones tried.",
        )
        .defaults_to("true"),
        optional(
            "per_try_timeout",
            Kind::Duration {
                min: ms(1),
                max: secs(3600),
            },
            "Time each attempt may take.",
        ),
    ],
);

/// What a proxyless gRPC route retries when it says nothing: the gRPC counterpart of the
/// built-in Envoy default (a call that never reached a backend, UNAVAILABLE, is tried again).
pub(crate) fn grpc_default() -> Retries {
    Retries {
        attempts: 2,
        on: vec!["unavailable".to_string()],
        previous_hosts: false,
        per_try_timeout: None,
    }
}

pub(crate) fn outlier_detection(
    sink: &mut Sink,
    node: &Node,
    path: &str,
) -> Option<Option<OutlierDetection>> {
    if is_off(node) {
        return Some(None);
    }
    let f = Fields::read(sink, node, path, &OUTLIER_DETECTION)?;
    let count = |sink: &mut Sink, key: &str| match f.get(key) {
        Some(n) if is_off(n) => Some(None),
        Some(n) => f.u32(sink, n, key).map(Some),
        None => Some(None),
    };
    let consecutive_5xx = count(sink, "consecutive_5xx");
    let consecutive_gateway_failure = count(sink, "consecutive_gateway_failure");
    let duration = |sink: &mut Sink, key: &str, default: Duration| match f.get(key) {
        Some(n) => f.duration(sink, n, key),
        None => Some(default),
    };
    let interval = duration(sink, "interval", Duration::from_secs(1));
    let base_ejection_time = duration(sink, "base_ejection_time", Duration::from_secs(10));
    let max_ejection_percent = match f.get("max_ejection_percent") {
        Some(n) => f.u32(sink, n, "max_ejection_percent"),
        None => Some(50),
    };
    Some(Some(OutlierDetection {
        consecutive_5xx: consecutive_5xx?,
        consecutive_gateway_failure: consecutive_gateway_failure?,
        interval: interval?,
        base_ejection_time: base_ejection_time?,
        max_ejection_percent: max_ejection_percent?,
    }))
}

pub(crate) fn circuit_breakers(
    sink: &mut Sink,
    node: &Node,
    path: &str,
) -> Option<Option<CircuitBreakers>> {
    if is_off(node) {
        return Some(None);
    }
    let keys = [
        "max_connections",
        "max_pending_requests",
        "max_requests",
        "max_retries",
    ];
    let f = Fields::read(sink, node, path, &CIRCUIT_BREAKERS)?;
    let mut values = [None; 4];
    let mut ok = true;
    for (slot, key) in values.iter_mut().zip(keys) {
        if let Some(n) = f.get(key) {
            match f.u32(sink, n, key) {
                Some(v) => *slot = Some(v),
                None => ok = false,
            }
        }
    }
    let [
        max_connections,
        max_pending_requests,
        max_requests,
        max_retries,
    ] = values;
    ok.then_some(Some(CircuitBreakers {
        max_connections,
        max_pending_requests,
        max_requests,
        max_retries,
    }))
}

/// `grpc`: the route belongs to a proxyless gRPC listener, whose clients know fewer retry
/// settings than Envoy (conditions are gRPC status names; no per-try timeout, no host
/// predicate).
pub(crate) fn retries(
    sink: &mut Sink,
    node: &Node,
    path: &str,
    grpc: bool,
) -> Option<Option<Retries>> {
    if is_off(node) {
        return Some(None);
    }
    let f = Fields::read(sink, node, path, &RETRIES)?;
    let attempts = match f.get("attempts") {
        Some(n) => f.u32(sink, n, "attempts"),
        None => Some(1),
    };
    let on = match (f.get("on"), grpc) {
        (Some(n), _) => retry_on(sink, n, &f.path("on"), grpc),
        (None, false) => Some(vec!["connect-failure".to_string(), "reset".to_string()]),
        (None, true) => Some(vec!["unavailable".to_string()]),
    };
    if grpc {
        for key in ["per_try_timeout", "previous_hosts"] {
            if let Some(n) = f.get(key) {
                sink.error(
                    n,
                    &f.path(key),
                    "gRPC clients do not run this (they retry on `on` with `attempts` only): remove it from this proxyless_grpc route",
                );
            }
        }
    }
    let previous_hosts = match f.get("previous_hosts") {
        Some(n) => reader::boolean(sink, n, &f.path("previous_hosts")),
        None => Some(false),
    };
    let per_try_timeout = match f.get("per_try_timeout") {
        Some(n) => f.duration(sink, n, "per_try_timeout").map(Some),
        None => Some(None),
    };
    let attempts = attempts?;
    if attempts == 0 {
        return Some(None);
    }
    Some(Some(Retries {
        attempts,
        on: on?,
        previous_hosts: previous_hosts?,
        per_try_timeout: per_try_timeout?,
    }))
}

fn retry_on(sink: &mut Sink, node: &Node, path: &str, grpc: bool) -> Option<Vec<String>> {
    let (known, who) = if grpc {
        (GRPC_RETRY_ON, "gRPC clients know")
    } else {
        (RETRY_ON, "Envoy knows")
    };
    let items = reader::list(sink, node, path)?;
    if items.is_empty() {
        sink.error(node, path, "list at least one condition");
        return None;
    }
    let mut out: Vec<String> = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let ipath = format!("{path}[{i}]");
        let Some(text) = reader::string(sink, item, &ipath) else {
            ok = false;
            continue;
        };
        if !known.contains(&text.as_str()) {
            let hint = if grpc {
                format!(
                    " (gRPC routes take gRPC status names: {})",
                    known.join(", ")
                )
            } else {
                known
                    .iter()
                    .min_by_key(|c| strsim::levenshtein(c, &text))
                    .map(|c| format!(" (did you mean `{c}`?)"))
                    .unwrap_or_default()
            };
            sink.error(
                item,
                &ipath,
                format!("`{text}` is not a retry condition {who}{hint}"),
            );
            ok = false;
        } else if !out.contains(&text) {
            out.push(text);
        }
    }
    ok.then_some(out)
}
