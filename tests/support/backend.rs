//! In-process HTTP backends that say who they are.
//!
//! Every response carries the backend's name as its body and in `x-backend`, and echoes what
//! arrived: `x-seen-path` (path and query), `x-seen-host`, and each `x-*` request header (and `traceparent`) as
//! `seen-x-*` (so tests see rewrites and header edits). `/healthz`
//! answers with a settable status. A backend can be slowed down, made to fail, or killed
//! (listener closed and every open connection dropped, as when a process dies).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

#[derive(Default)]
struct State {
    probes: AtomicU64,
    health_delay_ms: AtomicU64,
    arrivals: AtomicU64,
    hits: AtomicU64,
    in_flight: AtomicU64,
    delay_ms: AtomicU64,
    status: AtomicU16,
    health: AtomicU16,
}

pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    state: Arc<State>,
    task: Option<JoinHandle<()>>,
}

impl Backend {
    /// A backend on a free loopback port.
    pub async fn start(name: &str) -> Backend {
        Backend::start_at(name, "127.0.0.1:0".parse().expect("addr")).await
    }

    /// A backend on a given address (to bring a killed one back on the same port).
    pub async fn start_at(name: &str, addr: SocketAddr) -> Backend {
        let listener = TcpListener::bind(addr).await.expect("bind backend");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(State {
            status: AtomicU16::new(200),
            health: AtomicU16::new(200),
            ..State::default()
        });
        let task = tokio::spawn(serve(listener, name.to_string(), state.clone()));
        Backend {
            name: name.to_string(),
            addr,
            state,
            task: Some(task),
        }
    }

    /// Brings a killed backend back on its address.
    pub async fn revive(&mut self) {
        assert!(self.task.is_none(), "backend {} is running", self.name);
        let fresh = Backend::start_at(&self.name, self.addr).await;
        self.state = fresh.state.clone();
        let mut fresh = fresh;
        self.task = fresh.task.take();
    }

    /// Health probes received (/healthz).
    pub fn probes(&self) -> u64 {
        self.state.probes.load(Ordering::Relaxed)
    }

    /// Slows /healthz down too (a slow backend is slow for its probes as well).
    pub fn set_health_delay(&self, d: Duration) {
        self.state
            .health_delay_ms
            .store(d.as_millis() as u64, Ordering::Relaxed);
    }

    /// Requests received, counted when they arrive (not counting /healthz).
    pub fn arrivals(&self) -> u64 {
        self.state.arrivals.load(Ordering::Relaxed)
    }

    /// Requests answered (not counting /healthz).
    pub fn hits(&self) -> u64 {
        self.state.hits.load(Ordering::Relaxed)
    }

    pub fn set_delay(&self, d: Duration) {
        self.state
            .delay_ms
            .store(d.as_millis() as u64, Ordering::Relaxed);
    }

    /// Status for every path but /healthz.
    pub fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::Relaxed);
    }

    pub fn set_health(&self, status: u16) {
        self.state.health.store(status, Ordering::Relaxed);
    }

    /// Closes the listener and drops every connection, like a crashed process.
    pub fn kill(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    pub fn address(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn serve(listener: TcpListener, name: String, state: Arc<State>) {
    // Connections live in this set: aborting the task drops the set, which aborts them all.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let name = name.clone();
                let state = state.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        respond(req, name.clone(), state.clone())
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn respond(
    req: Request<Incoming>,
    name: String,
    state: Arc<State>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut seen = Response::builder()
        .header(
            "x-seen-path",
            req.uri().path_and_query().map_or("/", |p| p.as_str()),
        )
        .header(
            "x-seen-host",
            req.headers()
                .get("host")
                .cloned()
                .unwrap_or(hyper::header::HeaderValue::from_static("")),
        );
    for (k, v) in req.headers() {
        if k.as_str().starts_with("x-") || k == "traceparent" {
            seen = seen.header(format!("seen-{k}"), v);
        }
    }
    let reply = |status: u16, body: String| {
        Ok(seen
            .status(status)
            .header("x-backend", name.as_str())
            .body(Full::new(Bytes::from(body)))
            .expect("response"))
    };
    if req.uri().path() == "/healthz" {
        state.probes.fetch_add(1, Ordering::Relaxed);
        let delay = state.health_delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let status = state.health.load(Ordering::Relaxed);
        return reply(
            status,
            if status < 400 {
                "ok".into()
            } else {
                "unhealthy".into()
            },
        );
    }
    state.arrivals.fetch_add(1, Ordering::Relaxed);
    state.in_flight.fetch_add(1, Ordering::Relaxed);
    let delay = state.delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    state.in_flight.fetch_sub(1, Ordering::Relaxed);
    state.hits.fetch_add(1, Ordering::Relaxed);
    reply(state.status.load(Ordering::Relaxed), name.clone())
}
