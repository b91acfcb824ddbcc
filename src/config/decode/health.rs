//! `health_check`: flotilla's own active probes.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::diagnostic::Sink;
use crate::config::model::{GrpcProbe, HealthCheck, HttpProbe, Probe, TcpProbe};
use crate::config::reader::{self, Fields};
use crate::config::yaml::Node;

const KEYS: &[&str] = &[
    "http",
    "tcp",
    "grpc",
    "interval",
    "timeout",
    "jitter",
    "healthy_threshold",
    "unhealthy_threshold",
];

/// Decodes a layered `health_check` block. `Ok(None)` means no probe is configured.
pub(crate) fn health_check(
    sink: &mut Sink,
    node: &Node,
    path: &str,
    written_here: bool,
) -> Option<Option<HealthCheck>> {
    let f = Fields::read(sink, node, path, KEYS)?;
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
    let ms = Duration::from_millis;
    let interval = reader::duration_in(
        sink,
        f.get("interval")?,
        &f.path("interval"),
        ms(100),
        Duration::from_secs(3600),
    );
    let timeout = reader::duration_in(
        sink,
        f.get("timeout")?,
        &f.path("timeout"),
        ms(10),
        Duration::from_secs(600),
    );
    let jitter = reader::duration_in(
        sink,
        f.get("jitter")?,
        &f.path("jitter"),
        Duration::ZERO,
        Duration::from_secs(600),
    );
    let healthy = reader::u32_in(
        sink,
        f.get("healthy_threshold")?,
        &f.path("healthy_threshold"),
        1,
        100,
    );
    let unhealthy = reader::u32_in(
        sink,
        f.get("unhealthy_threshold")?,
        &f.path("unhealthy_threshold"),
        1,
        100,
    );
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
    let f = Fields::read(
        sink,
        node,
        path,
        &[
            "path",
            "host",
            "expected_statuses",
            "body_contains",
            "headers",
        ],
    )?;
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
    let f = Fields::read(sink, node, path, &["send", "expect"])?;
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
    let f = Fields::read(sink, node, path, &["service", "authority"])?;
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
