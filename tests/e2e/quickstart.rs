//! The README's quickstart: one command, three demo backends, flotilla and an Envoy.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::support::{client, envoy, flotilla_bin, wait};

#[tokio::test]
async fn quickstart_serves_three_backends_and_stops_everything_on_ctrl_c() {
    let mut child = Command::new(flotilla_bin())
        .arg("quickstart")
        .env("ENVOY_BIN", envoy::envoy_bin())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start quickstart");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let banner = tokio::time::timeout(Duration::from_secs(30), async {
        let mut text = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            text.push_str(&line);
            text.push('\n');
            if line.contains("Ctrl-C") {
                break;
            }
        }
        text
    })
    .await
    .expect("quickstart banner");
    assert!(banner.contains("curl http://127.0.0.1:10000/"), "{banner}");
    assert!(
        banner.contains("dashboard:     http://127.0.0.1:18080/ "),
        "{banner}"
    );

    // The demo backends name themselves in the body.
    let http = client::http();
    let mut bodies = BTreeSet::new();
    for _ in 0..12 {
        let body = http
            .get("http://127.0.0.1:10000/")
            .send()
            .await
            .expect("request")
            .text()
            .await
            .expect("body");
        bodies.insert(body.trim().to_string());
    }
    assert_eq!(
        bodies,
        BTreeSet::from(
            [
                "hello from backend-1",
                "hello from backend-2",
                "hello from backend-3"
            ]
            .map(String::from)
        )
    );

    let pid = child.id().expect("pid");
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .expect("kill")
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("quickstart exits on Ctrl-C")
        .expect("wait");
    assert!(status.success(), "{status}");
    // Envoy went with it.
    wait::until(
        "the Envoy listener to close",
        Duration::from_secs(10),
        || async {
            tokio::net::TcpStream::connect("127.0.0.1:10000")
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
}
