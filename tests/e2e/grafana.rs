//! The Grafana dashboard in `monitoring/`: a model Grafana imports anywhere (Prometheus data
//! source chosen by a template variable), valid PromQL, and the contract's metrics, every one.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::monitoring::{contract, metric_names, run_promtool, unknown};
use crate::support::repo_root;

const PATH: &str = "monitoring/grafana-dashboard.json";

fn text() -> String {
    std::fs::read_to_string(repo_root().join(PATH)).unwrap_or_else(|e| panic!("{PATH}: {e}"))
}

fn dashboard() -> Value {
    serde_json::from_str(&text()).unwrap_or_else(|e| panic!("{PATH}: {e}"))
}

/// Every panel, including those inside collapsed rows.
fn panels(d: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        out.push(p.clone());
        out.extend(p["panels"].as_array().into_iter().flatten().cloned());
    }
    out
}

fn targets(d: &Value) -> Vec<(String, Value)> {
    panels(d)
        .into_iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or_default().to_string();
            p["targets"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |t| (title.clone(), t))
        })
        .collect()
}

#[test]
fn grafana_dashboard_uses_exactly_the_contract_metrics() {
    let used = metric_names(&text());
    assert_eq!(
        unknown(&used),
        Vec::<String>::new(),
        "not in the metrics contract"
    );
    let missing: Vec<&str> = contract()
        .map(|(n, _)| n)
        .filter(|n| !used.contains(*n))
        .collect();
    assert_eq!(missing, Vec::<&str>::new(), "metrics with no panel");
}

#[test]
fn grafana_dashboard_takes_its_datasource_from_a_variable() {
    let d = dashboard();
    assert!(d["uid"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(d["schemaVersion"].as_u64().is_some());
    let vars = d["templating"]["list"].as_array().expect("templating");
    assert!(
        vars.iter().any(|v| v["type"] == "datasource"
            && v["name"] == "datasource"
            && v["query"] == "prometheus"),
        "no Prometheus datasource variable"
    );
    let mut ids = BTreeSet::new();
    for p in panels(&d) {
        let title = p["title"].as_str().unwrap_or_default();
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate id: {title}"
        );
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64().expect("x"), g["w"].as_u64().expect("w"));
        assert!(
            x + w <= 24 && g["h"].as_u64().is_some(),
            "{title}: gridPos {g}"
        );
        if p["type"] != "row" {
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        }
    }
    for (title, t) in targets(&d) {
        assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
        assert!(t["expr"].as_str().is_some_and(|e| !e.is_empty()), "{title}");
    }
}

/// Every query, with Grafana's variables filled in, as a recording rule for `promtool check`.
#[test]
fn grafana_queries_are_valid_promql() {
    let d = dashboard();
    let mut rules = Vec::new();
    for (i, (title, t)) in targets(&d).into_iter().enumerate() {
        let expr = t["expr"]
            .as_str()
            .expect("expr")
            .replace("$__rate_interval", "5m")
            .replace("$cluster", ".*")
            .replace("$fleet", ".*");
        assert!(!expr.contains('$'), "{title}: unknown variable in {expr}");
        rules.push(serde_json::json!({ "record": format!("grafana_query_{i}"), "expr": expr }));
    }
    let file = serde_json::json!({ "groups": [ { "name": "grafana", "rules": rules } ] });
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("grafana-queries.yaml");
    // JSON is YAML.
    std::fs::write(&path, file.to_string()).expect("write rules");
    let out = run_promtool(&["check", "rules", path.to_str().expect("path")]);
    assert!(out.contains("SUCCESS"), "{out}");
}
