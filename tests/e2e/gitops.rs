//! GitOps: flotilla follows the files, whatever way they change, and never applies a broken
//! config.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::backend::Backend;
use crate::support::client;
use crate::support::configs::web;
use crate::support::envoy::{Envoy, Xds};
use crate::support::flotilla::Flotilla;
use crate::support::setup::{Setup, both_protocols};
use crate::support::xds_client::{CDS, DeltaClient, EDS};
use crate::support::{free_addr, wait};
use crate::validate::flotilla as run_flotilla;

/// A counter from flotilla's /metrics (0 when absent).
async fn metric(f: &Flotilla, series: &str) -> u64 {
    let text = f.get("/metrics").await.text().await.expect("metrics");
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .map_or(0, |v| v as u64)
}

async fn live_version(f: &Flotilla) -> String {
    f.json("/api/v1/state").await["config"]["version"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The version `flotilla render` computes for a config path: what serve must end up serving.
fn rendered_version(path: &Path) -> String {
    let out = run_flotilla(&["render", path.to_str().expect("utf-8")]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    v["version_info"].as_str().expect("version").to_string()
}

async fn wait_version(f: &Flotilla, version: &str) {
    wait::until(
        &format!("flotilla to serve {version}"),
        Duration::from_secs(10),
        || async { (live_version(f).await == version).then_some(()) },
    )
    .await;
}

const APPLIED: &str = "flotilla_config_reloads_total{result=\"applied\"}";
const INVALID: &str = "flotilla_config_reloads_total{result=\"invalid\"}";
/// A reload that could not read the files (a deleted config): retried with back-off.
const UNREADABLE: &str = "flotilla_config_reloads_total{result=\"unreadable\"}";
const UNCHANGED: &str = "flotilla_config_reloads_total{result=\"unchanged\"}";

async fn an_edit_reaches_envoy_and_its_traffic_within_a_second(xds: Xds) {
    let s = Setup::new(&["a", "b"], xds, |b, l| web(l, &b["a"].address())).await;
    assert_eq!(client::spread(&s.url("/"), 3).await.get("a"), Some(&3));
    let written = Instant::now();
    s.flotilla.write_config(&web(s.listen, &s.addr("b")));
    wait::until(
        "traffic to follow the edit",
        Duration::from_secs(5),
        || async { (client::spread(&s.url("/"), 1).await.get("b") == Some(&1)).then_some(()) },
    )
    .await;
    let elapsed = written.elapsed();
    assert!(
        elapsed < Duration::from_secs(1),
        "the edit took {elapsed:?} to reach traffic"
    );
    let dump = s.envoy.admin_get("/config_dump?include_eds").await;
    assert!(
        dump.contains(&s.backends["b"].addr.port().to_string()),
        "config_dump shows b"
    );
    assert!(!dump.contains(&format!("\"port_value\": {}", s.backends["a"].addr.port())));
}

async fn an_invalid_edit_changes_nothing_and_is_reported(xds: Xds) {
    let s = Setup::new(&["a", "b"], xds, |b, l| web(l, &b["a"].address())).await;
    let good = live_version(&s.flotilla).await;
    let responses_before =
        s.flotilla.json("/api/v1/nodes").await[0]["types"]["eds"]["responses"].clone();
    let invalid_before = metric(&s.flotilla, INVALID).await;

    s.flotilla
        .write_config(&web(s.listen, &s.addr("b")).replace("endpoints:", "endpoint:"));
    wait::until("the invalid reload", Duration::from_secs(10), || async {
        (metric(&s.flotilla, INVALID).await > invalid_before).then_some(())
    })
    .await;
    let state = s.flotilla.json("/api/v1/state").await;
    assert_eq!(
        state["config"]["version"],
        good.as_str(),
        "the last good config is live"
    );
    assert_eq!(state["config"]["last_reload"]["result"], "invalid");
    let error = state["config"]["last_reload"]["errors"][0]
        .as_str()
        .expect("error");
    assert!(
        error.contains("flotilla.yaml:3:10: clusters.web.endpoint: unknown field `endpoint` (did you mean `endpoints`?)"),
        "{error}"
    );
    // Envoy was not touched and keeps serving.
    assert_eq!(client::spread(&s.url("/"), 10).await.get("a"), Some(&10));
    let nodes = s.flotilla.json("/api/v1/nodes").await;
    assert_eq!(
        nodes[0]["types"]["eds"]["responses"], responses_before,
        "{nodes}"
    );

    s.flotilla.write_config(&web(s.listen, &s.addr("b")));
    wait::until("the fix to apply", Duration::from_secs(10), || async {
        (client::spread(&s.url("/"), 1).await.get("b") == Some(&1)).then_some(())
    })
    .await;
}

/// The Kubernetes ConfigMap mount layout: files are symlinks into `..data`, itself a symlink
/// to a timestamped directory; an update writes a new directory and renames a new `..data`
/// link over the old one, atomically.
struct ConfigMap {
    dir: PathBuf,
    generation: u32,
}

impl ConfigMap {
    fn new(dir: PathBuf, files: &[(&str, String)]) -> ConfigMap {
        std::fs::create_dir_all(&dir).expect("dir");
        let mut m = ConfigMap { dir, generation: 0 };
        m.update(files);
        for (name, _) in files {
            std::os::unix::fs::symlink(format!("..data/{name}"), m.dir.join(name))
                .expect("file link");
        }
        m
    }

    fn update(&mut self, files: &[(&str, String)]) {
        self.generation += 1;
        let old = self.generation - 1;
        let version = format!("..2026_11_27_00_00_00.{:09}", self.generation);
        let target = self.dir.join(&version);
        std::fs::create_dir(&target).expect("version dir");
        for (name, content) in files {
            std::fs::write(target.join(name), content).expect("write");
        }
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&version, &tmp).expect("data link");
        std::fs::rename(&tmp, self.dir.join("..data")).expect("swap ..data");
        if old > 0 {
            let _ =
                std::fs::remove_dir_all(self.dir.join(format!("..2026_11_27_00_00_00.{old:09}")));
        }
    }
}

fn split_config(listen: std::net::SocketAddr, endpoints: &str) -> [(&'static str, String); 2] {
    [
        (
            "clusters.yaml",
            format!("version: 1\nclusters:\n  web: {{ endpoints: [{endpoints}] }}\n"),
        ),
        (
            "listeners.yaml",
            format!(
                "version: 1\nlisteners:\n  public: {{ address: {listen}, routes: [ {{ to: web }} ] }}\n"
            ),
        ),
    ]
}

#[tokio::test]
async fn a_configmap_symlink_swap_is_applied() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let listen = free_addr();
    let dir = tempfile::tempdir().expect("dir");
    let mount = dir.path().join("config");
    let mut map = ConfigMap::new(mount.clone(), &split_config(listen, &a.address()));
    let flotilla = Flotilla::start_with(dir, mount.clone(), &[]).await;
    let envoy = Envoy::start(&flotilla, "edge-1", "edge", Xds::Delta).await;
    envoy.wait_listener(listen).await;
    assert_eq!(
        client::spread(&format!("http://{listen}/"), 3)
            .await
            .get("a"),
        Some(&3)
    );

    map.update(&split_config(listen, &b.address()));
    wait::until("the swapped config", Duration::from_secs(10), || async {
        (client::spread(&format!("http://{listen}/"), 1)
            .await
            .get("b")
            == Some(&1))
        .then_some(())
    })
    .await;
    assert_eq!(live_version(&flotilla).await, rendered_version(&mount));
}

#[tokio::test]
async fn one_invalid_file_in_a_directory_holds_back_the_whole_change() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let listen = free_addr();
    let dir = tempfile::tempdir().expect("dir");
    let conf = dir.path().join("config");
    std::fs::create_dir(&conf).expect("config dir");
    let [(c_name, c), (l_name, l)] = split_config(listen, &a.address());
    std::fs::write(conf.join(c_name), &c).expect("write");
    std::fs::write(conf.join(l_name), &l).expect("write");
    let flotilla = Flotilla::start_with(dir, conf.clone(), &[]).await;
    let envoy = Envoy::start(&flotilla, "edge-1", "edge", Xds::Sotw).await;
    envoy.wait_listener(listen).await;
    let good = live_version(&flotilla).await;
    let invalid_before = metric(&flotilla, INVALID).await;

    // Both files change; the listeners file is broken: nothing of the change applies.
    let [(_, c2), (_, _)] = split_config(listen, &b.address());
    let atomic_write = |name: &str, text: &str| {
        let tmp = conf.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, conf.join(name)).expect("rename");
    };
    atomic_write(l_name, &l.replace("routes", "rutes"));
    atomic_write(c_name, &c2);
    wait::until("the invalid reload", Duration::from_secs(10), || async {
        (metric(&flotilla, INVALID).await > invalid_before).then_some(())
    })
    .await;
    wait::holds_for(
        "the last good version stays live",
        Duration::from_millis(300),
        || async { live_version(&flotilla).await == good },
    )
    .await;
    // The log tells the same story as the metric.
    wait::until(
        "the rejection in the log",
        Duration::from_secs(10),
        || async {
            flotilla
                .log()
                .contains("config rejected; still serving the last good config")
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        client::spread(&format!("http://{listen}/"), 5)
            .await
            .get("a"),
        Some(&5)
    );
    let errors =
        flotilla.json("/api/v1/state").await["config"]["last_reload"]["errors"].to_string();
    assert!(errors.contains("listeners.yaml:3:"), "{errors}");

    atomic_write(l_name, &l);
    wait_version(&flotilla, &rendered_version(&conf)).await;
    assert_eq!(
        client::spread(&format!("http://{listen}/"), 5)
            .await
            .get("b"),
        Some(&5)
    );
}

#[tokio::test]
async fn a_burst_of_fifty_writes_is_one_reload_and_ends_in_the_last_state() {
    let backends: Vec<Backend> = {
        let mut v = Vec::new();
        for i in 0..2 {
            v.push(Backend::start(&format!("b{i}")).await);
        }
        v
    };
    let listen = free_addr();
    let eps = |w: u32| {
        format!(
            "{{ address: {}, weight: {w} }}, {}",
            backends[0].address(),
            backends[1].address()
        )
    };
    let flotilla = Flotilla::start(&web(listen, &eps(1))).await;
    let envoy = Envoy::start(&flotilla, "edge-1", "edge", Xds::Delta).await;
    envoy.wait_listener(listen).await;
    let applied_before = metric(&flotilla, APPLIED).await;
    let eds_before = flotilla.json("/api/v1/nodes").await[0]["types"]["eds"]["responses"]
        .as_u64()
        .unwrap_or(0);

    for w in 2..=51 {
        flotilla.write_config(&web(listen, &eps(w)));
    }
    wait_version(&flotilla, &rendered_version(&flotilla.config)).await;
    wait::holds_for(
        "at most 3 reloads for one burst",
        Duration::from_millis(500),
        || async { metric(&flotilla, APPLIED).await - applied_before <= 3 },
    )
    .await;
    let reloads = metric(&flotilla, APPLIED).await - applied_before;
    assert!(
        (1..=3).contains(&reloads),
        "{reloads} reloads for one burst"
    );
    let nodes = flotilla.json("/api/v1/nodes").await;
    let pushes = nodes[0]["types"]["eds"]["responses"].as_u64().unwrap_or(0) - eds_before;
    assert!(
        (1..=3).contains(&pushes),
        "{pushes} EDS pushes for one burst: {nodes}"
    );
    assert_eq!(nodes[0]["in_sync"], true);
    let dump = envoy.config_dump().await.to_string();
    assert!(
        dump.contains("\"load_balancing_weight\":51"),
        "Envoy holds the last write"
    );
}

#[tokio::test]
async fn a_deleted_and_recreated_file_is_applied() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let listen = free_addr();
    let flotilla = Flotilla::start(&web(listen, &a.address())).await;
    let envoy = Envoy::start(&flotilla, "edge-1", "edge", Xds::Sotw).await;
    envoy.wait_listener(listen).await;
    let good = live_version(&flotilla).await;
    let unreadable_before = metric(&flotilla, UNREADABLE).await;

    std::fs::remove_file(&flotilla.config).expect("delete");
    wait::until("the failed reload", Duration::from_secs(10), || async {
        (metric(&flotilla, UNREADABLE).await > unreadable_before).then_some(())
    })
    .await;
    assert_eq!(
        live_version(&flotilla).await,
        good,
        "a missing file changes nothing"
    );
    assert_eq!(
        client::spread(&format!("http://{listen}/"), 3)
            .await
            .get("a"),
        Some(&3)
    );

    std::fs::write(&flotilla.config, web(listen, &b.address())).expect("recreate");
    wait_version(&flotilla, &rendered_version(&flotilla.config)).await;
    wait::until("traffic to follow", Duration::from_secs(10), || async {
        (client::spread(&format!("http://{listen}/"), 1)
            .await
            .get("b")
            == Some(&1))
        .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_partially_written_file_loses_to_the_complete_one() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let listen = free_addr();
    let flotilla = Flotilla::start(&web(listen, &a.address())).await;
    let invalid_before = metric(&flotilla, INVALID).await;
    let complete = web(listen, &b.address());
    // Written in place, in two parts, with a pause longer than the debounce between them.
    let half = &complete[..complete.len() / 2];
    std::fs::write(&flotilla.config, half).expect("first half");
    wait::until(
        "the partial file to be rejected",
        Duration::from_secs(10),
        || async { (metric(&flotilla, INVALID).await > invalid_before).then_some(()) },
    )
    .await;
    std::fs::write(&flotilla.config, &complete).expect("the whole file");
    wait_version(&flotilla, &rendered_version(&flotilla.config)).await;
    let state = flotilla.json("/api/v1/state").await;
    assert_eq!(state["config"]["last_reload"]["result"], "applied");
}

#[tokio::test]
async fn sighup_reloads_when_watching_is_off() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let listen = free_addr();
    let dir = tempfile::tempdir().expect("dir");
    std::fs::create_dir(dir.path().join("config")).expect("mkdir");
    let config = dir.path().join("config/flotilla.yaml");
    std::fs::write(&config, web(listen, &a.address())).expect("write");
    let flotilla = Flotilla::start_with(dir, config.clone(), &["--no-watch"]).await;
    // Ready: a valid config is loaded and the xDS server is serving.
    flotilla.wait_ready().await;
    let before = live_version(&flotilla).await;
    flotilla.write_config(&web(listen, &b.address()));
    wait::holds_for(
        "--no-watch: the edit is not picked up",
        Duration::from_millis(500),
        || async { live_version(&flotilla).await == before },
    )
    .await;
    flotilla.signal("HUP");
    wait_version(&flotilla, &rendered_version(&config)).await;
    assert_eq!(
        flotilla.json("/api/v1/state").await["config"]["last_reload"]["trigger"],
        "SIGHUP"
    );
}

fn two_clusters(listen: std::net::SocketAddr, a: &str, b: &str, timeout: &str) -> String {
    format!(
        "version: 1
clusters:
  alpha: {{ endpoints: [{a}], connect_timeout: {timeout} }}
  beta: {{ endpoints: [{b}] }}
listeners:
  public:
    address: {listen}
    routes:
      - {{ match: {{ prefix: /alpha }}, to: alpha }}
      - {{ to: beta }}
"
    )
}

#[tokio::test]
async fn a_change_to_one_cluster_sends_only_that_cluster() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let c = Backend::start("c").await;
    let listen = free_addr();
    let flotilla = Flotilla::start(&two_clusters(listen, &a.address(), &b.address(), "1s")).await;
    let mut raw = DeltaClient::connect(flotilla.xds, "raw-1").await;

    // An endpoint change: one ClusterLoadAssignment, nothing else.
    flotilla.write_config(&two_clusters(listen, &c.address(), &b.address(), "1s"));
    let got = raw.next().await.expect("a response");
    assert_eq!(
        (
            got.type_url.as_str(),
            got.names.iter().map(String::as_str).collect::<Vec<_>>()
        ),
        (EDS, vec!["alpha"])
    );
    assert!(
        raw.next_within(Duration::from_millis(500)).await.is_none(),
        "nothing else is sent"
    );

    // A cluster setting: that Cluster (and its endpoints again, as Envoy re-warms it).
    flotilla.write_config(&two_clusters(listen, &c.address(), &b.address(), "2s"));
    let got = raw.next().await.expect("a response");
    assert_eq!(
        (
            got.type_url.as_str(),
            got.names.iter().map(String::as_str).collect::<Vec<_>>()
        ),
        (CDS, vec!["alpha"])
    );
    let got = raw.next().await.expect("a response");
    assert_eq!(
        (
            got.type_url.as_str(),
            got.names.iter().map(String::as_str).collect::<Vec<_>>()
        ),
        (EDS, vec!["alpha"])
    );
    assert!(
        raw.next_within(Duration::from_millis(500)).await.is_none(),
        "beta is never sent"
    );
}

async fn a_change_that_means_nothing_sends_nothing(xds: Xds) {
    let s = Setup::new(&["a", "b"], xds, |b, l| {
        two_clusters(l, &b["a"].address(), &b["b"].address(), "1s")
    })
    .await;
    let mut raw = DeltaClient::connect(s.flotilla.xds, "raw-1").await;
    let nodes_before = s.flotilla.json("/api/v1/nodes").await;
    let unchanged_before = metric(&s.flotilla, UNCHANGED).await;
    // Comments, key order, quoting, flow vs block style: the same config.
    let same = format!(
        "# reformatted, same meaning
listeners:
  public:
    routes:
      - match:
          prefix: /alpha
        to: \"alpha\"
      - to: beta   # the default route
    address: {}
clusters:
  beta:
    endpoints:
      - {}
  alpha:
    connect_timeout: 1000ms
    endpoints: [ '{}' ]
version: 1
",
        s.listen,
        s.addr("b"),
        s.addr("a")
    );
    s.flotilla.write_config(&same);
    wait::until("the reload", Duration::from_secs(10), || async {
        (metric(&s.flotilla, UNCHANGED).await > unchanged_before).then_some(())
    })
    .await;
    assert!(
        raw.next_within(Duration::from_millis(500)).await.is_none(),
        "nothing is sent"
    );
    let nodes = s.flotilla.json("/api/v1/nodes").await;
    let edge = |v: &serde_json::Value| {
        v.as_array()
            .expect("nodes")
            .iter()
            .find(|n| n["node_id"] == "edge-1")
            .cloned()
            .expect("edge-1")["types"]
            .clone()
    };
    assert_eq!(
        edge(&nodes),
        edge(&nodes_before),
        "the Envoy received nothing"
    );
}

both_protocols!(
    an_edit_reaches_envoy_and_its_traffic_within_a_second,
    an_invalid_edit_changes_nothing_and_is_reported,
    a_change_that_means_nothing_sends_nothing,
);
