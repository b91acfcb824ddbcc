//! The admin port's connection loop, in place of `axum::serve`: a deadline for request
//! headers, an idle timeout, and a cap on open connections with the last slots kept for the
//! health probes.
//!
//! `axum::serve` keeps idle and half-sent connections forever and accepts any number of them:
//! 2,000 idle connections stayed open, and with TLS 300 of them made `/healthz` miss its
//! probes. Here a connection that sends or reads nothing for the idle timeout is closed (idle
//! between requests, stalled mid-request, or not reading its answer), one that dribbles its
//! request head is closed after the header timeout, and past `max - PROBE_SLOTS` open
//! connections a new one may only ask for `/healthz` or `/readyz`; past `max` it is closed at
//! once.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Connections (of the cap) kept for `/healthz` and `/readyz`: a flood of connections cannot
/// fail the probes that decide whether flotilla is restarted or taken out of rotation.
pub const PROBE_SLOTS: usize = 16;

/// What one client may cost the admin port (`serve --admin-*` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminLimits {
    /// Longest a client may take to send a request's head (line and headers).
    pub header_timeout: Duration,
    /// A connection with no byte read or written this long is closed.
    pub idle_timeout: Duration,
    /// Open connections at most, [`PROBE_SLOTS`] of them for the probes.
    pub max_connections: usize,
}

impl Default for AdminLimits {
    fn default() -> AdminLimits {
        AdminLimits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

impl AdminLimits {
    /// The smallest `max_connections`: room for the probes and as many other clients.
    pub const MIN_CONNECTIONS: usize = 2 * PROBE_SLOTS;
}

/// Whether a path is one of the probes the reserved slots serve.
fn is_probe(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz")
}

/// Serves `app` on connections from `listener` until `shutdown`, then lets open requests
/// finish (up to 5 s).
pub async fn serve<L>(
    mut listener: L,
    app: Router,
    limits: AdminLimits,
    shutdown: CancellationToken,
) -> io::Result<()>
where
    L: axum::serve::Listener,
    L::Io: Unpin,
    L::Addr: std::fmt::Debug,
{
    let open = Arc::new(Open::default());
    let mut last_warning: Option<Instant> = None;
    loop {
        let (io, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let count = open.count.load(Ordering::Relaxed);
        if count >= limits.max_connections {
            if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                warn!(
                    open = count,
                    max = limits.max_connections,
                    "admin port: too many connections; closing new ones (--admin-max-connections)"
                );
                last_warning = Some(Instant::now());
            }
            drop(io);
            continue;
        }
        let probes_only = count >= limits.max_connections - PROBE_SLOTS;
        open.count.fetch_add(1, Ordering::Relaxed);
        let guard = OpenGuard(open.clone());
        let app = app.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _guard = guard;
            connection(io, peer, app, limits, probes_only, shutdown).await;
        });
    }
    // Requests in progress finish (each connection shuts down gracefully on `shutdown`).
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let closed = open.closed.notified();
            if open.count.load(Ordering::Relaxed) == 0 {
                return;
            }
            closed.await;
        }
    })
    .await;
    Ok(())
}

/// The open connections, and a wake-up when one ends.
#[derive(Default)]
struct Open {
    count: AtomicUsize,
    closed: tokio::sync::Notify,
}

/// Takes a connection off the count when it ends.
struct OpenGuard(Arc<Open>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::Relaxed);
        self.0.closed.notify_waiters();
    }
}

async fn connection<I, A>(
    io: I,
    peer: A,
    app: Router,
    limits: AdminLimits,
    probes_only: bool,
    shutdown: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    A: std::fmt::Debug,
{
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let mut app = app.clone();
        async move {
            if probes_only && !is_probe(req.uri().path()) {
                return Ok(busy());
            }
            tower_service::Service::call(&mut app, req.map(axum::body::Body::new)).await
        }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let io = TokioIo::new(IdleIo::new(io, limits.idle_timeout));
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        debug!(peer = ?peer, error = %e, "admin connection closed");
    }
}

/// The answer to anything but a probe on a reserved slot.
fn busy() -> axum::response::Response {
    let mut response = crate::admin::errors::error(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "the admin port has too many open connections; only /healthz and /readyz are served on the last ones (--admin-max-connections)",
    );
    response.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    response
}

/// A connection closed once no byte has been read or written for `idle`: reads and writes
/// that make progress push the deadline back; a read or write still pending when it passes
/// fails with `TimedOut`, which ends the connection.
pub(crate) struct IdleIo<T> {
    inner: T,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<T> IdleIo<T> {
    pub(crate) fn new(inner: T, idle: Duration) -> IdleIo<T> {
        IdleIo {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }

    fn progressed(&mut self) {
        let next = tokio::time::Instant::now() + self.idle;
        self.deadline.as_mut().reset(next);
    }

    fn expired<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "admin connection idle",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.progressed();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.expired(cx),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.progressed();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.expired(cx),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => self.expired(cx),
            ready => ready,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_times_out_and_traffic_pushes_the_deadline_back() {
        let (client, server) = tokio::io::duplex(64);
        let mut io = IdleIo::new(server, Duration::from_secs(30));
        let (mut read_half, mut write_half) = tokio::io::split(client);
        let mut buf = [0u8; 8];
        tokio::time::sleep(Duration::from_secs(20)).await;
        write_half.write_all(b"GET").await.unwrap();
        assert_eq!(io.read(&mut buf).await.unwrap(), 3);
        // 20 s after the last byte: still open; then nothing for 30 s: closed.
        let started = tokio::time::Instant::now();
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        drop(read_half.read(&mut buf));
    }

    #[test]
    fn only_the_probes_are_served_on_reserved_slots() {
        assert!(is_probe("/healthz") && is_probe("/readyz"));
        assert!(!is_probe("/metrics") && !is_probe("/api/v1/state"));
    }
}
