//! Changes applied while traffic flows: no request fails, whatever changes.

use std::time::Duration;

use crate::support::backend::Backend;
use crate::support::client::{self, Load, Trace};
use crate::support::envoy::{Envoy, Xds};
use crate::support::flotilla::Flotilla;
use crate::support::setup::both_protocols;
use crate::support::{free_addr, wait};

fn config(listen: std::net::SocketAddr, web: &str, api: Option<&str>) -> String {
    let mut yaml = format!(
        "version: 1
clusters:
  web: {{ endpoints: [{web}] }}
"
    );
    if let Some(api) = api {
        yaml.push_str(&format!("  api: {{ endpoints: [{api}] }}\n"));
    }
    yaml.push_str(&format!(
        "listeners:
  public:
    address: {listen}
    routes:
"
    ));
    if api.is_some() {
        yaml.push_str("      - { match: { prefix: /api }, to: api }\n");
    }
    yaml.push_str("      - { match: { prefix: /web }, to: web }\n");
    yaml
}

async fn live_changes_fail_no_request(xds: Xds) {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let c = Backend::start("c").await;
    let listen = free_addr();
    let flotilla = Flotilla::start(&config(listen, &a.address(), None)).await;
    let envoy = Envoy::start(&flotilla, "edge-1", "edge", xds).await;
    envoy.wait_listener(listen).await;
    let web = format!("http://{listen}/web");
    let api = format!("http://{listen}/api");
    // Four loops back to back: a few hundred requests per second on this machine.
    let load = Load::start(std::slice::from_ref(&web), 4, Duration::from_millis(1));
    load.wait_for_more(200).await;

    // 1. An endpoint joins.
    flotilla.write_config(&config(
        listen,
        &format!("{}, {}", a.address(), b.address()),
        None,
    ));
    wait::until("b to take traffic", Duration::from_secs(10), || async {
        (b.hits() > 20).then_some(())
    })
    .await;
    load.wait_for_more(200).await;

    // 2. A weight changes: b gets 9 of every 10 requests.
    flotilla.write_config(&config(
        listen,
        &format!(
            "{{ address: {}, weight: 1 }}, {{ address: {}, weight: 9 }}",
            a.address(),
            b.address()
        ),
        None,
    ));
    wait::until("the new weights", Duration::from_secs(10), || async {
        let counts = client::spread(&web, 50).await;
        (counts.get("b").copied().unwrap_or(0) >= 40).then_some(())
    })
    .await;
    load.wait_for_more(200).await;

    // 2b. A cluster setting changes (Envoy re-creates and re-warms the cluster).
    flotilla.write_config(
        &config(
            listen,
            &format!(
                "{{ address: {}, weight: 1 }}, {{ address: {}, weight: 9 }}",
                a.address(),
                b.address()
            ),
            None,
        )
        .replace("web: {", "web: { connect_timeout: 2s,"),
    );
    wait::until(
        "the cluster update in Envoy",
        Duration::from_secs(10),
        || async {
            envoy
                .config_dump()
                .await
                .to_string()
                .contains("\"connect_timeout\":\"2s\"")
                .then_some(())
        },
    )
    .await;
    load.wait_for_more(300).await;

    // 3. A cluster and the route to it appear. The route may only appear once the cluster is
    //    ready: a client polling it sees 404 (no route yet), then 200, never a 503.
    let trace = Trace::start(&api);
    let two = format!(
        "{{ address: {}, weight: 1 }}, {{ address: {}, weight: 9 }}",
        a.address(),
        b.address()
    );
    flotilla.write_config(&config(listen, &two, Some(&c.address())));
    wait::until("the api route", Duration::from_secs(10), || async {
        (c.hits() > 50).then_some(())
    })
    .await;
    let seen = trace.stop().await;
    assert!(
        seen == ["404", "200"] || seen == ["200"],
        "a client of the new route saw {seen:?}"
    );
    let api_load = Load::start(std::slice::from_ref(&api), 2, Duration::from_millis(1));
    api_load.wait_for_more(100).await;
    let api_report = api_load.stop().await;
    assert!(api_report.failures.is_empty(), "{:?}", api_report.failures);

    // 4. The route and its cluster go. The cluster may only go once no route uses it: a
    //    client polling the route sees 200, then 404, never a 503.
    let trace = Trace::start(&api);
    trace.until_seen("200").await;
    flotilla.write_config(&config(listen, &two, None));
    wait::until(
        "the api cluster to leave Envoy",
        Duration::from_secs(10),
        || async {
            (!envoy
                .clusters()
                .await
                .lines()
                .any(|l| l.starts_with("api::")))
            .then_some(())
        },
    )
    .await;
    trace.until_seen("404").await;
    let seen = trace.stop().await;
    assert_eq!(
        seen,
        ["200", "404"],
        "a client of the removed route saw {seen:?}"
    );
    load.wait_for_more(200).await;

    let report = load.stop().await;
    assert!(
        report.failures.is_empty(),
        "{} of {} requests failed: {:?}",
        report.failures.len(),
        report.ok + report.failures.len() as u64,
        report.failures
    );
    assert!(report.ok > 1000, "only {} requests were made", report.ok);
}

both_protocols!(live_changes_fail_no_request);

/// Per-type streams cannot be ordered against each other: what flotilla can still promise
/// there is that endpoint and cluster updates fail nothing.
async fn non_ads_endpoint_and_cluster_changes_fail_no_request(xds: Xds) {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let listen = free_addr();
    let flotilla = Flotilla::start(&config(listen, &a.address(), None)).await;
    let envoy = Envoy::start(&flotilla, "edge-1", "edge", xds).await;
    envoy.wait_listener(listen).await;
    let web = format!("http://{listen}/web");
    let load = Load::start(std::slice::from_ref(&web), 4, Duration::from_millis(1));
    load.wait_for_more(200).await;
    flotilla.write_config(&config(
        listen,
        &format!("{}, {}", a.address(), b.address()),
        None,
    ));
    wait::until("b to take traffic", Duration::from_secs(10), || async {
        (b.hits() > 20).then_some(())
    })
    .await;
    flotilla.write_config(
        &config(listen, &format!("{}, {}", a.address(), b.address()), None)
            .replace("web: {", "web: { connect_timeout: 2s,"),
    );
    wait::until(
        "the cluster update in Envoy",
        Duration::from_secs(10),
        || async {
            envoy
                .config_dump()
                .await
                .to_string()
                .contains("\"connect_timeout\":\"2s\"")
                .then_some(())
        },
    )
    .await;
    load.wait_for_more(300).await;
    let report = load.stop().await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
}

#[tokio::test]
async fn non_ads_sotw_endpoint_and_cluster_changes_fail_no_request() {
    non_ads_endpoint_and_cluster_changes_fail_no_request(Xds::SotwNoAds).await;
}

#[tokio::test]
async fn non_ads_delta_endpoint_and_cluster_changes_fail_no_request() {
    non_ads_endpoint_and_cluster_changes_fail_no_request(Xds::DeltaNoAds).await;
}
