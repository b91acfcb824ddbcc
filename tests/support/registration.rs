//! `flotilla register` as the registration tests run it: the command, an instance that
//! exits 7 on SIGTERM, the SIGTERM drain handshake, and what flotilla lists as registered.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::process::{Child, Command};

use super::envoy::Envoy;
use super::flotilla::Flotilla;
use super::wait;

/// `flotilla register --registry XDS --cluster CLUSTER --address ADDRESS`, killed on drop;
/// the caller adds options, `--` and the instance.
pub fn command(xds: SocketAddr, cluster: &str, address: &str) -> Command {
    let mut c = Command::new(super::flotilla_bin());
    c.args(["register", "--registry", &xds.to_string()])
        .args(["--cluster", cluster, "--address", address])
        .kill_on_drop(true);
    c
}

/// An instance serving HTTP on `address` (Python's http.server) that exits with status 7 when
/// it gets SIGTERM: the status `flotilla register` must pass on.
pub fn instance_exiting_7(address: SocketAddr) -> [String; 3] {
    let script = format!(
        "python3 -m http.server {} --bind 127.0.0.1 >/dev/null 2>&1 & pid=$!; \
         trap 'kill $pid; wait $pid; exit 7' TERM; wait $pid",
        address.port()
    );
    ["sh".into(), "-c".into(), script]
}

/// Sends SIGTERM to `register` (running [`instance_exiting_7`] on `address`, registered into
/// `cluster`) and checks the handshake: `envoy` sees the instance draining while it still
/// accepts connections, then `register` exits with the instance's status.
pub async fn sigterm_drains(
    register: &mut Child,
    envoy: &Envoy,
    cluster: &str,
    address: SocketAddr,
) {
    let pid = register.id().expect("register runs");
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    wait::until(
        "Envoy to see the instance draining",
        Duration::from_secs(5),
        || async {
            envoy
                .health_flags(cluster, &address.to_string())
                .await
                .filter(|f| f.contains("draining"))
        },
    )
    .await;
    assert!(
        tokio::net::TcpStream::connect(address).await.is_ok(),
        "the instance still runs while it drains"
    );
    let status = tokio::time::timeout(Duration::from_secs(20), register.wait())
        .await
        .expect("flotilla register exits")
        .expect("wait");
    assert_eq!(status.code(), Some(7), "the child's exit status");
}

/// The registrations flotilla lists (`GET /api/v1/state`).
pub async fn listed(flotilla: &Flotilla) -> Vec<Value> {
    flotilla.json("/api/v1/state").await["registrations"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}
