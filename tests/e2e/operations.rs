//! The runtime API against real Envoy: drains, weight overrides, leased registrations, the
//! token rule, persistence across restarts, and the node registry.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::backend::Backend;
use crate::support::client::{self, Load};
use crate::support::configs::web;
use crate::support::envoy::{Envoy, Xds};
use crate::support::flotilla::Flotilla;
use crate::support::setup::Setup;
use crate::support::{free_addr, wait};

async fn setup(xds: Xds) -> Setup {
    Setup::new(&["a", "b", "c"], xds, |b, l| {
        web(l, &["a", "b"].map(|n| b[n].address()).join(", "))
    })
    .await
}

/// Sends a request to the admin API; returns status and JSON body.
pub(crate) async fn call(
    f: &Flotilla,
    method: &str,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> (u16, Value) {
    let http = reqwest::Client::new();
    let url = format!("http://{}{path}", f.admin);
    let mut req = match method {
        "POST" => http.post(&url),
        "PUT" => http.put(&url),
        "DELETE" => http.delete(&url),
        _ => http.get(&url),
    };
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("admin call");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub(crate) fn endpoint<'a>(state: &'a Value, cluster: &str, addr: &str) -> Option<&'a Value> {
    state["clusters"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == cluster)?["endpoints"]
        .as_array()?
        .iter()
        .find(|e| e["address"] == addr)
}

#[tokio::test]
async fn a_drained_endpoint_gets_no_new_requests_until_undrained() {
    let s = setup(Xds::Delta).await;
    let b = s.addr("b");
    let load = Load::start(&[s.url("/")], 2, Duration::from_millis(2));
    load.wait_for_more(100).await;

    let (status, body) = call(
        &s.flotilla,
        "POST",
        &format!("/api/v1/clusters/web/endpoints/{b}/drain"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    wait::until(
        "Envoy to see b draining",
        Duration::from_secs(10),
        || async {
            s.envoy
                .health_flags("web", &b)
                .await
                .filter(|f| f.contains("draining"))
                .map(|_| ())
        },
    )
    .await;
    let state = s.flotilla.json("/api/v1/state").await;
    assert_eq!(endpoint(&state, "web", &b).expect("b")["draining"], true);
    // Settled: no new requests reach b.
    load.wait_for_more(50).await;
    let hits = s.backends["b"].hits();
    load.wait_for_more(300).await;
    assert_eq!(
        s.backends["b"].hits(),
        hits,
        "a drained endpoint got new requests"
    );

    let (status, _) = call(
        &s.flotilla,
        "DELETE",
        &format!("/api/v1/clusters/web/endpoints/{b}/drain"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    wait::until(
        "b to take traffic again",
        Duration::from_secs(10),
        || async { (s.backends["b"].hits() > hits + 20).then_some(()) },
    )
    .await;
    let report = load.stop().await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let events = s.flotilla.json("/api/v1/events").await.to_string();
    assert!(events.contains(&format!("{b} drained in web")), "{events}");
}

#[tokio::test]
async fn a_weight_override_reaches_envoy_and_can_be_dropped() {
    let s = setup(Xds::Sotw).await;
    let a = s.addr("a");
    let (status, body) = call(
        &s.flotilla,
        "PUT",
        &format!("/api/v1/clusters/web/endpoints/{a}/weight"),
        Some(json!({ "weight": 9 })),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let state = s.flotilla.json("/api/v1/state").await;
    let e = endpoint(&state, "web", &a).expect("a");
    assert_eq!(
        (e["weight"].as_u64(), e["configured_weight"].as_u64()),
        (Some(9), Some(1))
    );
    wait::until(
        "the override in traffic",
        Duration::from_secs(10),
        || async {
            let counts = client::spread(&s.url("/"), 50).await;
            (counts.get("a").copied().unwrap_or(0) >= 40).then_some(())
        },
    )
    .await;
    let (status, _) = call(
        &s.flotilla,
        "DELETE",
        &format!("/api/v1/clusters/web/endpoints/{a}/weight"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    wait::until("equal weights again", Duration::from_secs(10), || async {
        (client::spread(&s.url("/"), 20).await.get("a") == Some(&10)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_registration_joins_while_it_heartbeats_and_leaves_after_its_ttl() {
    let s = setup(Xds::Delta).await;
    let c = s.addr("c");
    let register = || {
        call(
            &s.flotilla,
            "POST",
            "/api/v1/clusters/web/registrations",
            Some(json!({ "address": c, "weight": 1, "ttl": "2s" })),
            None,
        )
    };
    let (status, body) = register().await;
    assert_eq!(status, 200, "{body}");
    wait::until("c in Envoy", Duration::from_secs(10), || async {
        s.envoy.health_flags("web", &c).await.map(|_| ())
    })
    .await;
    let state = s.flotilla.json("/api/v1/state").await;
    assert_eq!(
        endpoint(&state, "web", &c).expect("c")["source"],
        "registration"
    );
    assert_eq!(state["registrations"][0]["address"], c.as_str());
    wait::until("c to take traffic", Duration::from_secs(10), || async {
        client::spread(&s.url("/"), 6).await.get("c").map(|_| ())
    })
    .await;
    // Heartbeats keep it in for longer than one TTL.
    for _ in 0..4 {
        wait::holds_for(
            "a heartbeating registration stays in Envoy",
            Duration::from_secs(1),
            || async { s.envoy.health_flags("web", &c).await.is_some() },
        )
        .await;
        assert_eq!(register().await.0, 200);
    }
    // Heartbeats stop: it leaves within its TTL.
    let stopped = std::time::Instant::now();
    wait::until("c to leave Envoy", Duration::from_secs(10), || async {
        s.envoy
            .health_flags("web", &c)
            .await
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        stopped.elapsed() < Duration::from_secs(4),
        "left after {:?}",
        stopped.elapsed()
    );
    let counts = client::spread(&s.url("/"), 10).await;
    assert!(!counts.contains_key("c"), "{counts:?}");
}

#[tokio::test]
async fn bad_requests_get_a_clear_4xx_and_change_nothing() {
    let s = setup(Xds::Sotw).await;
    let a = s.addr("a");
    let before = s.flotilla.json("/api/v1/state").await["config"]["version"].clone();
    let nodes_before = s.flotilla.json("/api/v1/nodes").await[0]["types"].clone();
    let cases: Vec<(&str, String, Option<Value>, u16, &str)> = vec![
        (
            "POST",
            "/api/v1/clusters/nope/endpoints/127.0.0.1:1/drain".into(),
            None,
            404,
            "unknown cluster `nope`",
        ),
        (
            "POST",
            "/api/v1/clusters/web/endpoints/not-an-address/drain".into(),
            None,
            400,
            "not an address",
        ),
        (
            "POST",
            "/api/v1/clusters/web/endpoints/127.0.0.1:1/drain".into(),
            None,
            404,
            "is not an endpoint of cluster `web`",
        ),
        (
            "PUT",
            format!("/api/v1/clusters/web/endpoints/{a}/weight"),
            Some(json!({ "weight": 0 })),
            400,
            "out of range",
        ),
        (
            "PUT",
            format!("/api/v1/clusters/web/endpoints/{a}/weight"),
            Some(json!({ "wieght": 3 })),
            400,
            "unknown field `wieght`",
        ),
        (
            "PUT",
            format!("/api/v1/clusters/web/endpoints/{a}/weight"),
            Some(json!("five")),
            400,
            "bad JSON",
        ),
        (
            "POST",
            "/api/v1/clusters/web/registrations".into(),
            Some(json!({ "address": "10.0.0.1:80", "ttl": "2h" })),
            400,
            "ttl 2h is out of range",
        ),
        (
            "POST",
            "/api/v1/clusters/web/registrations".into(),
            Some(json!({ "address": "10.0.0.1:80", "ttl": "soon" })),
            400,
            "ttl:",
        ),
        (
            "POST",
            "/api/v1/clusters/web/registrations".into(),
            Some(json!({ "address": a, "ttl": "10s" })),
            409,
            "configured in cluster `web` already",
        ),
        (
            "POST",
            "/api/v1/clusters/nope/registrations".into(),
            Some(json!({ "address": "10.0.0.1:80", "ttl": "10s" })),
            404,
            "unknown cluster",
        ),
    ];
    for (method, path, body, status, message) in cases {
        let (got, reply) = call(&s.flotilla, method, &path, body, None).await;
        assert_eq!(got, status, "{method} {path}: {reply}");
        let error = reply["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(message),
            "{method} {path}: {error:?} lacks {message:?}"
        );
    }
    let state = s.flotilla.json("/api/v1/state").await;
    assert_eq!(state["config"]["version"], before);
    assert_eq!(state["registrations"], json!([]));
    assert_eq!(
        s.flotilla.json("/api/v1/nodes").await[0]["types"],
        nodes_before,
        "nothing was pushed"
    );
}

#[tokio::test]
async fn a_configured_token_is_required_for_changes() {
    let a = Backend::start("a").await;
    let listen = free_addr();
    let dir = tempfile::tempdir().expect("dir");
    std::fs::create_dir(dir.path().join("config")).expect("mkdir");
    let config = dir.path().join("config/flotilla.yaml");
    std::fs::write(&config, web(listen, &a.address())).expect("write");
    let f = Flotilla::start_with(dir, config, &["--admin-token", "s3cret"]).await;
    let path = format!("/api/v1/clusters/web/endpoints/{}/drain", a.address());
    let (status, body) = call(&f, "POST", &path, None, None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(call(&f, "POST", &path, None, Some("wrong")).await.0, 401);
    assert_eq!(call(&f, "POST", &path, None, Some("s3cret")).await.0, 200);
    // Reading needs no token.
    assert_eq!(call(&f, "GET", "/api/v1/state", None, None).await.0, 200);
}

#[tokio::test]
async fn drains_and_overrides_survive_a_restart() {
    let mut s = setup(Xds::Sotw).await;
    let (a, b) = (s.addr("a"), s.addr("b"));
    assert_eq!(
        call(
            &s.flotilla,
            "POST",
            &format!("/api/v1/clusters/web/endpoints/{a}/drain"),
            None,
            None
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(
            &s.flotilla,
            "PUT",
            &format!("/api/v1/clusters/web/endpoints/{b}/weight"),
            Some(json!({ "weight": 4 })),
            None
        )
        .await
        .0,
        200
    );
    s.flotilla.restart().await;
    let state = s.flotilla.json("/api/v1/state").await;
    assert_eq!(
        endpoint(&state, "web", &a).expect("a")["draining"],
        true,
        "{state}"
    );
    assert_eq!(endpoint(&state, "web", &b).expect("b")["weight"], 4);
    // The restarted flotilla serves the reconnecting Envoy the same: a still drained.
    wait::until(
        "Envoy back and in sync",
        Duration::from_secs(30),
        || async {
            let nodes = s.flotilla.json("/api/v1/nodes").await;
            (nodes[0]["in_sync"] == true).then_some(())
        },
    )
    .await;
    let hits = s.backends["a"].hits();
    let counts = client::spread(&s.url("/"), 20).await;
    assert_eq!(counts.get("b"), Some(&20), "{counts:?}");
    assert_eq!(s.backends["a"].hits(), hits);
}

#[tokio::test]
async fn disconnected_envoys_leave_the_registry() {
    let s = setup(Xds::Delta).await;
    let other = Envoy::start(&s.flotilla, "edge-2", "edge", Xds::SotwNoAds).await;
    let ids = |v: Value| -> Vec<String> {
        v.as_array()
            .expect("nodes")
            .iter()
            .map(|n| n["node_id"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    // A non-ADS Envoy opens its listener stream once its clusters are initialised.
    wait::until(
        "both Envoys listed, edge-2 with its per-type streams",
        Duration::from_secs(20),
        || async {
            let nodes = s.flotilla.json("/api/v1/nodes").await;
            (ids(nodes.clone()) == ["edge-1", "edge-2"] && nodes[1]["streams"].as_u64() >= Some(2))
                .then_some(())
        },
    )
    .await;
    let nodes = s.flotilla.json("/api/v1/nodes").await;
    let two = &nodes[1];
    assert_eq!(two["ads"], false);
    assert!(
        two["streams"].as_u64().unwrap_or(0) >= 2,
        "per-type streams: {two}"
    );
    assert!(
        two["envoy_version"]
            .as_str()
            .unwrap_or_default()
            .starts_with("1.40"),
        "{two}"
    );
    drop(other);
    wait::until("edge-2 to leave", Duration::from_secs(10), || async {
        (ids(s.flotilla.json("/api/v1/nodes").await) == ["edge-1"]).then_some(())
    })
    .await;
    let metrics = s
        .flotilla
        .get("/metrics")
        .await
        .text()
        .await
        .expect("metrics");
    wait::until("the node gauge", Duration::from_secs(5), || async {
        let m = s.flotilla.get("/metrics").await.text().await.ok()?;
        m.contains("flotilla_xds_nodes{fleet=\"edge\"} 1")
            .then_some(())
    })
    .await;
    assert!(metrics.contains("flotilla_xds_streams"), "{metrics}");
}
