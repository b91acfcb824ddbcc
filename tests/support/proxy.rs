//! A loopback TCP proxy that can freeze: it stops forwarding bytes both ways without closing
//! either side, as when a client's network vanishes with no FIN or RST. Neither end learns
//! anything from TCP (the kernel still acknowledges what reaches the proxy's buffers); only a
//! protocol-level keepalive can tell the connection is dead.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

pub struct FreezingProxy {
    pub addr: SocketAddr,
    frozen: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl FreezingProxy {
    /// Forwards every connection made to `addr` to `upstream`.
    pub async fn start(upstream: SocketAddr) -> FreezingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let (frozen, _) = watch::channel(false);
        let watch = frozen.clone();
        let task = tokio::spawn(async move {
            // Dropping the set (when the proxy is dropped) aborts the pumps and closes sockets.
            let mut pumps = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                pumps.spawn(pump(client_read, server_write, watch.subscribe()));
                pumps.spawn(pump(server_read, client_write, watch.subscribe()));
            }
        });
        FreezingProxy { addr, frozen, task }
    }

    /// From now on no byte crosses the proxy in either direction; every socket stays open.
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }
}

impl Drop for FreezingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut frozen: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            _ = frozen.wait_for(|f| *f) => break,
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
        };
        if *frozen.borrow() || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    // Frozen: hold both sockets open and silent until the proxy is dropped.
    let _hold = (from, to);
    std::future::pending::<()>().await;
}

/// A loopback TCP proxy that can cut: [`CuttingProxy::cut`] closes every connection through
/// it (both ends see the close) and refuses new ones until [`CuttingProxy::resume`], as when
/// a client loses its control plane for a while and gets it back.
pub struct CuttingProxy {
    pub addr: SocketAddr,
    cut: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl CuttingProxy {
    /// Forwards every connection made to `addr` to `upstream`.
    pub async fn start(upstream: SocketAddr) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let (cut, _) = watch::channel(false);
        let watch = cut.clone();
        let task = tokio::spawn(async move {
            let mut pipes = JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                if *watch.borrow() {
                    continue;
                }
                let Ok(mut server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let mut cut = watch.subscribe();
                pipes.spawn(async move {
                    tokio::select! {
                        _ = cut.wait_for(|c| *c) => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    }
                });
            }
        });
        CuttingProxy { addr, cut, task }
    }

    /// Closes every connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Forwards new connections again.
    pub fn resume(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
