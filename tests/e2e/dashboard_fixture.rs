//! The dashboard in a real browser, in front of fixture data in the admin API's exact shapes:
//! every field the page shows (traffic, events, NACKs, failed reloads, drains, changed
//! weights), and how it follows changes, without needing Envoy to produce each situation.
//!
//! The page and its assets are the product's own (`flotilla::admin::dashboard::routes`); only
//! the JSON behind them is made up, and only here.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::support::browser::{Browser, artifacts_dir};

const WAIT: Duration = Duration::from_secs(15);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

/// What the fixture API answers; tests change it while the page is open.
struct Data {
    state: Value,
    state_status: StatusCode,
    nodes: Value,
    /// `None`: 404, as a flotilla without the traffic backend answers.
    traffic: Option<Value>,
    /// `None`: 404.
    events: Option<Vec<Value>>,
    /// Every `since` the page asked for.
    since_asked: Vec<u64>,
}

struct FixtureApi {
    url: String,
    data: Arc<Mutex<Data>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FixtureApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FixtureApi {
    async fn start(data: Data) -> FixtureApi {
        let data = Arc::new(Mutex::new(data));
        let d = data.clone();
        let state = move || {
            let d = d.clone();
            async move {
                let d = d.lock().expect("fixture");
                if d.state_status == StatusCode::OK {
                    Json(d.state.clone()).into_response()
                } else {
                    d.state_status.into_response()
                }
            }
        };
        let d = data.clone();
        let nodes = move || {
            let d = d.clone();
            async move { Json(d.lock().expect("fixture").nodes.clone()) }
        };
        let d = data.clone();
        let traffic = move || {
            let d = d.clone();
            async move {
                match &d.lock().expect("fixture").traffic {
                    Some(t) => Json(t.clone()).into_response(),
                    None => StatusCode::NOT_FOUND.into_response(),
                }
            }
        };
        let d = data.clone();
        let events = move |Query(q): Query<std::collections::HashMap<String, String>>| {
            let d = d.clone();
            async move { events_answer(&mut d.lock().expect("fixture"), &q) }
        };
        let app: Router = flotilla::admin::dashboard::routes()
            .route("/api/v1/state", get(state))
            .route("/api/v1/nodes", get(nodes))
            .route("/api/v1/traffic", get(traffic))
            .route("/api/v1/events", get(events));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FixtureApi { url, data, task }
    }

    fn change(&self, f: impl FnOnce(&mut Data)) {
        f(&mut self.data.lock().expect("fixture"));
    }
}

fn events_answer(d: &mut Data, q: &std::collections::HashMap<String, String>) -> Response {
    let Some(events) = &d.events else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let since = q.get("since").and_then(|s| s.parse::<u64>().ok());
    let newer: Vec<Value> = events
        .iter()
        .filter(|e| since.is_none_or(|s| e["id"].as_u64().unwrap_or(0) > s))
        .cloned()
        .collect();
    if let Some(s) = since {
        d.since_asked.push(s);
    }
    Json(json!({ "events": newer })).into_response()
}

fn probe(latency: f64, error: Option<&str>, failures: u32) -> Value {
    json!({
        "verdict": if failures > 0 { "unhealthy" } else { "healthy" },
        "last_latency_ms": latency * 1.1,
        "smoothed_latency_ms": latency,
        "last_error": error,
        "last_probe": now_ms() - 400,
        "consecutive_failures": failures,
    })
}

fn endpoint(address: &str, health: &str, weight: u32, configured: u32) -> Value {
    json!({
        "address": address, "weight": weight, "configured_weight": configured, "zone": null,
        "priority": 0, "health": health, "draining": false, "source": "config",
        "probe": probe(4.2, None, 0),
    })
}

fn state() -> Value {
    let mut web = vec![
        endpoint("127.0.0.1:9101", "healthy", 3, 3),
        endpoint("127.0.0.1:9102", "healthy", 1, 3),
        endpoint("127.0.0.1:9103", "unhealthy", 3, 3),
        endpoint("127.0.0.1:9104", "healthy", 3, 3),
    ];
    web[2]["probe"] = probe(250.0, Some("connect: connection refused"), 3);
    web[3]["draining"] = json!(true);
    web[3]["zone"] = json!("b");
    let mut api = vec![
        endpoint("127.0.0.1:9201", "healthy", 1, 1),
        endpoint("127.0.0.1:9202", "unknown", 1, 1),
    ];
    api[1]["probe"] = Value::Null;
    api[1]["source"] = json!("registration");
    let mut plain = vec![endpoint("127.0.0.1:9301", "unknown", 1, 1)];
    plain[0]["probe"] = Value::Null;
    json!({
        "config": {
            "path": "/etc/flotilla/config",
            "version": "9f2c1e7ab34d5e60",
            "revision": {
                "commit": "0123456789abcdef0123456789abcdef01234567", "dirty": false,
                "source": "git", "author": "Ada <ada@example.com>", "subject": "more web",
            },
            "last_reload": { "at": now_ms() - 60_000, "trigger": "watch", "result": "applied", "errors": [] },
        },
        "clusters": [
            { "name": "web", "policy": "least_request", "health_check": "http", "affinity": null, "endpoints": web },
            { "name": "api", "policy": "ring_hash", "health_check": "tcp", "affinity": "cookie", "endpoints": api },
            { "name": "plain", "policy": "round_robin", "health_check": null, "affinity": null, "endpoints": plain },
        ],
        "listeners": [ { "name": "public", "address": "127.0.0.1:10000", "routes": 3 } ],
    })
}

fn types(nack: Option<Value>) -> Value {
    let t = |nack: Option<Value>| {
        json!({
            "sent_version": "9f2c1e7ab34d5e60", "acked_version": "9f2c1e7ab34d5e60",
            "responses": 4, "acks": 4 - nack.is_some() as u64, "nacks": nack.is_some() as u64,
            "last_nack": nack,
        })
    };
    json!({ "cds": t(nack), "eds": t(None), "lds": t(None), "rds": t(None) })
}

/// Envoy's message, with markup in it: the page must show it as text.
const NACK_MESSAGE: &str =
    "Error adding/updating cluster(s) web: <img src=x id=injected> unknown field";

fn nodes() -> Value {
    json!([
        {
            "node_id": "edge-1", "fleet": "edge", "envoy_version": "1.40.0", "mode": "delta",
            "ads": true, "connected_since": now_ms() - 3_600_000, "streams": 1,
            "snapshot_version": "9f2c1e7ab34d5e60", "in_sync": true, "types": types(None),
        },
        {
            "node_id": "edge-2", "fleet": "edge", "envoy_version": "1.40.0", "mode": "sotw",
            "ads": false, "connected_since": now_ms() - 120_000, "streams": 4,
            "snapshot_version": "9f2c1e7ab34d5e60", "in_sync": false,
            "types": types(Some(json!({
                "version": "77aa00bb11cc22dd", "message": NACK_MESSAGE, "at": now_ms() - 30_000,
            }))),
            "acked_revision": "fedcba9876543210fedcba9876543210fedcba98",
            "rejections": [{
                "node": "edge-2", "type": "cds", "version": "77aa00bb11cc22dd",
                "message": NACK_MESSAGE, "at": now_ms() - 30_000,
                "resources": [{ "name": "web", "location": "web.yaml:3:3", "field": "clusters.web" }],
                "summary": format!("rejected by edge-2: web.yaml:3:3 clusters.web: {NACK_MESSAGE}"),
            }],
        },
    ])
}

fn traffic() -> Value {
    json!({
        "window_seconds": 10,
        "reporting_envoys": 2,
        "clusters": [
            {
                "name": "web", "rps": 123.4, "success_rate": 0.9991, "p50_ms": 3.1, "p95_ms": 12.3,
                "p99_ms": 48.0, "active_connections": 17, "active_requests": 4, "retries_per_s": 0.2,
                "ejections_active": 1,
                "endpoints": [
                    { "address": "127.0.0.1:9101", "rps": 80.2, "success_rate": 1.0, "active_requests": 2 },
                    { "address": "127.0.0.1:9102", "rps": 43.2, "success_rate": 0.998, "active_requests": 2 },
                    { "address": "127.0.0.1:9103", "rps": 0.0, "success_rate": null, "active_requests": 0 },
                    { "address": "127.0.0.1:9104", "rps": 0.0, "success_rate": null, "active_requests": 0 },
                ],
            },
            {
                "name": "api", "rps": 5.5, "success_rate": 0.9, "p50_ms": 300.0, "p95_ms": 1500.0,
                "p99_ms": 2400.0, "active_connections": 3, "active_requests": 1, "retries_per_s": 0.0,
                "ejections_active": 0,
                "endpoints": [
                    { "address": "127.0.0.1:9201", "rps": 5.5, "success_rate": 0.9, "active_requests": 1 },
                ],
            },
            {
                "name": "plain", "rps": 0.0, "success_rate": null, "p50_ms": null, "p95_ms": null,
                "p99_ms": null, "active_connections": 0, "active_requests": 0, "retries_per_s": 0.0,
                "ejections_active": 0, "endpoints": [],
            },
        ],
    })
}

fn event(
    id: u64,
    kind: &str,
    message: &str,
    cluster: Option<&str>,
    endpoint: Option<&str>,
) -> Value {
    json!({
        "id": id, "at": now_ms() - 1000 * (100 - id), "kind": kind, "message": message,
        "cluster": cluster, "endpoint": endpoint, "node": null,
    })
}

fn events() -> Vec<Value> {
    vec![
        event(1, "reload", "config 9f2c1e7a applied (watch)", None, None),
        event(
            2,
            "drain",
            "127.0.0.1:9104 is draining",
            Some("web"),
            Some("127.0.0.1:9104"),
        ),
        event(
            3,
            "health",
            "127.0.0.1:9103 became unhealthy: connect: connection refused",
            Some("web"),
            Some("127.0.0.1:9103"),
        ),
    ]
}

fn full() -> Data {
    Data {
        state: state(),
        state_status: StatusCode::OK,
        nodes: nodes(),
        traffic: Some(traffic()),
        events: Some(events()),
        since_asked: Vec::new(),
    }
}

const WEB: &str = "[data-cluster=\"web\"]";

fn ep(address: &str, field: &str) -> String {
    format!("{WEB} tr[data-endpoint=\"{address}\"] [data-field=\"{field}\"]")
}

#[tokio::test]
async fn dashboard_shows_every_field_of_the_api() {
    let api = FixtureApi::start(full()).await;
    let b = Browser::start("dashboard-fixture").await;
    b.goto(&api.url).await;
    b.js("window.__notReloaded = true; return null").await;

    // Cluster traffic, as Envoy reports it through flotilla.
    b.wait_text(&format!("{WEB} [data-field=\"rps\"]"), "123", WAIT)
        .await;
    assert_eq!(
        b.js(&format!(
            "return document.querySelector('{WEB} [data-field=\"rps\"]').dataset.value"
        ))
        .await,
        "123.4"
    );
    assert_eq!(
        b.text(&format!("{WEB} [data-field=\"success_rate\"]"))
            .await,
        "99.91%"
    );
    assert_eq!(
        b.text(&format!("{WEB} [data-field=\"p95_ms\"]")).await,
        "12 ms"
    );
    assert_eq!(
        b.text(&format!("{WEB} [data-field=\"p99_ms\"]")).await,
        "48 ms"
    );
    assert_eq!(
        b.text(&format!("{WEB} [data-field=\"ejections_active\"]"))
            .await,
        "1"
    );
    // A slow, failing cluster is marked in words, not only in colour.
    assert_eq!(
        b.text("[data-cluster=\"api\"] [data-field=\"p95_ms\"]")
            .await,
        "⚠ 1.50 s"
    );
    assert_eq!(
        b.text("[data-cluster=\"api\"] [data-field=\"success_rate\"]")
            .await,
        "⚠ 90.0%"
    );
    assert_eq!(b.text("#tile-p95 .value").await, "⚠ 1.50 s");
    assert!(b.text("#tile-p95 .sub").await.contains("api"));
    // Fleet totals: the sum of requests, the request-weighted success rate.
    assert_eq!(b.text("#tile-rps .value").await, "129");
    assert!(b.text("#tile-rps .sub").await.contains("2 Envoys"));
    assert_eq!(b.text("#tile-success .value").await, "99.49%");

    // Endpoints: traffic, health in words, weight against the config, drain, probe latency.
    assert_eq!(b.text(&ep("127.0.0.1:9101", "rps")).await, "80.2");
    assert_eq!(
        b.text(&ep("127.0.0.1:9102", "success_rate")).await,
        "99.80%"
    );
    assert_eq!(b.text(&ep("127.0.0.1:9101", "health")).await, "✓ healthy");
    assert_eq!(b.text(&ep("127.0.0.1:9103", "health")).await, "✕ unhealthy");
    assert!(
        b.text(&format!(
            "{WEB} tr[data-endpoint=\"127.0.0.1:9103\"] .probe-error"
        ))
        .await
        .contains("connection refused")
    );
    assert_eq!(
        b.text(&ep("127.0.0.1:9102", "weight")).await,
        "1 (config 3)"
    );
    assert_eq!(b.text(&ep("127.0.0.1:9101", "weight")).await, "3");
    assert_eq!(b.text(&ep("127.0.0.1:9104", "drain")).await, "⇣ draining");
    assert_eq!(b.text(&ep("127.0.0.1:9101", "drain")).await, "no");
    assert_eq!(
        b.text(&ep("127.0.0.1:9101", "probe_latency_ms")).await,
        "4.2 ms"
    );
    assert_eq!(b.text(&format!("{WEB} .serving")).await, "2 of 4 serving");
    assert_eq!(
        b.text(
            "[data-cluster=\"api\"] tr[data-endpoint=\"127.0.0.1:9202\"] [data-field=\"health\"]"
        )
        .await,
        "? unknown"
    );
    assert!(
        b.text("[data-cluster=\"api\"] .chips")
            .await
            .contains("cookie affinity")
    );
    assert!(
        b.text("[data-cluster=\"plain\"] .chips")
            .await
            .contains("not probed")
    );
    assert_eq!(
        b.text("[data-cluster=\"plain\"] [data-field=\"success_rate\"]")
            .await,
        "—"
    );

    // Envoys: sync state and the last NACK, Envoy's message shown as text.
    assert_eq!(b.text("[data-node=\"edge-1\"] .sync").await, "✓ in sync");
    assert_eq!(b.text("[data-node=\"edge-2\"] .sync").await, "⟳ syncing");
    let nack = b.text("[data-node=\"edge-2\"] .nack").await;
    assert!(nack.contains(NACK_MESSAGE), "{nack}");
    assert!(nack.contains("CDS"), "{nack}");
    // The rejection traced to the YAML line, and which revision each Envoy acknowledged.
    assert!(
        nack.contains("rejected by edge-2: web.yaml:3:3 clusters.web:"),
        "{nack}"
    );
    assert!(
        b.text("[data-node=\"edge-2\"] .node-meta")
            .await
            .contains("acked revision fedcba987654")
    );
    let header = b.text("#config").await;
    assert!(
        header.contains("revision 0123456789ab by Ada <ada@example.com>"),
        "{header}"
    );
    assert_eq!(
        b.js("return document.getElementById('injected')").await,
        Value::Null
    );
    assert!(b.text("#tile-envoys .sub").await.contains("1 syncing"));

    // Events, newest first; then only newer ones are asked for.
    b.wait_contains("#events li:first-child", "became unhealthy", WAIT)
        .await;
    assert_eq!(
        b.js("return document.querySelectorAll('#events li').length")
            .await,
        3
    );
    api.change(|d| {
        let events = d.events.as_mut().expect("events");
        events.push(event(
            4,
            "nack",
            "edge-2 rejected CDS 77aa00bb",
            Some("web"),
            None,
        ));
    });
    b.wait_contains("#events li:first-child", "edge-2 rejected CDS", WAIT)
        .await;
    assert_eq!(
        b.js("return document.querySelectorAll('#events li').length")
            .await,
        4
    );
    let asked = api.data.lock().expect("fixture").since_asked.clone();
    assert!(
        asked.contains(&3),
        "the page asks for events after the last it has: {asked:?}"
    );

    // The charts draw lines once there are a few samples.
    b.wait_for(
        "the fleet's requests/s line",
        WAIT,
        "const p = document.querySelector('#chart-rps path[data-series=\"*fleet\"]');\
         return !!p && p.getAttribute('d').includes('L');",
    )
    .await;
    assert!(
        b.js("return document.querySelectorAll('#chart-p95 path[data-series]').length")
            .await
            .as_u64()
            .unwrap_or(0)
            >= 2
    );
    // Laid out for a laptop: nothing is cut off sideways at 1366 px.
    assert_eq!(
        b.js("return document.documentElement.scrollWidth <= window.innerWidth")
            .await,
        true
    );
    b.screenshot_page(&artifacts_dir().join("dashboard-fixture.png"))
        .await;

    // A backend going down shows without a reload.
    api.change(|d| {
        d.state["clusters"][0]["endpoints"][0]["health"] = json!("unhealthy");
        d.state["clusters"][0]["endpoints"][0]["probe"] =
            probe(0.0, Some("status 503 is not expected"), 2);
    });
    b.wait_text(&ep("127.0.0.1:9101", "health"), "✕ unhealthy", WAIT)
        .await;
    assert_eq!(b.text(&format!("{WEB} .serving")).await, "1 of 4 serving");

    // A rejected reload: its errors and the version still served.
    api.change(|d| {
        d.state["config"]["last_reload"] = json!({
            "at": now_ms(), "trigger": "watch", "result": "invalid",
            "errors": ["config/web.yaml:4:7: clusters.web.endpoints[1]: invalid address \"nope\""],
        });
    });
    b.wait_contains("#reload-error", "invalid address", WAIT)
        .await;
    assert!(
        b.text("#reload-error-title")
            .await
            .contains("still serving version 9f2c1e7ab34d")
    );

    // Traffic gone (a flotilla without the traffic API): said so, numbers blanked.
    api.change(|d| d.traffic = None);
    b.wait_contains("#traffic-status", "no traffic data yet", WAIT)
        .await;
    b.wait_text(&format!("{WEB} [data-field=\"rps\"]"), "—", WAIT)
        .await;
    assert_eq!(b.text("#tile-rps .value").await, "—");

    // flotilla unreachable: said so, the last data stays up.
    api.change(|d| d.state_status = StatusCode::SERVICE_UNAVAILABLE);
    b.wait_contains("#conn", "HTTP 503", WAIT).await;
    assert!(b.text("#clusters").await.contains("127.0.0.1:9101"));
    api.change(|d| d.state_status = StatusCode::OK);
    b.wait_contains("#conn", "live", WAIT).await;

    assert_eq!(b.js("return window.__notReloaded === true").await, true);
    // Nothing was fetched from anywhere but flotilla.
    let foreign = b
        .js("return performance.getEntriesByType('resource')\
             .map(e => e.name).filter(n => !n.startsWith(location.origin))")
        .await;
    assert_eq!(foreign, json!([]));
    b.close().await;
}

#[tokio::test]
async fn dashboard_copes_without_traffic_and_events_apis() {
    let mut data = full();
    data.traffic = None;
    data.events = None;
    let api = FixtureApi::start(data).await;
    let b = Browser::start("dashboard-no-traffic").await;
    b.goto(&api.url).await;
    b.wait_contains("#traffic-status", "no traffic data yet", WAIT)
        .await;
    b.wait_contains("#events-status", "No event log", WAIT)
        .await;
    b.wait_contains("#chart-rps .empty", "no traffic data yet", WAIT)
        .await;
    // Everything that does not need traffic is there.
    assert_eq!(b.text(&ep("127.0.0.1:9103", "health")).await, "✕ unhealthy");
    assert_eq!(b.text(&ep("127.0.0.1:9101", "rps")).await, "—");
    assert!(
        b.text("[data-node=\"edge-2\"] .nack")
            .await
            .contains("unknown field")
    );
    b.close().await;
}
