//! Registrations: the time to register n endpoints into one cluster, one after the other,
//! through the runtime (what `POST /api/v1/clusters/{cluster}/registrations` calls), until
//! every one of them is in the overlay Envoy's endpoints are made from. Linear means the
//! last thousand cost what the first thousand did.
//!
//! Run: `cargo bench --bench registrations`.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla::cache::SnapshotCache;
use flotilla::control::Controller;
use flotilla::runtime::Runtime;
use flotilla::store::StateFile;
use tokio_util::sync::CancellationToken;

const CONFIG: &str = "version: 1
clusters:
  web:
    endpoints: [127.0.0.1:8081]
    registrations: { max: 10000 }
";

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    println!("| registrations | total | first 1,000 | last 1,000 |");
    println!("| ---: | ---: | ---: | ---: |");
    for n in [1_000, 2_500, 5_000, 10_000] {
        let dir = tempfile::tempdir().unwrap();
        let controller = Controller::new(Arc::new(SnapshotCache::new()), Default::default());
        let config = flotilla::config::parse_str("bench.yaml", CONFIG).unwrap();
        controller.set_config(Arc::new(config));
        let runtime = Runtime::local(
            controller.clone(),
            StateFile::new(dir.path().join("state.json")),
            CancellationToken::new(),
        )
        .unwrap();
        let start = Instant::now();
        let mut marks = Vec::new();
        for i in 0..n {
            if i % 1_000 == 0 {
                marks.push(start.elapsed());
            }
            let address = format!("10.{}.{}.{}:8080", i >> 16, (i >> 8) & 255, i & 255);
            runtime
                .lease("web", &address, 1, Duration::from_secs(3600))
                .await
                .unwrap();
            tokio::task::yield_now().await;
        }
        marks.push(start.elapsed());
        while controller
            .overlay()
            .registered
            .get("web")
            .map_or(0, Vec::len)
            < n
        {
            tokio::task::yield_now().await;
        }
        let total = start.elapsed();
        let first = marks[1] - marks[0];
        let last = marks[marks.len() - 1] - marks[marks.len() - 2];
        println!(
            "| {n} | {:.2} s | {:.0} ms | {:.0} ms |",
            total.as_secs_f64(),
            first.as_secs_f64() * 1e3,
            last.as_secs_f64() * 1e3
        );
    }
}
