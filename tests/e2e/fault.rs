//! Fault injection per route (issue 25.5): Envoy answers an aborted route with the configured
//! status without reaching the backend, and holds a delayed route at least the configured time.

use std::time::{Duration, Instant};

use crate::support::backend::Backend;
use crate::support::envoy::{Envoy, Xds};
use crate::support::flotilla::Flotilla;
use crate::support::{client, free_addr, wait};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_and_delayed_routes_fail_as_configured() {
    let web = Backend::start("web").await;
    let addr = free_addr();
    let yaml = format!(
        r#"
version: 1
clusters:
  web: {{ endpoints: ["{web}"] }}
listeners:
  public:
    address: {addr}
    routes:
      - {{ match: {{ prefix: /abort }}, to: web, fault: {{ abort: {{ status: 418 }} }} }}
      - {{ match: {{ prefix: /slow }}, to: web, fault: {{ delay: {{ duration: 700ms, percent: 100 }} }} }}
      - {{ to: web }}
"#,
        web = web.address()
    );
    let flotilla = Flotilla::start(&yaml).await;
    let envoy = Envoy::start(&flotilla, "edge-1", "edge", Xds::Sotw).await;
    envoy.wait_listener(addr).await;
    let http = client::http();
    let get = |path: &'static str| {
        let http = http.clone();
        async move {
            http.get(format!("http://{addr}{path}"))
                .send()
                .await
                .ok()
                .map(|r| r.status().as_u16())
        }
    };
    wait::until(
        "the route to web answers",
        Duration::from_secs(20),
        || async { (get("/").await == Some(200)).then_some(()) },
    )
    .await;

    let hits = web.hits();
    for _ in 0..5 {
        assert_eq!(get("/abort").await, Some(418), "abort 100% answers 418");
    }
    assert_eq!(web.hits(), hits, "aborted requests never reach the backend");

    let started = Instant::now();
    assert_eq!(
        get("/slow").await,
        Some(200),
        "a delayed request still succeeds"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(700),
        "delay 100% holds the request at least 700ms, took {took:?}"
    );
    assert_eq!(
        web.hits(),
        hits + 1,
        "the delayed request reached the backend"
    );
    let started = Instant::now();
    assert_eq!(get("/").await, Some(200));
    assert!(
        started.elapsed() < Duration::from_millis(700),
        "routes without a fault are not delayed"
    );
}
