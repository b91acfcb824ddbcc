//! Inheritance: built-in defaults ← the `defaults` block ← what a cluster or route says.
//!
//! Layering happens on YAML nodes, before decoding, so a value keeps the location it was written
//! at: a bad interval inherited from `defaults` is reported where `defaults` says it.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

use crate::config::diagnostic::Sink;
use crate::config::reader;
use crate::config::shape::{Field, Kind, Object, ms, object, optional, secs};
use crate::config::yaml::{self, Node, Value};

use super::{health, resilience};

/// A cluster's `connect_timeout` (also in `defaults`).
pub(crate) const CONNECT_TIMEOUT: Field = optional(
    "connect_timeout",
    Kind::Duration {
        min: ms(1),
        max: secs(600),
    },
    "Time Envoy allows for a TCP connection to an endpoint (default 1s).",
)
.defaults_to("1s");
/// A route's `timeout` (also in `defaults`).
pub(crate) const ROUTE_TIMEOUT: Field = optional(
    "timeout",
    Kind::Duration {
        min: secs(0),
        max: secs(24 * 3600),
    },
    "Time Envoy waits for the whole response (0s: no limit).",
);
pub(crate) const HEALTH_CHECK: Field = optional(
    "health_check",
    Kind::AnyOf(&[Kind::Switch, Kind::Object(&health::HEALTH_CHECK)]),
    "Active health checks run by flotilla (false: none).",
);
pub(crate) const OUTLIER_DETECTION: Field = optional(
    "outlier_detection",
    Kind::AnyOf(&[Kind::Switch, Kind::Object(&resilience::OUTLIER_DETECTION)]),
    "Passive health: Envoy ejects endpoints that fail (false: off).",
)
.defaults_to("on");
pub(crate) const CIRCUIT_BREAKERS: Field = optional(
    "circuit_breakers",
    Kind::AnyOf(&[Kind::Switch, Kind::Object(&resilience::CIRCUIT_BREAKERS)]),
    "Envoy's limits on connections and requests to the cluster.",
)
.defaults_to("on");
pub(crate) const RETRIES: Field = optional(
    "retries",
    Kind::AnyOf(&[Kind::Switch, Kind::Object(&resilience::RETRIES)]),
    "When Envoy retries a request (false: never).",
)
.defaults_to("on");

/// The `defaults` block: what every cluster and route inherits unless it says otherwise.
pub(crate) const DEFAULTS: Object = object(
    "defaults",
    "What every cluster and route inherits when it does not set it.",
    &[
        CONNECT_TIMEOUT,
        HEALTH_CHECK,
        OUTLIER_DETECTION,
        CIRCUIT_BREAKERS,
        RETRIES,
        ROUTE_TIMEOUT,
    ],
);

/// What flotilla does when the YAML says nothing. Outlier detection and retries are on so that a
/// backend dying costs clients nothing (see docs/guides/health.md, "Failover defaults"); a health check
/// has timings here but no probe, so no endpoint is probed unless the YAML asks for it.
pub(crate) const BUILT_IN_YAML: &str = "\
connect_timeout: 1s
health_check: { interval: 1s, timeout: 500ms, jitter: 100ms, healthy_threshold: 2, unhealthy_threshold: 2 }
outlier_detection: { consecutive_5xx: 5, consecutive_gateway_failure: 2, interval: 1s, base_ejection_time: 10s, max_ejection_percent: 50 }
circuit_breakers: { max_retries: 64 }
retries: { attempts: 2, on: [connect-failure, refused-stream, reset], previous_hosts: true }
";

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
#[derive(Clone)]
pub(crate) struct Defaults {
    user: Option<Node>,
    /// Built-in ⊕ user for each key, merged once rather than for every cluster and route.
    inherited: HashMap<&'static str, Node>,
}

impl Default for Defaults {
    /// The built-in defaults alone.
    fn default() -> Defaults {
        Defaults::new(None)
    }
}

impl Defaults {
    pub(crate) fn new(user: Option<Node>) -> Defaults {
        let inherited = DEFAULTS
            .names()
            .filter_map(|key| {
                let built_in = entry(&BUILT_IN, key);
                let user = user.as_ref().and_then(|u| entry(u, key));
                Some((
                    key,
                    overlay(key, built_in.as_ref(), user.as_ref())?.into_owned(),
                ))
            })
            .collect();
        Defaults { user, inherited }
    }

    /// `key` as seen by an item that wrote `own` (or nothing) for it. Borrowed unless the two
    /// had to be merged: decoding 100,000 clusters must not copy the defaults 100,000 times.
    pub(crate) fn layer<'a>(&'a self, key: &str, own: Option<&'a Node>) -> Option<Cow<'a, Node>> {
        let inherited = self.inherited.get(key);
        match (inherited, own) {
            (inherited, None) => inherited.map(Cow::Borrowed),
            (None, Some(own)) => Some(Cow::Borrowed(own)),
            (Some(inherited), Some(own)) => overlay(key, Some(inherited), Some(own)),
        }
    }
}

/// Checks the `defaults` block on its own, so a bad value is an error even while no cluster or
/// route inherits it (it would break the first one that does). A mistake an inheriting item
/// already reported at the same place is not reported twice.
pub(crate) fn check_unused(sink: &mut Sink, defaults: &Defaults) {
    if defaults.user.is_none() {
        return;
    }
    let mut own = Sink::default();
    for key in DEFAULTS.names() {
        let Some(node) = defaults.layer(key, None) else {
            continue;
        };
        let path = format!("defaults.{key}");
        let (own, node, path) = (&mut own, &node, path.as_str());
        match key {
            "connect_timeout" | "timeout" => {
                let (min, max) = DEFAULTS.duration_bounds(key);
                reader::duration_in(own, node, path, min, max);
            }
            "health_check" if !is_off(node) => {
                health::health_check(own, node, path, false);
            }
            "outlier_detection" => {
                resilience::outlier_detection(own, node, path);
            }
            "circuit_breakers" => {
                resilience::circuit_breakers(own, node, path);
            }
            "retries" => {
                // `defaults.retries` applies to Envoy routes only (gRPC routes have their own).
                resilience::retries(own, node, path, false);
            }
            _ => {}
        }
    }
    for d in own.into_found() {
        if !sink.has_at(&d.loc) {
            sink.push(d);
        }
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

fn overlay<'a>(
    key: &str,
    lower: Option<&'a Node>,
    upper: Option<&'a Node>,
) -> Option<Cow<'a, Node>> {
    let Some(upper) = upper else {
        return lower.map(Cow::Borrowed);
    };
    if is_on(upper) {
        return Some(match lower.filter(|l| !is_off(l)) {
            Some(lower) => Cow::Borrowed(lower),
            None => Cow::Owned(Node {
                loc: upper.loc.clone(),
                value: Value::Map(Vec::new()),
            }),
        });
    }
    let (Some(lower), Value::Map(upper_entries)) = (lower, &upper.value) else {
        return Some(Cow::Borrowed(upper));
    };
    let Value::Map(lower_entries) = &lower.value else {
        return Some(Cow::Borrowed(upper));
    };
    let replaces_probe = key == "health_check"
        && upper_entries
            .iter()
            .any(|(k, _)| k.as_str().is_some_and(|k| PROBE_KINDS.contains(&k)));
    let upper_names: HashSet<&str> = upper_entries
        .iter()
        .filter_map(|(u, _)| u.as_str())
        .collect();
    let mut merged: Vec<(Node, Node)> = lower_entries
        .iter()
        .filter(|(k, _)| {
            let name = k.as_str().unwrap_or_default();
            let overridden = upper_names.contains(name);
            let replaced_probe = replaces_probe && PROBE_KINDS.contains(&name);
            !overridden && !replaced_probe
        })
        .cloned()
        .collect();
    merged.extend(upper_entries.iter().cloned());
    Some(Cow::Owned(Node {
        loc: upper.loc.clone(),
        value: Value::Map(merged),
    }))
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

    fn check(text: &str) -> Vec<String> {
        let mut sink = Sink::default();
        check_unused(&mut sink, &Defaults::new(Some(node(text))));
        sink.into_found().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn defaults_are_checked_without_an_inheriting_item() {
        let errors = check("connect_timeout: -1s\nretries: { attempts: 99 }\n");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("t.yaml:1:18: defaults.connect_timeout: "),
            "{errors:?}"
        );
        assert!(
            errors[1].contains("defaults.retries.attempts"),
            "{errors:?}"
        );
        assert!(
            check("connect_timeout: 2s\nhealth_check: { interval: 3s }\nretries: false\n")
                .is_empty()
        );
    }

    #[test]
    fn an_error_already_reported_by_an_inheriting_item_is_not_repeated() {
        let defaults = Defaults::new(Some(node("connect_timeout: -1s\n")));
        let mut sink = Sink::default();
        let inherited = defaults.layer("connect_timeout", None).unwrap();
        sink.error(&inherited, "clusters.api.connect_timeout", "bad");
        check_unused(&mut sink, &defaults);
        assert_eq!(sink.into_found().len(), 1);
    }

    #[test]
    fn false_switches_a_block_off_and_true_inherits() {
        let defaults = Defaults::new(Some(node("retries: false")));
        assert!(is_off(&defaults.layer("retries", None).unwrap()));
        let on = node("true");
        let built_in = Defaults::default();
        let merged = built_in.layer("retries", Some(&on)).unwrap();
        assert!(keys(&merged).contains(&"attempts=2".to_string()));
    }
}
