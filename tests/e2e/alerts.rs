//! The Prometheus alert rules in `monitoring/`: valid for promtool, passing their promtool unit
//! tests, covering the alerts the design asks for, and built only on metrics in the contract.

use std::collections::BTreeSet;

use serde_yaml_ng::Value;

use crate::support::monitoring::{metric_names, run_promtool, unknown};
use crate::support::repo_root;

/// The original load balancer's alerts, and the control plane's own.
const REQUIRED: &[&str] = &[
    "FlotillaUpstreamFailureRateHigh",
    "FlotillaUpstreamLatencyHigh",
    "FlotillaNoHealthyBackend",
    "FlotillaEnvoyDisconnected",
    "FlotillaXdsNack",
    "FlotillaConfigReloadFailing",
    "FlotillaNodesOutOfSync",
    "FlotillaFleetOutOfSync",
];

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Value {
    serde_yaml_ng::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn rules() -> Vec<Value> {
    yaml("monitoring/alerts.yaml")["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().cloned().expect("rules"))
        .collect()
}

#[test]
fn alert_rules_pass_promtool_check() {
    let out = run_promtool(&["check", "rules", "monitoring/alerts.yaml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn alert_rules_pass_their_promtool_unit_tests() {
    let out = run_promtool(&["test", "rules", "monitoring/alerts_test.yaml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn alert_rules_cover_the_design_with_severity_and_explanations() {
    let rules = rules();
    let names: BTreeSet<&str> = rules.iter().filter_map(|r| r["alert"].as_str()).collect();
    for required in REQUIRED {
        assert!(names.contains(required), "no alert {required}: {names:?}");
    }
    for r in &rules {
        let name = r["alert"].as_str().expect("only alerting rules");
        let severity = r["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["critical", "warning"].contains(&severity),
            "{name}: severity {severity:?}"
        );
        for a in ["summary", "description"] {
            assert!(
                r["annotations"][a].as_str().is_some_and(|s| !s.is_empty()),
                "{name}: no {a}"
            );
        }
    }
}

#[test]
fn alert_rules_use_only_contract_metrics() {
    let exprs: String = rules()
        .iter()
        .map(|r| r["expr"].as_str().expect("expr").to_string() + "\n")
        .collect();
    let used = metric_names(&exprs);
    assert!(!used.is_empty());
    assert_eq!(
        unknown(&used),
        Vec::<String>::new(),
        "not in the metrics contract"
    );
}

/// Every alert has input that makes it fire and input that must leave it quiet.
#[test]
fn every_alert_has_a_firing_and_a_quiet_unit_test() {
    let tests = yaml("monitoring/alerts_test.yaml");
    let cases: Vec<&Value> = tests["tests"]
        .as_sequence()
        .expect("tests")
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_sequence().into_iter().flatten())
        .collect();
    for r in rules() {
        let name = r["alert"].as_str().expect("alert");
        let mine: Vec<&&Value> = cases.iter().filter(|c| c["alertname"] == name).collect();
        let fires = |c: &&&Value| c["exp_alerts"].as_sequence().is_some_and(|a| !a.is_empty());
        assert!(mine.iter().any(fires), "{name}: no test where it fires");
        assert!(
            mine.iter().any(|c| !fires(c)),
            "{name}: no test where it stays quiet"
        );
    }
}
