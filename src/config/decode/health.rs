//! `health_check`: flotilla's own active probes.

use std::collections::BTreeMap;

use crate::config::diagnostic::Sink;
use crate::config::model::{GrpcProbe, HealthCheck, HttpProbe, Probe, TcpProbe};
use crate::config::reader::{self, Fields};
use crate::config::shape::{Kind, Object, ms, object, optional, secs};
use crate::config::yaml::Node;

const THRESHOLD: Kind = Kind::Integer { min: 1, max: 100 };

pub(crate) const HEALTH_CHECK: Object = object(
    "health_check",
    "Active probes run by flotilla: one of http, tcp or grpc, and their timing.",
    &[
        optional("http", Kind::Object(&HTTP), "An HTTP GET probe."),
        optional(
            "tcp",
            Kind::AnyOf(&[Kind::Null, Kind::Object(&TCP)]),
            "A TCP connect probe (optionally send/expect bytes).",
        ),
        optional(
            "grpc",
            Kind::AnyOf(&[Kind::Null, Kind::Object(&GRPC)]),
            "A grpc.health.v1 probe.",
        ),
        optional(
            "interval",
            Kind::Duration {
                min: ms(100),
                max: secs(3600),
            },
            "Time between probes of one endpoint (default 1s).",
        )
        .defaults_to("1s"),
        optional(
            "timeout",
            Kind::Duration {
                min: ms(10),
                max: secs(600),
            },
            "A probe not answered within this fails (default 500ms; at most interval).",
        )
        .defaults_to("500ms"),
        optional(
            "jitter",
            Kind::Duration {
                min: secs(0),
                max: secs(600),
            },
            "Random extra delay per probe, below interval (default 100ms).",
        )
        .defaults_to("100ms"),
        optional(
            "healthy_threshold",
            THRESHOLD,
            "Passing probes in a row that make an endpoint healthy (default 2).",
        )
        .defaults_to("2"),
        optional(
            "unhealthy_threshold",
            THRESHOLD,
            "Failing probes in a row that make an endpoint unhealthy (default 2).",
        )
        .defaults_to("2"),
    ],
);

const HTTP: Object = object(
    "http_probe",
    "An HTTP GET probe.",
    &[
        optional("path", Kind::NonEmpty, "Path, starting with / (default /).").defaults_to("/"),
        optional("host", Kind::NonEmpty, "Host header."),
        optional(
            "expected_statuses",
            Kind::List(&Kind::AnyOf(&[
                Kind::Integer { min: 100, max: 599 },
                Kind::String,
            ])),
            "Healthy statuses: codes or ranges like \"200-299\" (default 200-299).",
        )
        .defaults_to("[\"200-299\"]"),
        optional(
            "body_contains",
            Kind::NonEmpty,
            "Text the response body must contain.",
        ),
        optional(
            "headers",
            Kind::Map(&Kind::Scalar),
            "Request headers to send.",
        ),
    ],
);

const TCP: Object = object(
    "tcp_probe",
    "A TCP probe: connect, optionally send bytes and expect bytes back.",
    &[
        optional("send", Kind::NonEmpty, "Text to send after connecting."),
        optional("expect", Kind::NonEmpty, "Text the answer must contain."),
    ],
);

const GRPC: Object = object(
    "grpc_probe",
    "A grpc.health.v1 Check probe.",
    &[
        optional(
            "service",
            Kind::AnyOf(&[Kind::Null, Kind::String]),
            "Service name to check (default \"\": the whole server).",
        )
        .defaults_to("\"\""),
        optional("authority", Kind::NonEmpty, ":authority of the call."),
    ],
);

/// Decodes a layered `health_check` block. `Ok(None)` means no probe is configured.
pub(crate) fn health_check(
    sink: &mut Sink,
    node: &Node,
    path: &str,
    written_here: bool,
) -> Option<Option<HealthCheck>> {
    let f = Fields::read(sink, node, path, &HEALTH_CHECK)?;
    let probes: Vec<&str> = f
        .keys()
        .filter(|k| matches!(*k, "http" | "tcp" | "grpc"))
        .collect();
    let probe = match probes.as_slice() {
        [] => {
            if written_here {
                sink.error(
                    node,
                    path,
                    "a health check needs a probe: one of http, tcp or grpc",
                );
                return None;
            }
            return Some(None);
        }
        [kind] => {
            let probe_node = f.get(kind)?;
            let probe_path = f.path(kind);
            match *kind {
                "http" => Probe::Http(http(sink, probe_node, &probe_path)?),
                "tcp" => Probe::Tcp(tcp(sink, probe_node, &probe_path)?),
                _ => Probe::Grpc(grpc(sink, probe_node, &probe_path)?),
            }
        }
        _ => {
            sink.error(
                node,
                path,
                format!("choose one probe, not {}", probes.join(" and ")),
            );
            return None;
        }
    };
    let interval = f.duration(sink, f.get("interval")?, "interval");
    let timeout = f.duration(sink, f.get("timeout")?, "timeout");
    let jitter = f.duration(sink, f.get("jitter")?, "jitter");
    let healthy = f.u32(sink, f.get("healthy_threshold")?, "healthy_threshold");
    let unhealthy = f.u32(sink, f.get("unhealthy_threshold")?, "unhealthy_threshold");
    let (interval, timeout, jitter) = (interval?, timeout?, jitter?);
    if timeout > interval {
        sink.error(
            f.get("timeout")?,
            &f.path("timeout"),
            format!(
                "timeout ({}) must not exceed interval ({}): probes would overlap",
                crate::config::duration::format(timeout),
                crate::config::duration::format(interval)
            ),
        );
    }
    if jitter >= interval {
        sink.error(
            f.get("jitter")?,
            &f.path("jitter"),
            "jitter must be less than interval",
        );
    }
    Some(Some(HealthCheck {
        probe,
        interval,
        timeout,
        jitter,
        healthy_threshold: healthy?,
        unhealthy_threshold: unhealthy?,
        tls: None,
    }))
}

fn http(sink: &mut Sink, node: &Node, path: &str) -> Option<HttpProbe> {
    let f = Fields::read(sink, node, path, &HTTP)?;
    let probe_path = match f.get("path") {
        Some(n) => {
            let p = reader::non_empty_string(sink, n, &f.path("path"))?;
            if !p.starts_with('/') {
                sink.error(n, &f.path("path"), "must start with /");
            }
            p
        }
        None => "/".to_string(),
    };
    let host = match f.get("host") {
        Some(n) => Some(reader::non_empty_string(sink, n, &f.path("host"))?),
        None => None,
    };
    let expected_statuses = match f.get("expected_statuses") {
        Some(n) => statuses(sink, n, &f.path("expected_statuses"))?,
        None => vec![(200, 299)],
    };
    let body_contains = match f.get("body_contains") {
        Some(n) => Some(reader::non_empty_string(sink, n, &f.path("body_contains"))?),
        None => None,
    };
    let mut headers = BTreeMap::new();
    if let Some(n) = f.get("headers") {
        let hpath = f.path("headers");
        for (k, v) in reader::named_entries(sink, n, &hpath)? {
            let name = reader::non_empty_string(sink, k, &hpath)?;
            let value = reader::string(sink, v, &reader::join(&hpath, &name))?;
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                sink.error(k, &hpath, format!("`{name}` is not a valid header name"));
            }
            headers.insert(name.to_ascii_lowercase(), value);
        }
    }
    Some(HttpProbe {
        path: probe_path,
        host,
        expected_statuses,
        body_contains,
        headers,
    })
}

/// `[200, 204, "300-399"]`: single codes or inclusive ranges.
fn statuses(sink: &mut Sink, node: &Node, path: &str) -> Option<Vec<(u16, u16)>> {
    let items = reader::list(sink, node, path)?;
    if items.is_empty() {
        sink.error(node, path, "list at least one status");
        return None;
    }
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let ipath = format!("{path}[{i}]");
        let text = reader::string(sink, item, &ipath)?;
        let parse = |s: &str| {
            s.trim()
                .parse::<u16>()
                .ok()
                .filter(|c| (100..=599).contains(c))
        };
        let range = match text.split_once('-') {
            Some((a, b)) => parse(a).zip(parse(b)).filter(|(a, b)| a <= b),
            None => parse(&text).map(|c| (c, c)),
        };
        match range {
            Some(r) => out.push(r),
            None => sink.error(
                item,
                &ipath,
                format!("`{text}` is not a status (100..=599) or a range like 200-299"),
            ),
        }
    }
    Some(out)
}

fn tcp(sink: &mut Sink, node: &Node, path: &str) -> Option<TcpProbe> {
    if node.is_null() {
        return Some(TcpProbe::default());
    }
    let f = Fields::read(sink, node, path, &TCP)?;
    let send = match f.get("send") {
        Some(n) => Some(reader::non_empty_string(sink, n, &f.path("send"))?),
        None => None,
    };
    let expect = match f.get("expect") {
        Some(n) => Some(reader::non_empty_string(sink, n, &f.path("expect"))?),
        None => None,
    };
    Some(TcpProbe { send, expect })
}

fn grpc(sink: &mut Sink, node: &Node, path: &str) -> Option<GrpcProbe> {
    if node.is_null() {
        return Some(GrpcProbe::default());
    }
    let f = Fields::read(sink, node, path, &GRPC)?;
    let service = match f.get("service") {
        Some(n) if n.is_null() => String::new(),
        Some(n) => reader::string(sink, n, &f.path("service"))?,
        None => String::new(),
    };
    let authority = match f.get("authority") {
        Some(n) => Some(reader::non_empty_string(sink, n, &f.path("authority"))?),
        None => None,
    };
    Some(GrpcProbe { service, authority })
}
