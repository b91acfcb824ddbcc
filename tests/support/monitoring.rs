//! The monitoring contract: every metric name flotilla exports or is committed to export, and
//! promtool, which checks the rules built on them.
//!
//! `monitoring/alerts.yaml` and `monitoring/grafana-dashboard.json` may use only these names:
//! PromQL on a misspelt metric is valid and silently matches nothing, so an alert on it would
//! never fire.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    /// Exposed as `<name>_bucket`, `<name>_sum` and `<name>_count`.
    Histogram,
}

/// Exported today.
pub const EXISTING: &[(&str, Kind)] = &[
    ("flotilla_build_info", Kind::Gauge),
    ("flotilla_config_reloads_total", Kind::Counter),
    ("flotilla_config_version_info", Kind::Gauge),
    ("flotilla_config_info", Kind::Gauge),
    ("flotilla_fleet_sync", Kind::Gauge),
    ("flotilla_config_reload_retrying", Kind::Gauge),
    ("flotilla_xds_streams", Kind::Gauge),
    ("flotilla_xds_responses_total", Kind::Counter),
    ("flotilla_xds_acks_total", Kind::Counter),
    ("flotilla_xds_nacks_total", Kind::Counter),
    ("flotilla_xds_push_latency_seconds", Kind::Histogram),
    ("flotilla_health_probes_total", Kind::Counter),
    ("flotilla_health_probe_duration_seconds", Kind::Histogram),
    ("flotilla_health_transitions_total", Kind::Counter),
    ("flotilla_endpoints", Kind::Gauge),
    ("flotilla_store_available", Kind::Gauge),
    ("flotilla_certificate_expiry_timestamp_seconds", Kind::Gauge),
    ("flotilla_dns_failures_total", Kind::Counter),
    ("flotilla_dns_addresses", Kind::Gauge),
    (
        "flotilla_mesh_workload_certificates_issued_total",
        Kind::Counter,
    ),
    (
        "flotilla_mesh_workload_certificate_expiry_timestamp_seconds",
        Kind::Gauge,
    ),
    (
        "flotilla_mesh_workload_certificate_renewal_timestamp_seconds",
        Kind::Gauge,
    ),
    (
        "flotilla_mesh_workload_certificate_issue_errors_total",
        Kind::Counter,
    ),
    ("flotilla_mesh_ca_rejected_total", Kind::Counter),
];

/// Agreed with the metrics-sink backend (Envoy's stats, aggregated), with these exact names.
pub const COMING: &[(&str, Kind)] = &[
    ("flotilla_config_last_reload_successful", Kind::Gauge),
    ("flotilla_xds_nodes", Kind::Gauge),
    ("flotilla_xds_nodes_out_of_sync", Kind::Gauge),
    ("flotilla_upstream_requests_total", Kind::Counter),
    (
        "flotilla_upstream_request_duration_seconds",
        Kind::Histogram,
    ),
    ("flotilla_upstream_active_requests", Kind::Gauge),
    ("flotilla_upstream_active_connections", Kind::Gauge),
    ("flotilla_upstream_retries_total", Kind::Counter),
    ("flotilla_upstream_ejections_active", Kind::Gauge),
    ("flotilla_endpoint_requests_total", Kind::Counter),
    ("flotilla_metrics_sink_streams", Kind::Gauge),
];

pub fn contract() -> impl Iterator<Item = (&'static str, Kind)> {
    EXISTING.iter().chain(COMING).copied()
}

/// Every `flotilla_…` identifier in `text`, as the contract names it (a histogram's
/// `_bucket`, `_sum` and `_count` series count as the histogram).
pub fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("flotilla_") {
        let start = i + at;
        let starts_word =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if starts_word {
            out.insert(canonical(&text[start..end]));
        }
        i = end;
    }
    out
}

fn canonical(name: &str) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && contract().any(|(n, k)| n == base && k == Kind::Histogram)
        {
            return base.to_string();
        }
    }
    name.to_string()
}

/// The names in `used` that the contract does not have.
pub fn unknown(used: &BTreeSet<String>) -> Vec<String> {
    used.iter()
        .filter(|n| !contract().any(|(c, _)| c == n.as_str()))
        .cloned()
        .collect()
}

/// promtool from `$PROMTOOL`, else Debian's `/usr/bin/promtool`. Missing promtool is a test
/// failure, never a skip.
pub fn promtool() -> PathBuf {
    let path = std::env::var_os("PROMTOOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/promtool"));
    assert!(
        path.exists(),
        "promtool not found at {} (and PROMTOOL is not set): run scripts/install-monitoring-tools (scripts/test does)",
        path.display()
    );
    path
}

/// Runs promtool with `args` from the repository root; fails the test with its output unless
/// it succeeds.
pub fn run_promtool(args: &[&str]) -> String {
    let out = Command::new(promtool())
        .args(args)
        .current_dir(super::repo_root())
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {} failed ({}):\n{text}",
        args.join(" "),
        out.status
    );
    text
}
