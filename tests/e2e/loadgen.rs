//! Smoke run of the xDS load generator (issue 6): 50 simulated Envoys on a real flotilla, one
//! change of each kind, SotW and delta, and SotW over mTLS. Asserts that every stream ACKed the initial config and
//! every change; the timings it prints are not checked (benchmarks are not tests).

use std::process::Command;
use std::time::{Duration, Instant};

/// flotilla-loadgen and the flotillas it starts write nothing where they were started (the
/// replicas once left `flotilla-state.history.json` in the working directory).
fn assert_cwd_untouched(cwd: &tempfile::TempDir) {
    let left: Vec<_> = std::fs::read_dir(cwd.path())
        .expect("read cwd")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "left in the working directory: {left:?}");
}

fn smoke(mode: &str, extra: &[&str]) {
    smoke_of(mode, 50, 40, extra);
}

/// Runs flotilla-loadgen with `args` (then `--flotilla` and `--json`) in an empty directory it
/// must leave empty; its JSON report and stdout, once it succeeded.
fn run_report(args: &[&str]) -> (serde_json::Value, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("report.json");
    let cwd = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_flotilla-loadgen"))
        .args(args)
        .arg("--flotilla")
        .arg(env!("CARGO_BIN_EXE_flotilla"))
        .arg("--json")
        .arg(&json)
        .env("LOADGEN_LOG", "warn")
        .current_dir(cwd.path())
        .output()
        .expect("run flotilla-loadgen");
    assert_cwd_untouched(&cwd);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "flotilla-loadgen {args:?} failed\n{stdout}\n{stderr}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("report")).expect("JSON");
    (report, stdout)
}

fn smoke_of(mode: &str, streams: u64, clusters: usize, extra: &[&str]) {
    let (streams_arg, clusters_arg) = (streams.to_string(), clusters.to_string());
    let mut args = vec!["xds", "--mode", mode, "--streams", &streams_arg];
    args.extend(["--streams-per-connection", "10", "--fleets", "3"]);
    args.extend(["--clusters", &clusters_arg, "--endpoints", "3"]);
    args.extend(["--changes", "endpoint=1,cluster=1,rewrite=1"]);
    args.extend(["--settle-ms", "50", "--timeout-secs", "30"]);
    args.extend(extra);
    let (report, stdout) = run_report(&args);
    assert_eq!(report["failed_streams"], 0, "{stdout}");
    assert_eq!(report["tls"], extra.contains(&"--tls"), "{stdout}");
    let phases = report["phases"].as_array().expect("phases");
    assert_eq!(
        phases.len(),
        4,
        "initial config and three changes: {stdout}"
    );
    for phase in phases {
        assert_eq!(phase["completed"], streams, "{}: {stdout}", phase["name"]);
        assert_eq!(
            phase["traffic"]["acks"],
            phase["traffic"]["responses"]
                .as_array()
                .expect("responses per type")
                .iter()
                .map(|v| v.as_u64().expect("count"))
                .sum::<u64>(),
            "every response is ACKed: {stdout}"
        );
    }
    // A one-endpoint change sends one ClusterLoadAssignment per stream and nothing else.
    let endpoint = &phases[1]["traffic"];
    assert_eq!(
        endpoint["resources"],
        serde_json::json!([0, streams, 0, 0, 0]),
        "{stdout}"
    );
}

#[test]
fn loadgen_smoke_sotw() {
    smoke("sotw", &[]);
}

#[test]
fn loadgen_smoke_delta() {
    smoke("delta", &[]);
}

/// Issue 26: scripts/bench-xds broke at its "one new cluster" phase once a host was limited to
/// 1,000 routes. More clusters than one host's routes, every change kind: the generated config
/// spreads them over hosts, and a new limit that breaks the benchmark fails here.
#[test]
fn loadgen_smoke_beyond_one_hosts_routes() {
    smoke_of("delta", 10, 1_001, &[]);
}

/// The same over mTLS (`--tls`, as `BENCH_TLS=1 scripts/bench-xds` runs it).
#[test]
fn loadgen_smoke_sotw_over_mtls() {
    smoke("sotw", &["--tls"]);
}

/// `flotilla-loadgen replicas` (scripts/bench-replicas): 40 streams over two replicas on a
/// real etcd, 3 drains through replica A. Every stream on both replicas reaches every drain,
/// the benchmark's own etcd watch sees every write, and replica A's
/// `flotilla_store_write_seconds` counted at least one transaction per drain.
#[tokio::test]
async fn loadgen_smoke_replicas() {
    let etcd = crate::support::etcd::Etcd::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("report.json");
    let cwd = tempfile::tempdir().expect("temp dir");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_flotilla-loadgen"))
        .args(["replicas", "--store", &etcd.url(), "--streams", "40"])
        .args(["--streams-per-connection", "10", "--fleets", "3"])
        .args(["--clusters", "20", "--endpoints", "3", "--drains", "3"])
        .args(["--settle-ms", "50", "--timeout-secs", "30"])
        .arg("--flotilla")
        .arg(env!("CARGO_BIN_EXE_flotilla"))
        .arg("--json")
        .arg(&json)
        .env("LOADGEN_LOG", "warn")
        .current_dir(cwd.path())
        .output()
        .await
        .expect("run flotilla-loadgen");
    assert_cwd_untouched(&cwd);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "flotilla-loadgen failed\n{stdout}\n{stderr}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("report")).expect("JSON");
    assert_eq!(report["failed_streams"], 0, "{stdout}");
    assert_eq!(report["api"]["n"], 3, "{stdout}");
    assert_eq!(report["watch"]["n"], 3, "{stdout}");
    let replicas = report["replicas"].as_array().expect("replicas");
    assert_eq!(replicas.len(), 2, "{stdout}");
    for replica in replicas {
        assert_eq!(replica["streams"], 20, "{stdout}");
        assert_eq!(
            replica["drain"]["n"], 60,
            "every stream, every drain: {stdout}"
        );
    }
    assert!(
        report["etcd_write"]["count"].as_f64().expect("count") >= 3.0,
        "{stdout}"
    );
}

/// The mesh benchmark at small scale: every sidecar holds every instance it calls, and each new
/// instance reaches every caller (the run fails otherwise). 80 sidecars: more than flotilla
/// admits registration streams from one address (64), so this holds only because each
/// simulated sidecar connects from its own loopback address, as from its own host.
#[test]
fn loadgen_smoke_mesh() {
    let (report, stdout) = run_report(&[
        "mesh",
        "--services",
        "4",
        "--instances",
        "20",
        "--calls",
        "2",
        "--rounds",
        "3",
        "--settle-ms",
        "50",
        "--timeout-secs",
        "60",
    ]);
    assert_eq!(report["sidecars"], 80, "{stdout}");
    assert_eq!(report["failed_streams"], 0, "{stdout}");
    // Each new instance of a service called by 2 services x 20 sidecars reached all 40.
    assert_eq!(report["to_every_caller"]["n"], 3, "{stdout}");
    assert_eq!(report["to_each_caller"]["n"], 120, "{stdout}");
}

/// A run under `prlimit --nofile=SOFT:HARD`: 300 streams, one connection each.
fn run_with_open_files(limit: &str) -> (std::process::Output, Duration) {
    let started = Instant::now();
    let output = Command::new("prlimit")
        .arg(format!("--nofile={limit}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_flotilla-loadgen"))
        .args(["xds", "--mode", "delta", "--streams", "300"])
        .args(["--streams-per-connection", "1", "--fleets", "2"])
        .args([
            "--clusters",
            "5",
            "--endpoints",
            "1",
            "--changes",
            "endpoint=1",
        ])
        .args(["--settle-ms", "50", "--timeout-secs", "60"])
        .arg("--flotilla")
        .arg(env!("CARGO_BIN_EXE_flotilla"))
        .env("LOADGEN_LOG", "warn")
        .output()
        .expect("run flotilla-loadgen under prlimit");
    (output, started.elapsed())
}

/// Issue 26, bad input: a run needing more file descriptors than the hard limit allows fails
/// at once, naming the limit, instead of waiting out its deadline with streams that never
/// connect.
#[test]
fn loadgen_names_the_open_files_limit_it_does_not_fit() {
    let (output, took) = run_with_open_files("200:200");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("the open-files hard limit is 200 (ulimit -Hn)")
            && stderr.contains("need about 556 open files"),
        "{stderr}"
    );
    // Well before the run's 60 s deadline: it did not wait for streams that never connect.
    assert!(took < Duration::from_secs(45), "took {took:?}: {stderr}");
}

/// …and one that fits under the hard limit runs, its soft limit raised to what it needs.
#[test]
fn loadgen_raises_a_low_soft_open_files_limit() {
    let (output, _) = run_with_open_files("64:4096");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
}
