//! Issue 24: a git repository as the config directory, as a CD pipeline sees it. A commit is
//! served with its hash and every Envoy's ACK (`flotilla status --wait` exits 0); a commit
//! Envoy rejects is traced to its YAML line (`--wait` exits 1); the fix is Synced again;
//! `flotilla diff` says what a change does; history names every commit, across a restart.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::support::backend::Backend;
use crate::support::envoy::{Envoy, Xds};
use crate::support::flotilla::Flotilla;
use crate::support::git::{commit_file, git};
use crate::support::{flotilla_bin, free_addr, wait};

fn config(listen: std::net::SocketAddr, backend: &str, bad: bool) -> String {
    let mut yaml = format!(
        "version: 1
clusters:
  web: {{ endpoints: [{backend}] }}
listeners:
  public:
    address: {listen}
    routes: [ {{ to: web }} ]
"
    );
    let mut fleet = "public".to_string();
    if bad {
        // flotilla cannot know that 192.0.2.10 is no address of the Envoy's host; Envoy can.
        yaml.push_str(&format!(
            "  elsewhere:\n    address: 192.0.2.10:{}\n    routes: [ {{ to: web }} ]\n",
            listen.port()
        ));
        fleet.push_str(", elsewhere");
    }
    yaml.push_str(&format!("fleets:\n  edge: {{ listeners: [{fleet}] }}\n"));
    yaml
}

/// Writes `yaml` as web.yaml and commits it; returns the commit hash.
fn commit(repo: &Path, yaml: &str, message: &str) -> String {
    commit_file(repo, "web.yaml", yaml, message)
}

fn run(args: &[&str]) -> Output {
    Command::new(flotilla_bin())
        .args(args)
        .output()
        .expect("run flotilla")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn wait_revision(f: &Flotilla, hash: &str) {
    wait::until(
        &format!("flotilla to serve revision {hash}"),
        Duration::from_secs(10),
        || async {
            let s = f.json("/api/v1/status").await;
            (s["revision"]["commit"] == hash).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_git_repository_goes_through_status_diff_and_history() {
    let backend = Backend::start("a").await;
    let listen = free_addr();
    let dir = tempfile::tempdir().expect("temp dir");
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).expect("repo dir");
    git(&repo, &["init", "-q"]);
    let good = config(listen, &backend.address(), false);
    let first = commit(&repo, &good, "first config");
    let mut f = Flotilla::start_with(dir, repo.clone(), &[]).await;
    let envoy = Envoy::start(&f, "edge-1", "edge", Xds::Sotw).await;
    envoy.wait_listener(listen).await;
    let admin = format!("http://{}", f.admin);

    // The commit is served, and status --wait says every Envoy took it.
    wait_revision(&f, &first).await;
    let out = run(&[
        "status",
        "--admin",
        &admin,
        "--wait",
        "--timeout",
        "20s",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(status["fleets"][0]["fleet"], "edge", "{status}");
    assert_eq!(status["fleets"][0]["revision"], first.as_str());
    assert_eq!(status["fleets"][0]["sync"], "Synced");
    assert_eq!(status["fleets"][0]["health"], "Healthy");
    let table = text(&run(&["status", "--admin", &admin]));
    assert!(
        table.contains(&first[..12]) && table.contains("Synced"),
        "{table}"
    );
    let nodes = f.json("/api/v1/nodes").await;
    assert_eq!(nodes[0]["acked_revision"], first.as_str(), "{nodes}");
    let metrics = f.text("/metrics").await;
    assert!(
        metrics.contains(&format!("flotilla_config_info{{revision=\"{first}\"}} 1")),
        "{metrics}"
    );

    // A commit Envoy rejects: OutOfSync, traced to the line, and --wait exits 1.
    let bad_yaml = config(listen, &backend.address(), true);
    let line = bad_yaml
        .lines()
        .position(|l| l == "  elsewhere:")
        .expect("the bad listener")
        + 1;
    let bad = commit(&repo, &bad_yaml, "listen elsewhere");
    wait_revision(&f, &bad).await;
    let out = run(&["status", "--admin", &admin, "--wait", "--timeout", "20s"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let place = format!("web.yaml:{line}:3 listeners.elsewhere");
    assert!(shown.contains("OutOfSync"), "{shown}");
    assert!(
        shown.contains("rejected by edge-1: ")
            && shown.contains(&place)
            && shown.contains("192.0.2.10"),
        "{shown}"
    );
    let nodes = f.json("/api/v1/nodes").await;
    let summary = nodes[0]["rejections"][0]["summary"]
        .as_str()
        .unwrap_or_default();
    assert!(summary.contains(&place), "{nodes}");
    wait::until(
        "the rejection as an event",
        Duration::from_secs(5),
        || async {
            let events = f.json("/api/v1/events").await.to_string();
            events.contains(&place).then_some(())
        },
    )
    .await;

    // diff: the fix against what is served, two paths, and an invalid config.
    let fix_dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(fix_dir.path().join("web.yaml"), &good).expect("write");
    let fix_path = fix_dir.path().to_str().expect("utf-8");
    let out = run(&["diff", fix_path, "--against", &admin]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("fleet edge: 0 added, 2 removed, 0 changed"),
        "{shown}"
    );
    assert!(
        shown.contains(&format!(
            "- listeners/elsewhere  ({}",
            repo.join("web.yaml").display()
        )),
        "{shown}"
    );
    let out = run(&[
        "diff",
        repo.to_str().expect("utf-8"),
        "--against",
        &admin,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = run(&[
        "diff",
        repo.to_str().expect("utf-8"),
        fix_path,
        "--fleet",
        "edge",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // A field-level change: another backend address, as JSON.
    let moved_dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        moved_dir.path().join("web.yaml"),
        config(listen, "127.0.0.1:9", false),
    )
    .expect("write");
    let moved = moved_dir.path().to_str().expect("utf-8");
    let out = run(&["diff", fix_path, moved, "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let change = &d["fleets"][0]["changes"][0];
    assert_eq!(
        (&change["kind"], &change["section"], &change["name"]),
        (&"changed".into(), &"endpoints".into(), &"web".into()),
        "{d:#}"
    );
    let field = &change["fields"][0];
    assert_eq!(
        field["path"], "endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value",
        "{d:#}"
    );
    assert_eq!(field["new"], 9, "{d:#}");
    assert_eq!(change["source"]["field"], "clusters.web", "{d:#}");
    let out = run(&["diff", fix_path, fix_path]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let broken = fix_dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        "version: 1\nclusters:\n  web: { endpoints: [nope] }\n",
    )
    .expect("write");
    let out = run(&["diff", fix_path, broken.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("broken.yaml:3:"), "{}", text(&out));

    // Waiting for a revision flotilla does not serve times out, naming both.
    let out = run(&[
        "status",
        "--admin",
        &admin,
        "--wait",
        "--timeout",
        "1s",
        "--revision",
        "0000000",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("flotilla serves revision {bad}, not 0000000")),
        "{}",
        text(&out)
    );

    // The fix: the pipeline waits for its commit, then for every Envoy: Synced again.
    let fixed = commit(&repo, &good, "fix: listen on this host only");
    let out = run(&[
        "status",
        "--admin",
        &admin,
        "--wait",
        "--timeout",
        "20s",
        "--revision",
        &fixed[..12],
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    wait_revision(&f, &fixed).await;

    // History: every commit, the rejection, its author; kept across a restart.
    let history = |v: serde_json::Value| v["entries"].as_array().cloned().expect("entries");
    wait::until(
        "history to record the fix as synced",
        Duration::from_secs(5),
        || async {
            let h = history(f.json("/api/v1/history").await);
            (h[0]["outcome"]["edge"]["sync"] == "Synced").then_some(())
        },
    )
    .await;
    // A file written just before its commit may be served for a moment as the previous
    // commit, dirty: history shows that too. The clean entries are the three commits.
    let h = history(f.json("/api/v1/history").await);
    let clean: Vec<&serde_json::Value> = h
        .iter()
        .filter(|e| e["revision"]["dirty"] == false)
        .collect();
    let revisions: Vec<&str> = clean
        .iter()
        .map(|e| e["revision"]["commit"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        revisions,
        [fixed.as_str(), bad.as_str(), first.as_str()],
        "{h:#?}"
    );
    assert_eq!(clean[0]["who"], "Ada <ada@example.com>");
    assert_eq!(clean[2]["trigger"], "startup");
    assert_eq!(
        clean[1]["outcome"]["edge"]["rejected_by"][0], "edge-1",
        "{h:#?}"
    );
    assert!(
        clean[1]["summary"] == "listeners +elsewhere; fleets ~edge"
            || clean[1]["summary"] == "no change to what Envoys run",
        "the bad commit's change, or none when its dirty files were applied first: {h:#?}"
    );
    f.restart().await;
    f.wait_ready().await;
    let out = run(&["history", "--admin", &admin, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let after: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let after = history(after);
    assert_eq!(after[0]["trigger"], "startup", "{after:#?}");
    assert_eq!(after[0]["revision"]["commit"], fixed.as_str());
    let ids = |v: &[serde_json::Value]| v.iter().map(|e| e["id"].clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(&after[1..]),
        ids(&h),
        "history before the restart is kept"
    );
    assert_eq!(after[1]["outcome"], h[0]["outcome"]);
    let table = text(&run(&["history", "--admin", &admin]));
    assert!(
        table.contains("rejected by edge-1") && table.contains(&bad[..12]),
        "{table}"
    );
}

#[tokio::test]
async fn status_against_a_wrong_url_or_another_server_is_an_error() {
    let nobody = format!("http://{}", free_addr());
    let out = run(&["status", "--admin", &nobody]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("cannot reach the flotilla admin API"),
        "{}",
        text(&out)
    );
    // A web server that is not flotilla (a demo backend answers every path).
    let other = Backend::start("a").await;
    let url = format!("http://{}", other.address());
    let out = run(&["status", "--admin", &url, "--wait", "--timeout", "2s"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("flotilla admin API"), "{}", text(&out));
    let out = run(&["history", "--admin", &url]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[tokio::test]
async fn a_corrupt_repository_is_a_warning_and_the_config_still_applies() {
    let backend = Backend::start("a").await;
    let listen = free_addr();
    let dir = tempfile::tempdir().expect("temp dir");
    let conf = dir.path().join("conf");
    std::fs::create_dir(&conf).expect("dir");
    std::fs::create_dir(conf.join(".git")).expect("dir");
    std::fs::write(conf.join(".git/HEAD"), "not a ref\n").expect("write");
    std::fs::write(
        conf.join("web.yaml"),
        config(listen, &backend.address(), false),
    )
    .expect("write");
    let f = Flotilla::start_with(dir, conf, &[]).await;
    f.wait_ready().await;
    let state = f.json("/api/v1/state").await;
    assert!(state["config"]["revision"].is_null(), "{state}");
    assert!(
        f.log().contains("cannot read the git revision"),
        "the corrupt repository is a warning"
    );
}

/// Two replicas on one etcd read the same repository, each with an Envoy of its own: both
/// report the same revision and the same sync state, through a rejected commit and its fix.
#[tokio::test]
async fn replicas_report_the_same_revision_and_sync_state() {
    let etcd = crate::support::etcd::Etcd::start().await;
    let backend = Backend::start("a").await;
    let listen = free_addr();
    let repo_dir = tempfile::tempdir().expect("temp dir");
    let repo = repo_dir.path().to_path_buf();
    git(&repo, &["init", "-q"]);
    let good = config(listen, &backend.address(), false);
    let first = commit(&repo, &good, "first config");
    let args = etcd.store_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut replicas = Vec::new();
    for node in ["edge-a", "edge-b"] {
        let f = Flotilla::start_with(tempfile::tempdir().expect("dir"), repo.clone(), &args).await;
        f.wait_ready().await;
        // Envoy binds listeners with SO_REUSEPORT: both Envoys hold the same listener.
        let envoy = Envoy::start(&f, node, "edge", Xds::Delta).await;
        replicas.push((f, envoy));
    }
    for (f, _) in &replicas {
        wait_sync(f, &first, "Synced").await;
    }
    let bad = commit(
        &repo,
        &config(listen, &backend.address(), true),
        "listen elsewhere",
    );
    for (f, _) in &replicas {
        wait_sync(f, &bad, "OutOfSync").await;
        let out = run(&["status", "--admin", &format!("http://{}", f.admin)]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains("listeners.elsewhere"), "{}", text(&out));
    }
    let fixed = commit(&repo, &good, "fix");
    for (f, _) in &replicas {
        wait_sync(f, &fixed, "Synced").await;
    }
}

/// Waits until `f` serves `commit` and its (only) fleet is `sync`.
async fn wait_sync(f: &Flotilla, commit: &str, sync: &str) {
    wait::until(
        &format!("{} at {commit} to be {sync}", f.admin),
        Duration::from_secs(15),
        || async {
            let s = f.json("/api/v1/status").await;
            (s["revision"]["commit"] == commit && s["fleets"][0]["sync"] == sync).then_some(())
        },
    )
    .await;
}

/// Outside git, `--revision-file` names the config; it is read again on every reload.
#[tokio::test]
async fn a_revision_file_names_the_config_outside_git() {
    let dir = tempfile::tempdir().expect("temp dir");
    let conf = dir.path().join("conf");
    std::fs::create_dir(&conf).expect("dir");
    let file = dir.path().join("REVISION");
    std::fs::write(&file, "release-7\n").expect("write");
    let listen = free_addr();
    std::fs::write(conf.join("web.yaml"), config(listen, "127.0.0.1:9", false)).expect("write");
    let file_arg = file.to_str().expect("utf-8").to_string();
    let f = Flotilla::start_with(dir, conf, &["--revision-file", &file_arg]).await;
    f.wait_ready().await;
    let revision = |v: serde_json::Value| v["config"]["revision"].clone();
    let r = revision(f.json("/api/v1/state").await);
    assert_eq!(
        (r["commit"].as_str(), r["source"].as_str()),
        (Some("release-7"), Some("file")),
        "{r}"
    );
    std::fs::write(&file, "release-8\n").expect("write");
    f.signal("HUP");
    wait::until(
        "the new revision after SIGHUP",
        Duration::from_secs(10),
        || async {
            (revision(f.json("/api/v1/state").await)["commit"] == "release-8").then_some(())
        },
    )
    .await;
    let h = f.json("/api/v1/history").await;
    assert_eq!(h["entries"][0]["trigger"], "SIGHUP", "{h}");
    assert_eq!(
        h["entries"][0]["summary"], "no change to what Envoys run",
        "{h}"
    );
    let metrics = f.text("/metrics").await;
    assert!(
        metrics.contains("flotilla_config_info{revision=\"release-8\"} 1"),
        "{metrics}"
    );
}
