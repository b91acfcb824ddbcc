//! Stream registrations (`flotilla register`) shared between replicas through a real etcd:
//! an instance registered through replica A is served by the Envoys of replica B, drains on
//! them before it gets its signal, and leaves them when its stream or replica A dies.

use std::time::{Duration, Instant};

use crate::replicas::replica;
use crate::support::backend::Backend;
use crate::support::envoy::{Envoy, Xds};
use crate::support::etcd::Etcd;
use crate::support::flotilla::Flotilla;
use crate::support::{free_addr, registration, wait};

/// Replicas A and B on one etcd serving cluster `pool` (no configured endpoint), and an
/// Envoy of replica B routing its listener to `pool`.
struct Pool {
    _etcd: Etcd,
    a: Flotilla,
    _b: Flotilla,
    envoy: Envoy,
    listen: std::net::SocketAddr,
}

impl Pool {
    async fn start() -> Pool {
        let etcd = Etcd::start().await;
        let listen = free_addr();
        let yaml = format!(
            "version: 1
clusters:
  pool: {{ endpoints: [], registrations: {{}} }}
listeners:
  public:
    address: {listen}
    routes: [ {{ to: pool }} ]
"
        );
        let a = replica(&yaml, &etcd).await;
        let b = replica(&yaml, &etcd).await;
        let envoy = Envoy::start(&b, "edge-b", "edge", Xds::Delta).await;
        envoy.wait_listener(listen).await;
        Pool {
            _etcd: etcd,
            a,
            _b: b,
            envoy,
            listen,
        }
    }

    /// `flotilla register` of `address` through replica A, running `command`.
    fn register(
        &self,
        address: &str,
        command: &[impl AsRef<std::ffi::OsStr>],
    ) -> tokio::process::Child {
        registration::command(self.a.xds, "pool", address)
            .args(["--drain-deadline", "10s", "--"])
            .args(command)
            .spawn()
            .expect("flotilla register")
    }

    /// Waits until B's Envoy has `address` (healthy) or has dropped it, within `within`.
    async fn b_has(&self, address: &str, present: bool, within: Duration) {
        wait::until(
            &format!(
                "B's Envoy to {} {address}",
                if present { "have" } else { "drop" }
            ),
            within,
            || async {
                let flags = self.envoy.health_flags("pool", address).await;
                (flags.is_some() == present && flags.is_none_or(|f| f.contains("healthy")))
                    .then_some(())
            },
        )
        .await;
    }
}

#[tokio::test]
async fn sigterm_drains_the_instance_on_another_replicas_envoy_before_it_gets_the_signal() {
    let p = Pool::start().await;
    let address = free_addr();
    let mut register = p.register(
        &address.to_string(),
        &registration::instance_exiting_7(address),
    );
    p.b_has(&address.to_string(), true, Duration::from_secs(10))
        .await;
    let reply = reqwest::get(format!("http://{}/", p.listen)).await.unwrap();
    assert_eq!(reply.status(), 200, "B's Envoy sends traffic to it");
    registration::sigterm_drains(&mut register, &p.envoy, "pool", address).await;
    p.b_has(&address.to_string(), false, Duration::from_secs(5))
        .await;
}

#[tokio::test]
async fn a_killed_register_leaves_another_replicas_envoy_within_the_keepalive_bound() {
    let p = Pool::start().await;
    let backend = Backend::start("i").await;
    let mut register = p.register(&backend.address(), &["sleep", "60"]);
    p.b_has(&backend.address(), true, Duration::from_secs(10))
        .await;
    let killed = Instant::now();
    register.start_kill().expect("kill -9");
    p.b_has(&backend.address(), false, Duration::from_secs(10))
        .await;
    // The stream breaks at once, A revokes the stream's lease, B's watch drops it.
    assert!(
        killed.elapsed() < Duration::from_secs(3),
        "{:?}",
        killed.elapsed()
    );
    let _ = register.wait().await;
}

#[tokio::test]
async fn a_killed_replica_leaves_its_stream_registrations_to_expire_everywhere() {
    let mut p = Pool::start().await;
    let backend = Backend::start("i").await;
    let mut register = p.register(&backend.address(), &["sleep", "60"]);
    p.b_has(&backend.address(), true, Duration::from_secs(10))
        .await;
    let killed = Instant::now();
    p.a.kill().await;
    p.b_has(&backend.address(), false, Duration::from_secs(15))
        .await;
    let took = killed.elapsed();
    let ttl = flotilla::store::STREAM_LEASE_TTL;
    assert!(
        took <= ttl + Duration::from_secs(2),
        "gone after {took:?}, over the lease TTL {ttl:?}"
    );
    let _ = register.start_kill();
    let _ = register.wait().await;
}
