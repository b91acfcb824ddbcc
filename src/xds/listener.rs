//! The xDS port's accept loop, in place of tonic's: a cap on open connections, a deadline for a
//! connection's first request, and back-off when `accept` fails.
//!
//! tonic retries a failed `accept` at once, so when file descriptors run out (EMFILE) it spins
//! at 100 % CPU; it keeps idle TCP connections forever and accepts any number of them. Here a
//! connection holds a permit of a semaphore for its life, and is closed if its first HTTP/2
//! request has not begun within the handshake timeout.
//!
//! With TLS the handshake runs here too, in a task of its own (a slow client holds up only
//! itself) and within the same timeout; the verified client certificate's identities travel
//! with the connection to every request on it ([`XdsPeer`]).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::{Instant, Sleep};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;

use super::budget::Budget;
use tracing::warn;

use super::limits::Limits;
use super::open_files;
use crate::identity::{IdentityRules, PeerCert, Rejection, XdsPeer};
use crate::tls::ServerTls;

/// First and longest pause after a failed `accept`.
const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// TLS for the accept loop: the current configuration, whose client certificates name their
/// identities by `identity`; failed handshakes are counted in `metrics`.
#[derive(Clone)]
pub(crate) struct Handshake {
    pub(crate) tls: Arc<ServerTls>,
    pub(crate) identity: Arc<IdentityRules>,
    pub(crate) metrics: crate::identity::IdentityMetrics,
}

/// The kernel's keepalive on accepted sockets, under HTTP/2's: a socket silent for the
/// keepalive timeout is probed every keepalive interval and reset after 3 unanswered probes.
/// HTTP/2 PINGs keep a live connection from ever being idle that long; this catches a socket
/// whose HTTP/2 layer is not reading (before its first request, or stuck).
fn tcp_keepalive(limits: &Limits) -> socket2::TcpKeepalive {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(limits.keepalive_timeout)
        .with_interval(limits.keepalive_interval);
    #[cfg(any(target_os = "linux", target_os = "macos", target_os = "freebsd"))]
    let keepalive = keepalive.with_retries(3);
    keepalive
}

/// Accepted connections, for tonic's `serve_with_incoming_shutdown`. The loop ends with
/// `shutdown` (closing the listening socket) or when the server stops taking connections.
pub(crate) fn incoming(
    listener: TcpListener,
    limits: &Limits,
    tls: Option<Handshake>,
    shutdown: CancellationToken,
) -> ReceiverStream<Result<Connection, io::Error>> {
    let (tx, rx) = mpsc::channel(1);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let timeout = limits.handshake_timeout;
    let max = limits.max_connections;
    let tcp_keepalive = tcp_keepalive(limits);
    let buffer_limit = limits.max_buffered_bytes_per_connection;
    let mut connections: u64 = 0;
    tokio::spawn(async move {
        let mut backoff = Duration::ZERO;
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
                () = tx.closed() => break,
                a = listener.accept() => a,
            };
            let io = match accepted {
                Ok((io, _)) => io,
                Err(e) if per_connection(&e) => continue,
                Err(e) => {
                    backoff = (backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
                    if rate_limited(&LAST_ACCEPT_WARNING) {
                        accept_failed(&e, backoff);
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(backoff) => continue,
                    }
                }
            };
            backoff = Duration::ZERO;
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                if rate_limited(&LAST_CAP_WARNING) {
                    warn!(
                        max_connections = max,
                        "xDS connection refused: too many open connections (serve --xds-max-connections)"
                    );
                }
                continue;
            };
            let _ = io.set_nodelay(true);
            let _ = socket2::SockRef::from(&io).set_tcp_keepalive(&tcp_keepalive);
            let deadline = Instant::now() + timeout;
            let tcp = io.connect_info();
            connections += 1;
            let connection = connections;
            let buffered = Budget::new(
                buffer_limit,
                "serve --xds-max-buffered-bytes-per-connection",
                None,
            );
            let Some(tls) = tls.clone() else {
                let peer = XdsPeer {
                    tcp,
                    cert: None,
                    connection,
                    buffered,
                };
                let conn = Connection::new(Io::Plain(io), permit, deadline, peer);
                if tx.send(Ok(conn)).await.is_err() {
                    break;
                }
                continue;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.tls.config());
                let stream = match tokio::time::timeout_at(deadline, acceptor.accept(io)).await {
                    Ok(Ok(stream)) => stream,
                    failed => {
                        tls.metrics.rejected(Rejection::TlsHandshake);
                        if rate_limited(&LAST_HANDSHAKE_WARNING) {
                            let error = match failed {
                                Ok(Err(e)) => e.to_string(),
                                _ => "no handshake within the handshake timeout".to_string(),
                            };
                            warn!(peer = ?tcp.remote_addr(), %error, "xDS TLS handshake failed");
                        }
                        return;
                    }
                };
                let cert = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .map(|leaf| Arc::new(PeerCert::from_der(leaf, &tls.identity)));
                let peer = XdsPeer {
                    tcp,
                    cert,
                    connection,
                    buffered,
                };
                let conn = Connection::new(Io::Tls(Box::new(stream)), permit, deadline, peer);
                let _ = tx.send(Ok(conn)).await;
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Logs a failed `accept`; running out of descriptors names the limit and what raises it.
fn accept_failed(e: &io::Error, backoff: Duration) {
    let backoff_ms = backoff.as_millis() as u64;
    if !open_files::exhausted(e) {
        warn!(error = %e, backoff_ms, "xDS accept failed; backing off");
        return;
    }
    let limit = open_files::limits()
        .0
        .map_or("unlimited".to_string(), |l| l.to_string());
    warn!(error = %e, open_files_limit = %limit, backoff_ms,
        "xDS accept failed: out of file descriptors (open-files limit {limit}); new Envoys wait \
         in the listen backlog until connections close: raise the limit (ulimit -n, systemd \
         LimitNOFILE=) or lower --xds-max-connections");
}

/// Errors about one connection (it went before it was accepted), not about the listener.
fn per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

static LAST_ACCEPT_WARNING: AtomicU64 = AtomicU64::new(0);
static LAST_CAP_WARNING: AtomicU64 = AtomicU64::new(0);
static LAST_HANDSHAKE_WARNING: AtomicU64 = AtomicU64::new(0);

/// At most one warning a second per kind: a flood must not become a flood of logs.
fn rate_limited(last: &AtomicU64) -> bool {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    last.swap(now, Ordering::Relaxed) != now
}

/// A connection's bytes: as they come, or through TLS.
enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// An accepted connection: its permit, the deadline for its first request, and its peer.
pub(crate) struct Connection {
    io: Io,
    first_request: FirstRequest,
    deadline: Option<Pin<Box<Sleep>>>,
    peer: XdsPeer,
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    fn new(io: Io, permit: OwnedSemaphorePermit, deadline: Instant, peer: XdsPeer) -> Connection {
        Connection {
            io,
            first_request: FirstRequest::default(),
            deadline: Some(Box::pin(tokio::time::sleep_until(deadline))),
            peer,
            _permit: permit,
        }
    }
}

impl Connected for Connection {
    type ConnectInfo = XdsPeer;

    fn connect_info(&self) -> XdsPeer {
        self.peer.clone()
    }
}

macro_rules! io_call {
    ($io:expr, $s:ident => $call:expr) => {
        match $io {
            Io::Plain($s) => $call,
            Io::Tls($s) => $call,
        }
    };
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        io_call!(self.get_mut(), s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        io_call!(self.get_mut(), s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        io_call!(self.get_mut(), s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        io_call!(self, s => s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        io_call!(self.get_mut(), s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        io_call!(self.get_mut(), s => Pin::new(s).poll_shutdown(cx))
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let result = Pin::new(&mut this.io).poll_read(cx, buf);
        let Some(deadline) = this.deadline.as_mut() else {
            return result;
        };
        // What arrived is looked at before the clock: a request that came in time but was read
        // late (a busy server) still counts.
        if this.first_request.seen(&buf.filled()[before..]) {
            this.deadline = None;
            return result;
        }
        if deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no request within the handshake timeout (serve --xds-handshake-timeout)",
            )));
        }
        result
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The client's HTTP/2 connection preface.
const PREFACE: usize = 24;
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;

/// Watches the bytes a client sends until its first HEADERS frame (its first request) begins:
/// the 24-byte preface, then frames of a 9-byte header (length, type, flags, stream) and a
/// payload. Nothing is buffered; hyper parses the same bytes for real.
#[derive(Debug)]
struct FirstRequest {
    skip: usize,
    header: [u8; FRAME_HEADER],
    have: usize,
}

impl Default for FirstRequest {
    fn default() -> FirstRequest {
        FirstRequest {
            skip: PREFACE,
            header: [0; FRAME_HEADER],
            have: 0,
        }
    }
}

impl FirstRequest {
    /// Feeds the next bytes read; true once a HEADERS frame has begun.
    fn seen(&mut self, mut bytes: &[u8]) -> bool {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (FRAME_HEADER - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == FRAME_HEADER {
                if self.header[3] == HEADERS {
                    return true;
                }
                let h = self.header;
                self.skip = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                self.have = 0;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, payload: usize) -> Vec<u8> {
        let mut f = vec![
            (payload >> 16) as u8,
            (payload >> 8) as u8,
            payload as u8,
            kind,
            0,
        ];
        f.extend_from_slice(&[0, 0, 0, 1]);
        f.extend(std::iter::repeat_n(0xAB, payload));
        f
    }

    fn client_start() -> Vec<u8> {
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend(frame(0x4, 18)); // SETTINGS
        bytes.extend(frame(0x8, 4)); // WINDOW_UPDATE
        bytes
    }

    #[test]
    fn the_first_request_is_found_however_the_bytes_are_cut() {
        let mut bytes = client_start();
        let before = bytes.len();
        bytes.extend(frame(HEADERS, 40));
        for cut in 1..=bytes.len() {
            let mut f = FirstRequest::default();
            let found = bytes.chunks(cut).any(|c| f.seen(c));
            assert!(found, "cut {cut}");
        }
        let mut f = FirstRequest::default();
        assert!(!f.seen(&bytes[..before + FRAME_HEADER - 1]), "not yet");
    }

    #[test]
    fn a_preface_and_settings_alone_are_not_a_request() {
        let mut f = FirstRequest::default();
        assert!(!f.seen(&client_start()));
        assert!(!f.seen(&frame(0x6, 8))); // PING
        assert!(f.seen(&frame(HEADERS, 3)));
    }

    #[tokio::test]
    async fn idle_connections_are_closed_and_connections_above_the_cap_refused() {
        use tokio::io::AsyncReadExt;
        use tokio_stream::StreamExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = Limits {
            handshake_timeout: Duration::from_millis(200),
            max_connections: 2,
            ..Limits::default()
        };
        let shutdown = CancellationToken::new();
        let mut conns = incoming(listener, &limits, None, shutdown.clone());
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(TcpStream::connect(addr).await.unwrap());
        }
        let mut a = conns.next().await.unwrap().unwrap();
        let _b = conns.next().await.unwrap().unwrap();
        // The third is closed at once: reading it ends without waiting for any timeout.
        let mut buf = [0; 8];
        let read = tokio::time::timeout(Duration::from_secs(5), clients[2].read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
        // An idle connection's read fails once the handshake timeout has passed.
        let started = std::time::Instant::now();
        let err = a.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(150));
        // Its permit is returned when it is dropped: a new connection is taken again.
        drop(a);
        let _c = TcpStream::connect(addr).await.unwrap();
        let c = tokio::time::timeout(Duration::from_secs(5), conns.next()).await;
        assert!(matches!(c, Ok(Some(Ok(_)))));
        shutdown.cancel();
    }
}
