//! The registration API from another language: Python with stubs generated from `proto/` by
//! grpcio-tools registers an endpoint that real Envoy then routes to, is refused an unknown
//! cluster, and runs the drain handshake.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use crate::registry::Setup;
use crate::support::backend::Backend;
use crate::support::envoy::Xds;
use crate::support::grpc::grpc_python;
use crate::support::repo_root;

#[tokio::test]
async fn python_registers_with_stubs_generated_from_proto() {
    let s = Setup::new(Xds::Delta).await;
    let backend = Backend::start("py").await;
    let stubs = tempfile::tempdir().expect("stub dir");
    let mut child = Command::new(grpc_python())
        .arg(repo_root().join("tests/grpc/register.py"))
        .arg(repo_root())
        .arg(s.flotilla.xds.to_string())
        .arg(stubs.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut ask = async |line: String| -> String {
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write");
        tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("python answers")
            .expect("read")
            .expect("a line")
    };

    let answer = ask("register nope 127.0.0.1:9".into()).await;
    assert!(
        answer.starts_with("rejected NOT_FOUND unknown cluster `nope`"),
        "{answer}"
    );
    let answer = ask(format!("register pool {}", backend.address())).await;
    assert_eq!(answer, format!("registered pool {}", backend.address()));
    s.wait_envoy_has(&backend.address(), true).await;
    let reply = reqwest::get(format!("http://{}/", s.listen))
        .await
        .expect("request");
    assert_eq!(reply.headers()["x-backend"], "py");
    let regs = s.registrations().await;
    assert_eq!(regs[0]["metadata"]["language"], "python");

    assert_eq!(ask("leave".into()).await, "draining 1");
    let answer = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("may_exit")
        .expect("read")
        .expect("line");
    assert_eq!(answer, "may_exit False");
    stdin.write_all(b"close\n").await.expect("close");
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    s.wait_envoy_has(&backend.address(), false).await;
}
