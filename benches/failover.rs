//! Failover as clients see it: a backend dies under steady load; how long until Envoy has it
//! as UNHEALTHY (flotilla's checker → EDS), and how many client requests failed meanwhile.
//!
//! Real flotilla, real Envoy, three in-process backends, health checks every 1 s with an
//! unhealthy threshold of 2 (so the check alone needs 1-3 s), outlier detection and retries as
//! flotilla configures them by default. Repeated; one row per round.
//!
//! Run: `scripts/bench-health` (or `cargo bench --bench failover`).
#![allow(clippy::print_stdout, dead_code, unreachable_pub)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::backend::Backend;
use support::client::Load;
use support::envoy::{Envoy, Xds};
use support::flotilla::Flotilla;
use support::{free_addr, wait};

const ROUNDS: usize = 5;

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let mut backends = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ];
    let listen = free_addr();
    let eps: Vec<String> = backends.iter().map(Backend::address).collect();
    let yaml = format!(
        "version: 1
clusters:
  web:
    endpoints: [{}]
    health_check: {{ http: {{ path: /healthz }}, interval: 1s, timeout: 500ms, jitter: 100ms, healthy_threshold: 2, unhealthy_threshold: 2 }}
listeners:
  public:
    address: {listen}
    routes: [ {{ to: web }} ]
",
        eps.join(", ")
    );
    let flotilla = Flotilla::start(&yaml).await;
    let envoy = Envoy::start(&flotilla, "edge-1", "edge", Xds::Delta).await;
    envoy.wait_listener(listen).await;
    println!(
        "| round | time to UNHEALTHY in Envoy | requests during failover | failed | back HEALTHY after revive |"
    );
    println!("| --- | --- | --- | --- | --- |");
    for round in 1..=ROUNDS {
        let victim = &mut backends[round % 3];
        let addr = victim.address();
        wait::until("all healthy", Duration::from_secs(20), || async {
            let text = envoy.clusters().await;
            (text.matches("::health_flags::healthy").count() >= 4).then_some(())
        })
        .await;
        let load = Load::start(&[format!("http://{listen}/")], 4, Duration::from_millis(1));
        load.wait_for_more(500).await;
        let before = load.ok().await;
        victim.kill();
        let killed = Instant::now();
        wait::until("UNHEALTHY in Envoy", Duration::from_secs(20), || async {
            envoy
                .health_flags("web", &addr)
                .await
                .filter(|f| f.contains("failed_eds_health"))
                .map(|_| ())
        })
        .await;
        let to_unhealthy = killed.elapsed();
        let report = load.stop().await;
        let during = report.ok - before + report.failures.len() as u64;
        victim.revive().await;
        let revived = Instant::now();
        wait::until("HEALTHY again", Duration::from_secs(20), || async {
            envoy
                .health_flags("web", &addr)
                .await
                .filter(|f| f == "healthy")
                .map(|_| ())
        })
        .await;
        println!(
            "| {round} | {:.2} s | {during} | {} | {:.2} s |",
            to_unhealthy.as_secs_f64(),
            report.failures.len(),
            revived.elapsed().as_secs_f64()
        );
    }
}
