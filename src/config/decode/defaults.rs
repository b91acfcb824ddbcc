//! Inheritance: built-in defaults ← the `defaults` block ← what a cluster or route says.
//!
//! Layering happens on YAML nodes, before decoding, so a value keeps the location it was written
//! at: a bad interval inherited from `defaults` is reported where `defaults` says it.

use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

use crate::config::yaml::{self, Node, Value};

/// What flotilla does when the YAML says nothing. Outlier detection and retries are on so that a
/// backend dying costs clients nothing (see the README's "Failover defaults"); a health check
/// has timings here but no probe, so no endpoint is probed unless the YAML asks for it.
pub(crate) const BUILT_IN_YAML: &str = "\
connect_timeout: 1s
health_check: { interval: 1s, timeout: 500ms, jitter: 100ms, healthy_threshold: 2, unhealthy_threshold: 2 }
outlier_detection: { consecutive_5xx: 5, consecutive_gateway_failure: 2, interval: 1s, base_ejection_time: 10s, max_ejection_percent: 50 }
circuit_breakers: { max_retries: 64 }
retries: { attempts: 2, on: [connect-failure, refused-stream, reset], previous_hosts: true }
";

/// Keys a `defaults` block may hold.
pub(crate) const KEYS: &[&str] = &[
    "connect_timeout",
    "health_check",
    "outlier_detection",
    "circuit_breakers",
    "retries",
    "timeout",
];

/// Probe kinds are alternatives: a cluster naming one replaces an inherited one.
const PROBE_KINDS: &[&str] = &["http", "tcp", "grpc"];

static BUILT_IN: LazyLock<Node> = LazyLock::new(|| {
    yaml::parse(
        BUILT_IN_YAML,
        Arc::new(PathBuf::from("<built-in defaults>")),
    )
    .ok()
    .flatten()
    .expect("built-in defaults are valid YAML")
});

/// The layers a block inherits from, lowest first.
#[derive(Clone, Default)]
pub(crate) struct Defaults {
    user: Option<Node>,
}

impl Defaults {
    pub(crate) fn new(user: Option<Node>) -> Defaults {
        Defaults { user }
    }

    /// `key` as seen by an item that wrote `own` (or nothing) for it.
    pub(crate) fn layer(&self, key: &str, own: Option<&Node>) -> Option<Node> {
        let built_in = entry(&BUILT_IN, key);
        let user = self.user.as_ref().and_then(|u| entry(u, key));
        let inherited = overlay(key, built_in.as_ref(), user.as_ref());
        overlay(key, inherited.as_ref(), own)
    }
}

fn entry(map: &Node, key: &str) -> Option<Node> {
    match &map.value {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v.clone()),
        _ => None,
    }
}

/// Whether a node switches an inheritable block off (`false` or `off`).
pub(crate) fn is_off(node: &Node) -> bool {
    matches!(&node.value, Value::Scalar { text, quoted: false } if text == "false" || text == "off")
}

fn is_on(node: &Node) -> bool {
    matches!(&node.value, Value::Scalar { text, quoted: false } if text == "true" || text == "on")
}

fn overlay(key: &str, lower: Option<&Node>, upper: Option<&Node>) -> Option<Node> {
    let Some(upper) = upper else {
        return lower.cloned();
    };
    if is_on(upper) {
        return Some(lower.filter(|l| !is_off(l)).cloned().unwrap_or(Node {
            loc: upper.loc.clone(),
            value: Value::Map(Vec::new()),
        }));
    }
    let (Some(lower), Value::Map(upper_entries)) = (lower, &upper.value) else {
        return Some(upper.clone());
    };
    let Value::Map(lower_entries) = &lower.value else {
        return Some(upper.clone());
    };
    let replaces_probe = key == "health_check"
        && upper_entries
            .iter()
            .any(|(k, _)| k.as_str().is_some_and(|k| PROBE_KINDS.contains(&k)));
    let mut merged: Vec<(Node, Node)> = lower_entries
        .iter()
        .filter(|(k, _)| {
            let name = k.as_str().unwrap_or_default();
            let overridden = upper_entries.iter().any(|(u, _)| u.as_str() == Some(name));
            let replaced_probe = replaces_probe && PROBE_KINDS.contains(&name);
            !overridden && !replaced_probe
        })
        .cloned()
        .collect();
    merged.extend(upper_entries.iter().cloned());
    Some(Node {
        loc: upper.loc.clone(),
        value: Value::Map(merged),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(text: &str) -> Node {
        yaml::parse(text, Arc::new(PathBuf::from("t.yaml")))
            .unwrap()
            .unwrap()
    }

    fn keys(n: &Node) -> Vec<String> {
        match &n.value {
            Value::Map(e) => e
                .iter()
                .map(|(k, v)| format!("{}={}", k.as_str().unwrap(), v.as_str().unwrap_or("{..}")))
                .collect(),
            _ => vec![format!("{:?}", n.value)],
        }
    }

    #[test]
    fn own_values_override_user_defaults_which_override_built_ins() {
        let defaults = Defaults::new(Some(node("health_check: { interval: 5s }")));
        let own = node("{ timeout: 2s, tcp: {} }");
        let merged = defaults.layer("health_check", Some(&own)).unwrap();
        let mut k = keys(&merged);
        k.sort();
        assert_eq!(
            k,
            vec![
                "healthy_threshold=2",
                "interval=5s",
                "jitter=100ms",
                "tcp={..}",
                "timeout=2s",
                "unhealthy_threshold=2"
            ]
        );
    }

    #[test]
    fn a_probe_kind_replaces_an_inherited_one() {
        let defaults = Defaults::new(Some(node("health_check: { http: { path: / } }")));
        let own = node("{ grpc: {} }");
        let merged = defaults.layer("health_check", Some(&own)).unwrap();
        let k = keys(&merged);
        assert!(k.contains(&"grpc={..}".to_string()));
        assert!(!k.iter().any(|k| k.starts_with("http")), "{k:?}");
    }

    #[test]
    fn false_switches_a_block_off_and_true_inherits() {
        let defaults = Defaults::new(Some(node("retries: false")));
        assert!(is_off(&defaults.layer("retries", None).unwrap()));
        let on = node("true");
        let merged = Defaults::default().layer("retries", Some(&on)).unwrap();
        assert!(keys(&merged).contains(&"attempts=2".to_string()));
    }
}
