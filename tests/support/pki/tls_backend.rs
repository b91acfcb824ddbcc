//! An HTTP backend reachable only over TLS (optionally requiring a client certificate).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};

use super::Pki;

/// An HTTP backend reachable only over TLS (optionally requiring a client certificate from
/// `pki`): answers its body (its name unless [`TlsBackend::set_body`] changed it) to every
/// request (counted), and `ok` on `/healthz` (counted apart).
pub struct TlsBackend {
    pub addr: SocketAddr,
    probes: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
    body: Arc<Mutex<String>>,
    task: JoinHandle<()>,
}

/// What the serving task shares with its [`TlsBackend`].
#[derive(Clone)]
struct Shared {
    probes: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
    body: Arc<Mutex<String>>,
}

impl TlsBackend {
    pub async fn start(pki: &Pki, name: &str, names: &[&str], client_auth: bool) -> TlsBackend {
        let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        TlsBackend::start_at(pki, name, names, client_auth, addr).await
    }

    /// [`TlsBackend::start`] on `addr` (say the same port on another loopback address).
    pub async fn start_at(
        pki: &Pki,
        name: &str,
        names: &[&str],
        client_auth: bool,
        addr: SocketAddr,
    ) -> TlsBackend {
        let issued = pki.issue(names);
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(issued.chain.as_bytes())
                .collect::<Result<_, _>>()
                .expect("chain");
        let key = PrivateKeyDer::from_pem_slice(issued.key.as_bytes()).expect("key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions");
        let builder = if client_auth {
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
                roots.add(c.expect("ca")).expect("root");
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder.with_single_cert(chain, key).expect("server cert");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shared = Shared {
            probes: Arc::new(AtomicU64::new(0)),
            requests: Arc::new(AtomicU64::new(0)),
            body: Arc::new(Mutex::new(name.to_string())),
        };
        let task = tokio::spawn(serve(listener, acceptor, shared.clone()));
        TlsBackend {
            addr,
            probes: shared.probes,
            requests: shared.requests,
            body: shared.body,
            task,
        }
    }

    /// `/healthz` requests that completed a TLS handshake.
    pub fn probes(&self) -> u64 {
        self.probes.load(Ordering::Relaxed)
    }

    /// Requests other than `/healthz` that completed a TLS handshake.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// What every request (but `/healthz`) is answered from now on.
    pub fn set_body(&self, body: &str) {
        *self.body.lock().expect("body") = body.to_string();
    }
}

impl Drop for TlsBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, acceptor: TlsAcceptor, shared: Shared) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let (acceptor, shared) = (acceptor.clone(), shared.clone());
                connections.spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else { return };
                    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let shared = shared.clone();
                        async move {
                            let body = if req.uri().path() == "/healthz" {
                                shared.probes.fetch_add(1, Ordering::Relaxed);
                                "ok".to_string()
                            } else {
                                shared.requests.fetch_add(1, Ordering::Relaxed);
                                shared.body.lock().expect("body").clone()
                            };
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}
