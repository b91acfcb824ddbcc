//! Reloads that must not hurt: a large config reloads without stalling the admin API or the
//! xDS streams, and a config that would empty every Envoy is refused as a probable accident.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::backend::Backend;
use crate::support::envoy::{Envoy, Xds};
use crate::support::flotilla::Flotilla;
use crate::support::{free_addr, wait};

/// `web` routed by the `edge` fleet's listener, plus `extra` clusters no fleet routes to: the
/// Envoy receives only `web`, flotilla still reads, translates and encodes everything.
fn fleet_config(listen: SocketAddr, web: &str, extra: usize) -> String {
    let mut yaml = format!(
        "version: 1
fleets:
  edge: {{ listeners: [public] }}
listeners:
  public:
    address: {listen}
    routes: [ {{ to: web }} ]
clusters:
  web: {{ endpoints: [{web}] }}
"
    );
    for i in 0..extra {
        let (a, b) = (i / 250, i % 250);
        yaml.push_str(&format!(
            "  bulk{i}: {{ endpoints: [10.{a}.{b}.1:8080, 10.{a}.{b}.2:8080] }}\n"
        ));
    }
    yaml
}

async fn timed_get(client: &reqwest::Client, url: &str) -> (Duration, bool) {
    let started = Instant::now();
    let ok = client
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    (started.elapsed(), ok)
}

async fn version(f: &Flotilla) -> String {
    f.json("/api/v1/state").await["config"]["version"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_reload_keeps_the_admin_api_and_the_streams_responsive() {
    let a = Backend::start("a").await;
    let listen = free_addr();
    let flotilla = Flotilla::start(&fleet_config(listen, &a.address(), 0)).await;
    let envoy = Envoy::start(&flotilla, "edge-1", "edge", Xds::Delta).await;
    envoy.wait_listener(listen).await;
    let before = version(&flotilla).await;
    let connected_since = flotilla.json("/api/v1/nodes").await[0]["connected_since"].clone();
    let connections = envoy.stat("cluster.flotilla_xds.upstream_cx_total").await;

    flotilla.write_config(&fleet_config(listen, &a.address(), 30_000));
    let client = reqwest::Client::new();
    let (healthz, readyz) = (
        format!("http://{}/healthz", flotilla.admin),
        format!("http://{}/readyz", flotilla.admin),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut polls = 0;
    let mut answers: Vec<Duration> = Vec::new();
    loop {
        for url in [&healthz, &readyz] {
            let (took, ok) = timed_get(&client, url).await;
            assert!(ok, "{url} failed during the reload");
            answers.push(took);
        }
        polls += 1;
        assert_eq!(
            envoy.stat("control_plane.connected_state").await,
            Some(1),
            "Envoy lost its xDS stream during the reload"
        );
        let state = flotilla.json("/api/v1/state").await;
        if state["config"]["version"] != before.as_str() {
            assert_eq!(state["config"]["last_reload"]["result"], "applied");
            break;
        }
        assert!(Instant::now() < deadline, "the large reload never finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        polls >= 3,
        "only {polls} polls: the reload was too quick to observe"
    );
    // The stall this guards against lasted over 30 s. A loaded test machine (other tests' Envoys
    // share its two cores) can delay a single answer, so: the typical answer within 100 ms,
    // and not one answer near a keepalive timeout.
    answers.sort();
    let median = answers[answers.len() / 2];
    let slowest = answers[answers.len() - 1];
    assert!(
        median < Duration::from_millis(100),
        "the admin API typically took {median:?} to answer during the reload"
    );
    assert!(
        slowest < Duration::from_secs(1),
        "the admin API took {slowest:?} to answer during the reload"
    );
    let nodes = flotilla.json("/api/v1/nodes").await;
    assert_eq!(nodes[0]["connected_since"], connected_since, "{nodes}");
    assert_eq!(
        envoy.stat("cluster.flotilla_xds.upstream_cx_total").await,
        connections,
        "Envoy reconnected"
    );
}

const INVALID: &str = "flotilla_config_reloads_total{result=\"invalid\"}";

async fn metric(f: &Flotilla, series: &str) -> u64 {
    let text = f.get("/metrics").await.text().await.expect("metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[tokio::test]
async fn a_config_that_empties_every_envoy_is_refused_unless_allowed() {
    let a = Backend::start("a").await;
    let listen = free_addr();
    let flotilla = Flotilla::start(&fleet_config(listen, &a.address(), 0)).await;
    let envoy = Envoy::start(&flotilla, "edge-1", "edge", Xds::Sotw).await;
    envoy.wait_listener(listen).await;
    let good = version(&flotilla).await;
    let invalid_before = metric(&flotilla, INVALID).await;

    flotilla.write_config("version: 1\n");
    wait::until("the refusal", Duration::from_secs(10), || async {
        (metric(&flotilla, INVALID).await > invalid_before).then_some(())
    })
    .await;
    let state = flotilla.json("/api/v1/state").await;
    assert_eq!(state["config"]["version"], good.as_str());
    let error = state["config"]["last_reload"]["errors"][0].to_string();
    assert!(
        error.contains(
            "refused as a probable accident: it has no listeners; the served config has 1"
        ),
        "{error}"
    );
    let events = flotilla.json("/api/v1/events").await.to_string();
    assert!(
        events.contains("refused as a probable accident"),
        "{events}"
    );
    assert!(flotilla.log().contains("refused as a probable accident"));
    envoy.wait_listener(listen).await;

    flotilla.write_config("version: 1\nallow_empty: true\n");
    wait::until(
        "the allowed empty config",
        Duration::from_secs(10),
        || async {
            let state = flotilla.json("/api/v1/state").await;
            (state["config"]["last_reload"]["result"] == "applied").then_some(())
        },
    )
    .await;
    wait::until(
        "Envoy to drop the listener",
        Duration::from_secs(10),
        || async {
            let dump = envoy.admin_get("/listeners").await;
            (!dump.contains(&listen.port().to_string())).then_some(())
        },
    )
    .await;
}
