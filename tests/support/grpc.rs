//! Proxyless gRPC, with real gRPC libraries: Python grpcio backends (tests/grpc/servers.py)
//! and a grpcio client that takes its configuration from flotilla over xDS
//! (tests/grpc/client.py, dialing `xds:///<target>`). Both are child processes killed on drop;
//! every answer is awaited with a deadline.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::flotilla::Flotilla;
use super::{flotilla_bin, print_log_tail, repo_root};

/// How long one answer from a Python process may take (a batch of calls included).
const ANSWER: Duration = Duration::from_secs(60);

/// Python with grpcio from `$GRPC_PYTHON`, else the project's venv (`scripts/install-grpcio`).
/// Missing grpcio is a test failure, never a skip.
pub fn grpc_python() -> PathBuf {
    if let Some(python) = std::env::var_os("GRPC_PYTHON") {
        return PathBuf::from(python);
    }
    let python = repo_root().join("tools/grpc-venv/bin/python");
    assert!(
        python.exists(),
        "grpcio not found at {} and GRPC_PYTHON is not set: run scripts/install-grpcio (scripts/test does)",
        python.display()
    );
    python
}

/// A Python process spoken to one line at a time; its stderr goes to a log printed on failure.
struct Script {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    log: PathBuf,
    what: &'static str,
    _dir: tempfile::TempDir,
}

impl Script {
    fn spawn(what: &'static str, script: &str, args: &[&str], env: &[(&str, PathBuf)]) -> Script {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join(format!("{what}.log"));
        let mut cmd = Command::new(grpc_python());
        cmd.arg(repo_root().join("tests/grpc").join(script))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn python");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Script {
            child,
            stdin,
            stdout,
            log,
            what,
            _dir: dir,
        }
    }

    async fn read_line(&mut self) -> String {
        match tokio::time::timeout(ANSWER, self.stdout.next_line()).await {
            Ok(Ok(Some(line))) => line,
            Ok(other) => panic!("{} ended without answering: {other:?}", self.what),
            Err(_) => panic!("{} did not answer within {ANSWER:?}", self.what),
        }
    }

    async fn ask(&mut self, line: &str) -> String {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write to python");
        self.stdin.flush().await.expect("flush");
        self.read_line().await
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.child.start_kill();
            print_log_tail(self.what, &self.log, 60);
        }
    }
}

/// gRPC servers named `a`, `b`, … on loopback: each answers a call with its name and serves
/// grpc.health.v1, which the test can flip.
pub struct GrpcBackends {
    script: Script,
    ports: BTreeMap<String, u16>,
}

impl GrpcBackends {
    pub async fn start(names: &[&str]) -> GrpcBackends {
        let mut script = Script::spawn("grpc-backends", "servers.py", names, &[]);
        let ports = serde_json::from_str(&script.read_line().await).expect("ports as JSON");
        GrpcBackends { script, ports }
    }

    pub fn address(&self, name: &str) -> String {
        format!("127.0.0.1:{}", self.ports[name])
    }

    /// What `name`'s health service reports from now on.
    pub async fn set_serving(&mut self, name: &str, serving: bool) {
        let status = if serving { "SERVING" } else { "NOT_SERVING" };
        let answer = self.script.ask(&format!("health {name} {status}")).await;
        assert_eq!(answer, "ok", "servers.py: {answer}");
    }
}

/// What a batch of calls saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calls {
    pub counts: BTreeMap<String, u64>,
    pub failures: u64,
    pub errors: Vec<String>,
}

impl Calls {
    pub fn to(&self, name: &str) -> u64 {
        self.counts.get(name).copied().unwrap_or(0)
    }
}

/// A grpcio client with one long-lived channel to `xds:///<target>`, bootstrapped by
/// `flotilla bootstrap --grpc` (the command users run).
pub struct GrpcClient {
    script: Script,
    _bootstrap: tempfile::TempDir,
}

impl GrpcClient {
    pub async fn start(flotilla: &Flotilla, node_id: &str, target: &str) -> GrpcClient {
        GrpcClient::start_with(flotilla, node_id, target, &[]).await
    }

    /// Like [`GrpcClient::start`], with extra `flotilla bootstrap --grpc` flags (mTLS).
    pub async fn start_with(
        flotilla: &Flotilla,
        node_id: &str,
        target: &str,
        bootstrap_flags: &[String],
    ) -> GrpcClient {
        let out = std::process::Command::new(flotilla_bin())
            .args(["bootstrap", "--grpc", "--node-id", node_id, "--xds"])
            .arg(flotilla.xds.to_string())
            .args(bootstrap_flags)
            .output()
            .expect("flotilla bootstrap --grpc");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let bootstrap = dir.path().join("grpc-bootstrap.json");
        std::fs::write(&bootstrap, &out.stdout).expect("write bootstrap");
        let script = Script::spawn(
            "grpc-client",
            "client.py",
            &[target],
            &[("GRPC_XDS_BOOTSTRAP", bootstrap)],
        );
        GrpcClient {
            script,
            _bootstrap: dir,
        }
    }

    /// A grpcio client with a plain channel to `addr` (an Envoy listener): no xDS.
    pub fn direct(addr: std::net::SocketAddr) -> GrpcClient {
        let script = Script::spawn("grpc-client", "client.py", &[&format!("ipv4:{addr}")], &[]);
        GrpcClient {
            script,
            _bootstrap: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// `n` calls one after the other, each failing fast (no waiting for a ready backend).
    pub async fn calls(&mut self, n: u32, metadata: &[(&str, &str)]) -> Calls {
        self.batch(json!({ "calls": n, "metadata": metadata, "timeout": 5 }))
            .await
    }

    /// Waits until the client has its configuration from flotilla and one call went through.
    pub async fn wait_ready(&mut self) -> Calls {
        let calls = self
            .batch(json!({ "calls": 1, "wait_for_ready": true, "timeout": 30 }))
            .await;
        assert_eq!(calls.failures, 0, "first call through xDS: {calls:?}");
        calls
    }

    async fn batch(&mut self, command: Value) -> Calls {
        let answer = self.script.ask(&command.to_string()).await;
        let v: Value = serde_json::from_str(&answer).expect("client answers JSON");
        Calls {
            counts: serde_json::from_value(v["counts"].clone()).expect("counts"),
            failures: v["failures"].as_u64().expect("failures"),
            errors: serde_json::from_value(v["errors"].clone()).expect("errors"),
        }
    }
}
