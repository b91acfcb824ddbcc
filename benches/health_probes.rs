//! How many endpoints one flotilla can probe every second, and what it costs.
//!
//! For each size, N HTTP endpoints (distinct loopback ports, served by helper processes of this
//! same binary: a process may hold 20,000 files here) are checked by a real `flotilla serve`
//! (release build) with a 1 s interval. After a warm-up the bench reads flotilla's CPU time and
//! peak RSS from /proc and its probe counters from /metrics, and prints one row per size.
//!
//! Run: `scripts/bench-health` (or `cargo bench --bench health_probes`).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SIZES: [usize; 4] = [1_000, 2_500, 5_000, 10_000];
const PER_HELPER: usize = 2_500;
const WARMUP: Duration = Duration::from_secs(5);
const MEASURE: Duration = Duration::from_secs(20);

fn main() {
    if let Ok(n) = std::env::var("FLOTILLA_BENCH_SERVE") {
        serve(n.parse().expect("count"));
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` style probing: nothing to list.
    }
    let sizes: Vec<usize> = std::env::var("FLOTILLA_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| SIZES.to_vec());
    println!(
        "| endpoints | probes/s (target = endpoints) | ok | CPU (cores) | CPU per 1,000 endpoints | peak RSS |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for n in sizes {
        let row = measure(n);
        println!("{row}");
    }
}

/// Helper process: `n` HTTP listeners on free loopback ports answering 200 "ok"; prints the
/// ports, one per line, then "ready".
fn serve(n: usize) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let mut out = std::io::stdout().lock();
        for _ in 0..n {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            writeln!(out, "{}", listener.local_addr().expect("addr").port()).expect("stdout");
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(|_req| async {
                            Ok::<_, Infallible>(hyper::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from_static(b"ok"),
                            )))
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        }
        writeln!(out, "ready").expect("stdout");
        drop(out);
        std::future::pending::<()>().await;
    });
}

struct Helpers(Vec<Child>);

impl Drop for Helpers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn measure(n: usize) -> String {
    let me = std::env::current_exe().expect("own path");
    let mut helpers = Helpers(Vec::new());
    let mut ports = Vec::with_capacity(n);
    let mut left = n;
    while left > 0 {
        let chunk = left.min(PER_HELPER);
        left -= chunk;
        let mut child = Command::new(&me)
            .env("FLOTILLA_BENCH_SERVE", chunk.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("helper");
        let stdout = child.stdout.take().expect("stdout");
        helpers.0.push(child);
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("line");
            if line == "ready" {
                break;
            }
            ports.push(line.parse::<u16>().expect("port"));
        }
    }
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("flotilla.yaml");
    let mut yaml = String::from(
        "version: 1\ndefaults:\n  health_check: { http: { path: /healthz }, interval: 1s, timeout: 500ms, jitter: 100ms }\n  outlier_detection: false\nclusters:\n",
    );
    for (i, chunk) in ports.chunks(100).enumerate() {
        let eps: Vec<String> = chunk.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        yaml.push_str(&format!("  c{i}: {{ endpoints: [{}] }}\n", eps.join(", ")));
    }
    std::fs::write(&config, yaml).expect("config");
    let admin = free_port();
    let mut flotilla = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["serve", "--no-watch", "--config"])
        .arg(&config)
        .args(["--xds-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .arg("--state-file")
        .arg(dir.path().join("state.json"))
        .env("RUST_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .expect("flotilla");
    let pid = flotilla.id();
    let metrics_url = format!("http://127.0.0.1:{admin}/metrics");
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(&metrics_url).is_none() {
        assert!(Instant::now() < deadline, "flotilla did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(WARMUP);
    let (cpu0, probes0) = (
        cpu_seconds(pid),
        probes(&get(&metrics_url).unwrap_or_default()),
    );
    let start = Instant::now();
    std::thread::sleep(MEASURE);
    let (cpu1, probes1) = (
        cpu_seconds(pid),
        probes(&get(&metrics_url).unwrap_or_default()),
    );
    let wall = start.elapsed().as_secs_f64();
    let rss = peak_rss_mib(pid);
    let _ = flotilla.kill();
    let _ = flotilla.wait();
    let cores = (cpu1 - cpu0) / wall;
    let ok = (probes1.0 - probes0.0) as f64;
    let all = ok + (probes1.1 - probes0.1) as f64;
    format!(
        "| {n} | {:.0} | {:.1} % | {cores:.3} | {:.3} cores | {rss:.0} MiB |",
        all / wall,
        if all > 0.0 { 100.0 * ok / all } else { 0.0 },
        cores * 1000.0 / n as f64
    )
}

/// (ok, not ok) probe counts from flotilla's metrics.
fn probes(metrics: &str) -> (u64, u64) {
    let mut ok = 0;
    let mut bad = 0;
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("flotilla_health_probes_total{"))
    {
        let value: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        if line.contains("result=\"ok\"") {
            ok += value as u64;
        } else {
            bad += value as u64;
        }
    }
    (ok, bad)
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat")
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 =
        fields[11].parse::<f64>().unwrap_or(0.0) + fields[12].parse::<f64>().unwrap_or(0.0);
    ticks / 100.0
}

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A plain blocking GET (the bench does not need an async client for two URLs).
fn get(url: &str) -> Option<String> {
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut stream = std::net::TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut body = String::new();
    std::io::Read::read_to_string(&mut stream, &mut body).ok()?;
    body.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}
