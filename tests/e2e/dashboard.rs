//! The dashboard in headless Chromium, in front of a real flotilla, a real Envoy and three
//! backends under load: the page shows the cluster and its endpoints, the traffic Envoy
//! reports, and a backend going down, all without being reloaded.

use std::time::Duration;

use serde_json::Value;

use crate::support::browser::{Browser, artifacts_dir, js_string};
use crate::support::client::Load;
use crate::support::envoy::Xds;
use crate::support::setup::Setup;

/// Health checks every 500 ms; two failures make a backend unhealthy.
fn checked(
    b: &std::collections::BTreeMap<String, crate::support::backend::Backend>,
    listen: std::net::SocketAddr,
) -> String {
    let endpoints: Vec<String> = ["a", "b", "c"].iter().map(|n| b[*n].address()).collect();
    format!(
        "version: 1
clusters:
  web:
    policy: round_robin
    endpoints: [{}]
    health_check:
      http: {{ path: /healthz }}
      interval: 500ms
      timeout: 250ms
      jitter: 50ms
      healthy_threshold: 1
      unhealthy_threshold: 2
listeners:
  public:
    address: {listen}
    routes: [ {{ to: web }} ]
",
        endpoints.join(", ")
    )
}

/// Envoy's stats reach flotilla every few seconds and rates cover a 10 s window.
const TRAFFIC_WAIT: Duration = Duration::from_secs(40);
const WAIT: Duration = Duration::from_secs(20);

fn row(address: &str) -> String {
    format!("[data-cluster=\"web\"] tr[data-endpoint=\"{address}\"]")
}

/// A number the page shows, from the element's `data-value` (null when it shows none).
fn value_of(selector: &str) -> String {
    format!(
        "const e = document.querySelector({}); \
         return e && e.dataset.value !== '' && e.dataset.value !== undefined ? Number(e.dataset.value) : null;",
        js_string(selector)
    )
}

async fn wait_health(b: &Browser, address: &str, health: &str) {
    b.wait_for(
        &format!("{address} shown {health}"),
        WAIT,
        &format!(
            "const r = document.querySelector({}); return !!r && r.dataset.health === {};",
            js_string(&row(address)),
            js_string(health)
        ),
    )
    .await;
}

/// Opens the dashboard of a running setup and waits for its three healthy endpoints and its
/// Envoy in sync.
async fn open(s: &Setup, name: &str) -> Browser {
    let b = Browser::start(name).await;
    b.goto(&format!("http://{}/", s.flotilla.admin)).await;
    b.js("window.__notReloaded = true; return null").await;
    for n in ["a", "b", "c"] {
        wait_health(&b, &s.addr(n), "healthy").await;
    }
    b.wait_text("[data-node=\"edge-1\"] .sync", "✓ in sync", WAIT)
        .await;
    b.wait_contains("#events", "edge-1 connected", WAIT).await;
    b
}

async fn kill_c_and_see_it_go_down(s: &mut Setup, b: &Browser) {
    let c = s.addr("c");
    s.backends.get_mut("c").expect("c").kill();
    wait_health(b, &c, "unhealthy").await;
    assert_eq!(
        b.text(&format!("{} [data-field=\"health\"]", row(&c)))
            .await,
        "✕ unhealthy"
    );
    assert_eq!(
        b.text("[data-cluster=\"web\"] .serving").await,
        "2 of 3 serving"
    );
    // The transition is in the event log too.
    b.wait_for(
        "the health event for c",
        WAIT,
        &format!(
            "return Array.from(document.querySelectorAll('#events li[data-kind=\"health\"]'))\
               .some(li => li.textContent.includes({}) && li.textContent.includes('unhealthy'));",
            js_string(&c)
        ),
    )
    .await;
    assert_eq!(
        b.js("return window.__notReloaded === true").await,
        true,
        "the page followed without a reload"
    );
}

#[tokio::test]
async fn dashboard_shows_a_backend_going_down_without_a_reload() {
    let mut s = Setup::new(&["a", "b", "c"], Xds::Sotw, checked).await;
    let load = Load::start(&[s.url("/")], 2, Duration::from_millis(5));
    let b = open(&s, "dashboard-backend-down").await;
    load.wait_for_more(100).await;

    kill_c_and_see_it_go_down(&mut s, &b).await;

    let shot = artifacts_dir().join("dashboard-backend-down.png");
    b.screenshot_page(&shot).await;
    eprintln!("dashboard screenshot: {}", shot.display());
    b.close().await;
    load.stop().await;
}

/// Needs flotilla to gather Envoy's stats (`/api/v1/traffic`).
#[tokio::test]
async fn dashboard_shows_live_traffic_from_envoy() {
    let mut s = Setup::new(&["a", "b", "c"], Xds::Sotw, checked).await;
    let load = Load::start(&[s.url("/")], 2, Duration::from_millis(5));
    let b = open(&s, "dashboard-traffic").await;
    load.wait_for_more(100).await;

    // Traffic numbers for the cluster and for every endpoint.
    let rps = b
        .wait_for(
            "requests/s for the web cluster (from /api/v1/traffic)",
            TRAFFIC_WAIT,
            &format!(
                "const v = (() => {{ {} }})(); return v > 0 ? v : null;",
                value_of("[data-cluster=\"web\"] [data-field=\"rps\"]")
            ),
        )
        .await;
    assert!(rps.as_f64().unwrap_or(0.0) > 0.0, "{rps}");
    for n in ["a", "b", "c"] {
        b.wait_for(
            &format!("requests/s for {n}"),
            TRAFFIC_WAIT,
            &format!(
                "const v = (() => {{ {} }})(); return v > 0;",
                value_of(&format!("{} [data-field=\"rps\"]", row(&s.addr(n))))
            ),
        )
        .await;
    }
    let success = b
        .js(&value_of(
            "[data-cluster=\"web\"] [data-field=\"success_rate\"]",
        ))
        .await;
    assert!(
        success.as_f64().unwrap_or(0.0) > 0.9,
        "success rate {success}"
    );
    assert!(b.text("#tile-rps .sub").await.contains("1 Envoy"));
    b.wait_for(
        "the fleet's requests/s line",
        WAIT,
        "const p = document.querySelector('#chart-rps path[data-series=\"*fleet\"]');\
         return !!p && p.getAttribute('d').includes('L');",
    )
    .await;

    kill_c_and_see_it_go_down(&mut s, &b).await;
    // c gets no more requests, and the page's numbers say so; a and b carry the load.
    let c = s.addr("c");
    b.wait_for(
        "c's requests/s to fall to 0",
        TRAFFIC_WAIT,
        &format!(
            "const v = (() => {{ {} }})(); return v === 0;",
            value_of(&format!("{} [data-field=\"rps\"]", row(&c)))
        ),
    )
    .await;
    for n in ["a", "b"] {
        let v = b
            .js(&value_of(&format!(
                "{} [data-field=\"rps\"]",
                row(&s.addr(n))
            )))
            .await;
        assert!(
            matches!(v, Value::Number(_)) && v.as_f64() > Some(0.0),
            "{n}: {v}"
        );
    }

    let shot = artifacts_dir().join("dashboard.png");
    b.screenshot_page(&shot).await;
    eprintln!("dashboard screenshot: {}", shot.display());
    b.close().await;
    load.stop().await;
}

#[tokio::test]
async fn dashboard_and_assets_are_served_from_the_binary() {
    let f = crate::support::flotilla::Flotilla::start(
        "version: 1\nclusters:\n  web:\n    endpoints: [127.0.0.1:9]\n",
    )
    .await;
    for (path, content_type, contains) in [
        ("/", "text/html; charset=utf-8", "/assets/app.js"),
        (
            "/assets/app.js",
            "text/javascript; charset=utf-8",
            "/api/v1/state",
        ),
        ("/assets/style.css", "text/css; charset=utf-8", ".badge"),
    ] {
        let r = f.get(path).await;
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers().clone();
        assert_eq!(h["content-type"], content_type, "{path}");
        assert_eq!(h["cache-control"], "no-cache", "{path}");
        assert!(
            h["content-security-policy"]
                .to_str()
                .expect("csp")
                .contains("default-src 'none'"),
            "{path}"
        );
        let body = r.text().await.expect("body");
        assert!(body.contains(contains), "{path} lacks {contains}");
    }
    assert_eq!(f.get("/assets/nope.js").await.status(), 404);
}
