//! Non-HTTP backends for health checks: a gRPC server with grpc.health.v1, and a TCP
//! server that answers PING with PONG.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic_health::server::HealthReporter;

/// A gRPC server whose health (service "") can be flipped.
pub struct GrpcHealthServer {
    pub addr: SocketAddr,
    reporter: HealthReporter,
    task: JoinHandle<()>,
}

impl GrpcHealthServer {
    pub async fn start() -> GrpcHealthServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await;
        });
        GrpcHealthServer {
            addr,
            reporter,
            task,
        }
    }

    pub async fn set_serving(&self, serving: bool) {
        let status = if serving {
            tonic_health::ServingStatus::Serving
        } else {
            tonic_health::ServingStatus::NotServing
        };
        self.reporter.set_service_status("", status).await;
    }
}

impl Drop for GrpcHealthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TCP server that answers `PING` with `+PONG`, or, once told to, accepts and closes at
/// once (a listener that is up but broken).
pub struct PongServer {
    pub addr: SocketAddr,
    broken: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl PongServer {
    pub async fn start() -> PongServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let broken = Arc::new(AtomicBool::new(false));
        let flag = broken.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                if flag.load(Ordering::Relaxed) {
                    drop(stream);
                    continue;
                }
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    if let Ok(n) = stream.read(&mut buf).await
                        && buf[..n].starts_with(b"PING")
                    {
                        let _ = stream.write_all(b"+PONG\r\n").await;
                    }
                });
            }
        });
        PongServer { addr, broken, task }
    }

    /// From now on, accept connections and close them without a word.
    pub fn break_it(&self) {
        self.broken.store(true, Ordering::Relaxed);
    }

    pub fn fix(&self) {
        self.broken.store(false, Ordering::Relaxed);
    }
}

impl Drop for PongServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `routes` (tonic services the test implements: an OTLP collector, an ext_authz
/// service) on a loopback port picked by the kernel, until the test's runtime ends; the address.
pub async fn serve_grpc(routes: tonic::service::Routes) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await;
    });
    addr
}
