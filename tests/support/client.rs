//! Clients sending real HTTP requests through Envoy.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tokio::task::JoinSet;

/// One response: status, and which backend answered (from `x-backend`).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub backend: String,
    pub headers: reqwest::header::HeaderMap,
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build()
        .expect("http client")
}

/// A client whose connections come from `local` (for source-IP affinity).
pub fn http_from(local: std::net::IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .local_address(local)
        .pool_max_idle_per_host(0)
        .build()
        .expect("http client")
}

pub async fn get_with(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<Reply, String> {
    let mut req = client.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let backend = headers
        .get("x-backend")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let _ = resp.bytes().await;
    Ok(Reply {
        status,
        backend,
        headers,
    })
}

/// Sends `n` requests one after another; counts answers per backend (non-200s count as
/// `status:<code>`).
pub async fn spread(url: &str, n: usize) -> BTreeMap<String, usize> {
    let client = http();
    let mut out = BTreeMap::new();
    for _ in 0..n {
        let key = match get_with(&client, url, &[]).await {
            Ok(r) if r.status == 200 => r.backend,
            Ok(r) => format!("status:{}", r.status),
            Err(e) => format!("error:{e}"),
        };
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

/// A continuous request loop across some URLs, recording every failure.
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: JoinSet<()>,
    report: Arc<Mutex<LoadReport>>,
}

#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    pub ok: u64,
    pub failures: Vec<String>,
    pub by_backend: BTreeMap<String, u64>,
}

impl Load {
    /// `workers` loops, each requesting the URLs in turn with `pause` between requests.
    pub fn start(urls: &[String], workers: usize, pause: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let report = Arc::new(Mutex::new(LoadReport::default()));
        let mut tasks = JoinSet::new();
        let started = Instant::now();
        for w in 0..workers {
            let urls = urls.to_vec();
            let stop = stop.clone();
            let report = report.clone();
            tasks.spawn(async move {
                let client = http();
                let mut i = w;
                while !stop.load(Ordering::Relaxed) {
                    let url = &urls[i % urls.len()];
                    i += 1;
                    let result = get_with(&client, url, &[]).await;
                    let mut r = report.lock().await;
                    match result {
                        Ok(reply) if reply.status == 200 => {
                            r.ok += 1;
                            *r.by_backend.entry(reply.backend).or_insert(0) += 1;
                        }
                        Ok(reply) => r.failures.push(format!(
                            "{:?} {url}: status {} {:?}",
                            started.elapsed(),
                            reply.status,
                            reply.headers
                        )),
                        Err(e) => r
                            .failures
                            .push(format!("{:?} {url}: {e}", started.elapsed())),
                    }
                    drop(r);
                    tokio::time::sleep(pause).await;
                }
            });
        }
        Load {
            stop,
            tasks,
            report,
        }
    }

    /// Requests answered so far.
    pub async fn ok(&self) -> u64 {
        self.report.lock().await.ok
    }

    /// Waits until `more` further requests have succeeded (so a change is proven under load).
    pub async fn wait_for_more(&self, more: u64) {
        let target = self.ok().await + more;
        super::wait::until("requests to flow", Duration::from_secs(20), || async {
            (self.ok().await >= target).then_some(())
        })
        .await;
    }

    pub async fn stop(mut self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        while self.tasks.join_next().await.is_some() {}
        self.report.lock().await.clone()
    }
}

/// Records the status of every request to one URL, in order, from one tight loop: what a
/// client saw while a route appeared or disappeared.
pub struct Trace {
    stop: Arc<AtomicBool>,
    seen: Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Trace {
    pub fn start(url: &str) -> Trace {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let url = url.to_string();
        let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let record = seen.clone();
        let task = tokio::spawn(async move {
            let client = http();
            while !flag.load(Ordering::Relaxed) {
                let outcome = match get_with(&client, &url, &[]).await {
                    Ok(r) => r.status.to_string(),
                    Err(e) => format!("error {e}"),
                };
                // Keep transitions only: "404 ×120, 200 ×300" reads as ["404", "200"].
                {
                    let mut seen = record.lock().expect("trace");
                    if seen.last() != Some(&outcome) {
                        seen.push(outcome);
                    }
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        Trace { stop, seen, task }
    }

    /// Waits until the latest outcome the client saw is `outcome`.
    pub async fn until_seen(&self, outcome: &str) {
        super::wait::until(
            &format!("a traced request to end {outcome}"),
            Duration::from_secs(10),
            || async {
                (self.seen.lock().expect("trace").last().map(String::as_str) == Some(outcome))
                    .then_some(())
            },
        )
        .await;
    }

    /// The distinct outcomes, in the order they were first seen after each change.
    pub async fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("trace task");
        self.seen.lock().expect("trace").clone()
    }
}
