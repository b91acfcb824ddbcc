//! Replicas reaching etcd over TLS with client certificates (`--store-cacert`,
//! `--store-cert`, `--store-key`), and what a replica whose TLS etcd refuses does.

use std::time::Duration;

use crate::operations::call;
use crate::replicas::Replicas;
use crate::support::envoy::Xds;
use crate::support::etcd::Etcd;
use crate::support::flotilla::Flotilla;
use crate::support::pki::Pki;
use crate::support::wait;

#[tokio::test]
async fn two_replicas_share_a_drain_through_etcd_over_tls() {
    let r = Replicas::start_on(Etcd::start_tls().await, Xds::Delta, false).await;
    let x = r.addr("x");
    r.drain_through_a_reaches_b_within_a_second(&x).await;
    assert!(r.a.log().contains("following etcd"), "{}", r.a.log());
}

/// A replica started with `extra` store flags against the TLS `etcd`.
async fn refused_replica(etcd: &Etcd, extra: &[String]) -> Flotilla {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("flotilla.yaml");
    std::fs::write(
        &config,
        crate::support::configs::web(crate::support::free_addr(), "127.0.0.1:9"),
    )
    .expect("config");
    let mut args = vec!["--store".to_string(), etcd.url()];
    args.extend(extra.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Flotilla::start_with(dir, config, &args).await
}

#[tokio::test]
async fn a_replica_that_etcd_refuses_says_why_keeps_serving_and_refuses_changes() {
    let etcd = Etcd::start_tls().await;
    let other = tempfile::tempdir().expect("temp dir");
    Pki::new().write_ca(other.path(), "other-ca");
    let file = |name: &str| etcd.tls_file(name).display().to_string();
    let cases = [
        (
            "no client certificate",
            // TLS 1.3 refuses a client after the client's side of the handshake is done: the
            // reason is etcd's alert or, when the connection closes first, only that.
            "transport error",
            vec!["--store-cacert".to_string(), file("ca.pem")],
        ),
        (
            "a CA that did not sign etcd's certificate",
            "invalid peer certificate",
            vec![
                "--store-cacert".to_string(),
                other.path().join("other-ca.pem").display().to_string(),
                "--store-cert".to_string(),
                file("client.pem"),
                "--store-key".to_string(),
                file("client.key"),
            ],
        ),
    ];
    for (case, why, extra) in cases {
        let f = refused_replica(&etcd, &extra).await;
        f.wait_ready().await;
        let said = wait::until(
            &format!("{case}: the log to say etcd cannot be reached"),
            Duration::from_secs(10),
            || async {
                let log = f.log();
                log.lines()
                    .find(|l| l.contains("cannot reach etcd"))
                    .map(str::to_string)
            },
        )
        .await;
        assert!(said.contains(why), "{case}: {said}");
        let (status, body) = call(
            &f,
            "POST",
            "/api/v1/clusters/web/endpoints/127.0.0.1:9/drain",
            None,
            None,
        )
        .await;
        assert_eq!(status, 503, "{case}: {body}");
        assert!(f.pid().is_some(), "{case}: flotilla exited");
        let metrics = f.text("/metrics").await;
        assert!(
            metrics.contains("flotilla_store_available 0"),
            "{case}: {metrics}"
        );
    }
}

#[tokio::test]
async fn unreadable_tls_files_stop_serve_at_start_naming_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing.pem");
    let out = tokio::process::Command::new(crate::support::flotilla_bin())
        .args([
            "serve",
            "--config",
            "x.yaml",
            "--store",
            "etcd://127.0.0.1:2379",
        ])
        .arg("--store-cacert")
        .arg(&missing)
        .output()
        .await
        .expect("run flotilla");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("--store-cacert {}", missing.display())),
        "{stderr}"
    );
}
