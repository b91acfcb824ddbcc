//! A real flotilla's admin API against what a web page in the operator's browser can send:
//! cross-site changes, a DNS-rebound host name, form bodies; and its errors, which are JSON
//! whatever produced them.

use serde_json::Value;

use crate::support::configs::web;
use crate::support::flotilla::Flotilla;
use crate::support::free_addr;

/// method, path, headers, body, expected status.
type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str, u16);

const DRAIN: &str = "/api/v1/clusters/web/endpoints/127.0.0.1:8081/drain";

async fn start(extra: &[&str]) -> Flotilla {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("config")).unwrap();
    let config = dir.path().join("config/flotilla.yaml");
    std::fs::write(&config, web(free_addr(), "127.0.0.1:8081")).unwrap();
    let f = Flotilla::start_with(dir, config, extra).await;
    f.wait_ready().await;
    f
}

/// Sends `method path` with `headers`; returns the status and the body as JSON (Null if not).
async fn send(
    f: &Flotilla,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    let url = format!("http://{}{path}", f.admin);
    let mut req = reqwest::Client::new().request(method.parse().unwrap(), url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = req
        .body(body.to_string())
        .send()
        .await
        .expect("admin reachable");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn draining(state: &Value) -> bool {
    state["clusters"][0]["endpoints"][0]["draining"] == true
}

#[tokio::test]
async fn a_web_page_can_neither_change_nor_read_anything() {
    let f = start(&[]).await;
    let cases: [Case<'_>; 4] = [
        // A page on another site posting a drain (no preflight for a simple request).
        ("POST", DRAIN, &[("origin", "http://evil.example")], "", 403),
        // A page on a name the attacker points at 127.0.0.1 (DNS rebinding).
        ("POST", DRAIN, &[("host", "rebind.evil.example")], "", 403),
        (
            "GET",
            "/api/v1/state",
            &[("host", "rebind.evil.example")],
            "",
            403,
        ),
        // A cross-site form body.
        ("POST", DRAIN, &[("content-type", "text/plain")], "x=1", 415),
    ];
    for (method, path, headers, body, expected) in cases {
        let (status, reply) = send(&f, method, path, headers, body).await;
        assert_eq!(status, expected, "{method} {path} {headers:?}: {reply}");
        assert!(reply["error"].is_string(), "{reply}");
    }
    assert!(!draining(&f.json("/api/v1/state").await), "{}", f.log());

    // Its own origin, and curl (no Origin), may.
    let own = format!("http://{}", f.admin);
    let (status, reply) = send(&f, "POST", DRAIN, &[("origin", &own)], "").await;
    assert_eq!(status, 200, "{reply}");
    assert!(draining(&f.json("/api/v1/state").await));
}

#[tokio::test]
async fn an_allowed_host_name_is_answered() {
    let f = start(&["--admin-allowed-host", "flotilla.test"]).await;
    let headers = [("host", "flotilla.test:18080")];
    let (status, reply) = send(&f, "GET", "/api/v1/state", &headers, "").await;
    assert_eq!(status, 200, "{reply}");
}

#[tokio::test]
async fn errors_from_the_router_and_the_server_are_json() {
    let f = start(&[]).await;
    let long = format!("/api/v1/state?q={}", "a".repeat(9 * 1024));
    for (method, path, expected) in [
        (
            "POST",
            "/api/v1/clusters/%FF/endpoints/127.0.0.1:8081/drain",
            400,
        ),
        ("PATCH", DRAIN, 405),
        ("GET", "/api/v1/nope", 404),
        ("GET", long.as_str(), 414),
    ] {
        let (status, reply) = send(&f, method, path, &[], "").await;
        assert_eq!(status, expected, "{method} {}", &path[..path.len().min(60)]);
        assert!(reply["error"].is_string(), "{method}: {reply}");
    }
}

#[tokio::test]
async fn the_metadata_service_cannot_register() {
    let f = start(&[]).await;
    let (status, reply) = send(
        &f,
        "POST",
        "/api/v1/clusters/web/registrations",
        &[("content-type", "application/json")],
        r#"{"address": "169.254.169.254:80", "ttl": "10s"}"#,
    )
    .await;
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply["error"].as_str().unwrap().contains("allow_addresses"),
        "{reply}"
    );
}
