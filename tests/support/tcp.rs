//! TCP backends for `protocol: tcp` listeners: each answers a line with `<name>:<line>`, so a
//! client sees which backend Envoy picked, and answers flotilla's `PING` probe with `+PONG`
//! only while healthy (a sick backend still echoes: if it got traffic, the test would see it).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct TcpEcho {
    pub addr: SocketAddr,
    healthy: Arc<AtomicBool>,
    connections: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl TcpEcho {
    pub async fn start(name: &str) -> TcpEcho {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let healthy = Arc::new(AtomicBool::new(true));
        let connections = Arc::new(AtomicU64::new(0));
        let (h, c, name) = (healthy.clone(), connections.clone(), name.to_string());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (h, c, name) = (h.clone(), c.clone(), name.clone());
                tokio::spawn(serve(stream, name, h, c));
            }
        });
        TcpEcho {
            addr,
            healthy,
            connections,
            task,
        }
    }

    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Connections that carried data other than a health probe.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }
}

impl Drop for TcpEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut stream: TcpStream,
    name: String,
    healthy: Arc<AtomicBool>,
    connections: Arc<AtomicU64>,
) {
    let mut buf = [0u8; 1024];
    let mut counted = false;
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if buf[..n].starts_with(b"PING") {
            if healthy.load(Ordering::Relaxed) {
                let _ = stream.write_all(b"+PONG\r\n").await;
            }
            return;
        }
        if !counted {
            connections.fetch_add(1, Ordering::Relaxed);
            counted = true;
        }
        let mut reply = format!("{name}:").into_bytes();
        reply.extend_from_slice(&buf[..n]);
        if stream.write_all(&reply).await.is_err() {
            return;
        }
    }
}

/// Opens a connection to `addr`, sends `line`, and returns the reply (`<backend>:<line>`),
/// or `None` if the connection failed or closed without one.
pub async fn exchange(addr: SocketAddr, line: &str) -> Option<String> {
    let attempt = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(line.as_bytes()).await.ok()?;
        let mut buf = vec![0u8; 1024];
        let mut got = Vec::new();
        while !got.ends_with(line.as_bytes()) {
            let n = s.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(got).ok()
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .ok()
        .flatten()
}

/// The backend name in a reply from [`exchange`].
pub fn backend_of(reply: &str) -> &str {
    reply.split(':').next().unwrap_or_default()
}
