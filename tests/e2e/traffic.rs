//! Traffic flows through Envoy configured by flotilla, and Envoy runs exactly what
//! `flotilla render` prints, over every transport.

use std::time::Duration;

use serde_json::Value;

use crate::support::backend::Backend;
use crate::support::client;
use crate::support::envoy::{Envoy, Xds};
use crate::support::flotilla::Flotilla;
use crate::support::{free_addr, wait};
use crate::validate::flotilla as run_flotilla;

/// Normalises resource JSON through the protos, so formatting differences do not matter.
fn normalise(v: &Value) -> Value {
    let any = flotilla::envoy::json::json_to_any(v).unwrap_or_else(|e| panic!("{e}: {v}"));
    flotilla::envoy::json::any_to_json(&any).expect("to json")
}

/// Envoy's endpoint dump is rebuilt from its live host set (defaults filled in, unknown
/// health shown as HEALTHY), so endpoints compare by what they mean: priority, zone, address,
/// weight and health.
fn endpoint_summary(cla: &Value) -> Value {
    let mut hosts: Vec<String> = Vec::new();
    for group in cla["endpoints"].as_array().cloned().unwrap_or_default() {
        for e in group["lb_endpoints"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let sa = &e["endpoint"]["address"]["socket_address"];
            let health = match e["health_status"].as_str().unwrap_or("UNKNOWN") {
                "UNKNOWN" => "HEALTHY",
                other => other,
            };
            hosts.push(format!(
                "p{} zone={} {}:{} w={} {health}",
                group["priority"].as_u64().unwrap_or(0),
                group["locality"]["zone"].as_str().unwrap_or(""),
                sa["address"].as_str().unwrap_or(""),
                sa["port_value"],
                e["load_balancing_weight"].as_u64().unwrap_or(1),
            ));
        }
    }
    hosts.sort();
    serde_json::json!(hosts)
}

fn by_name(items: Vec<Value>, key: &str) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = items
        .iter()
        .map(|v| {
            let name = v[key].as_str().unwrap_or_default().to_string();
            let v = if key == "cluster_name" {
                endpoint_summary(v)
            } else {
                normalise(v)
            };
            (name, v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The dynamic resources in Envoy's /config_dump, by render section.
fn dumped(dump: &Value, section: &str) -> Vec<Value> {
    let (dump_type, list, field): (&str, &str, &[&str]) = match section {
        "clusters" => (
            "ClustersConfigDump",
            "dynamic_active_clusters",
            &["cluster"],
        ),
        "endpoints" => (
            "EndpointsConfigDump",
            "dynamic_endpoint_configs",
            &["endpoint_config"],
        ),
        "listeners" => (
            "ListenersConfigDump",
            "dynamic_listeners",
            &["active_state", "listener"],
        ),
        _ => (
            "RoutesConfigDump",
            "dynamic_route_configs",
            &["route_config"],
        ),
    };
    dump["configs"]
        .as_array()
        .expect("configs")
        .iter()
        .filter(|c| c["@type"].as_str().is_some_and(|t| t.ends_with(dump_type)))
        .flat_map(|c| c[list].as_array().cloned().unwrap_or_default())
        .map(|entry| field.iter().fold(entry, |v, f| v[*f].clone()))
        .filter(|v| !v.is_null())
        .collect()
}

pub async fn assert_envoy_runs_rendered(envoy: &Envoy, flotilla: &Flotilla, fleet: &str, xds: Xds) {
    let path = flotilla.config.to_str().expect("utf-8").to_string();
    let rendered: Value = serde_json::from_str(&run_flotilla(&[
        "render",
        &path,
        "--fleet",
        fleet,
        "--transport",
        xds.transport(),
    ]))
    .expect("render JSON");
    for (section, key) in [
        ("clusters", "name"),
        ("endpoints", "cluster_name"),
        ("listeners", "name"),
        ("routes", "name"),
    ] {
        let expected = by_name(
            rendered[section].as_array().cloned().unwrap_or_default(),
            key,
        );
        wait::until(
            &format!("Envoy's {section} to match render"),
            Duration::from_secs(10),
            || async {
                let actual = by_name(dumped(&envoy.config_dump().await, section), key);
                (actual == expected).then_some(())
            },
        )
        .await;
    }
}

fn two_backend_config(listen: std::net::SocketAddr, a: &Backend, b: &Backend) -> String {
    format!(
        "version: 1
clusters:
  web:
    endpoints: [{}, {}]
listeners:
  public:
    address: {listen}
    routes:
      - to: web
",
        a.address(),
        b.address()
    )
}

async fn traffic_flows_and_envoy_runs_what_render_prints(xds: Xds) {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let listen = free_addr();
    let flotilla = Flotilla::start(&two_backend_config(listen, &a, &b)).await;
    let envoy = Envoy::start(&flotilla, "edge-1", "edge", xds).await;
    envoy.wait_listener(listen).await;
    let counts = client::spread(&format!("http://{listen}/"), 20).await;
    assert_eq!(counts.get("a"), Some(&10), "{counts:?}");
    assert_eq!(counts.get("b"), Some(&10), "{counts:?}");
    assert_envoy_runs_rendered(&envoy, &flotilla, "edge", xds).await;
}

#[tokio::test]
async fn sotw_traffic_flows_and_envoy_runs_what_render_prints() {
    traffic_flows_and_envoy_runs_what_render_prints(Xds::Sotw).await;
}

#[tokio::test]
async fn delta_traffic_flows_and_envoy_runs_what_render_prints() {
    traffic_flows_and_envoy_runs_what_render_prints(Xds::Delta).await;
}

#[tokio::test]
async fn non_ads_sotw_traffic_flows_and_envoy_runs_what_render_prints() {
    traffic_flows_and_envoy_runs_what_render_prints(Xds::SotwNoAds).await;
}

#[tokio::test]
async fn non_ads_delta_traffic_flows_and_envoy_runs_what_render_prints() {
    traffic_flows_and_envoy_runs_what_render_prints(Xds::DeltaNoAds).await;
}
