//! Certificates on disk for TLS listeners and clusters (generated per test, rcgen), HTTPS
//! clients that trust only the test CA, and an HTTPS-only backend.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};

/// A certificate as PEM files hold it.
#[derive(Clone)]
pub struct Issued {
    /// Leaf then CA.
    pub chain: String,
    pub key: String,
    pub leaf: CertificateDer<'static>,
}

impl Issued {
    /// Writes `<stem>.pem` and `<stem>.key` into `dir`.
    pub fn write(&self, dir: &Path, stem: &str) {
        std::fs::write(dir.join(format!("{stem}.pem")), &self.chain).expect("write cert");
        std::fs::write(dir.join(format!("{stem}.key")), &self.key).expect("write key");
    }
}

/// A throwaway CA.
pub struct Pki {
    ca: Certificate,
    key: KeyPair,
    pub ca_pem: String,
}

impl Pki {
    pub fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "flotilla test CA");
        let key = KeyPair::generate().expect("ca key");
        let ca = params.self_signed(&key).expect("ca cert");
        Pki {
            ca_pem: ca.pem(),
            ca,
            key,
        }
    }

    /// A certificate for `names` (DNS names or IP addresses), signed by this CA.
    pub fn issue(&self, names: &[&str]) -> Issued {
        self.issue_until(names, None)
    }

    /// [`Pki::issue`], valid until `not_after` (Unix seconds) when given.
    pub fn issue_until(&self, names: &[&str], not_after: Option<i64>) -> Issued {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("leaf params");
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("client"),
        );
        if let Some(t) = not_after {
            let at = x509_parser::time::ASN1Time::from_timestamp(t).expect("timestamp");
            params.not_after = at.to_datetime();
        }
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.ca, &self.key)
            .expect("leaf cert");
        Issued {
            chain: format!("{}{}", cert.pem(), self.ca_pem),
            key: key.serialize_pem(),
            leaf: cert.der().clone(),
        }
    }

    /// Writes the CA as `<stem>.pem` into `dir`.
    pub fn write_ca(&self, dir: &Path, stem: &str) {
        std::fs::write(dir.join(format!("{stem}.pem")), &self.ca_pem).expect("write ca");
    }
}

/// An HTTPS client that trusts only `ca_pem`, reaches each name at its address, opens a new
/// connection per request (so every request sees the certificate presented right now) and
/// reports the peer's certificate.
pub fn https_client(
    ca_pem: &str,
    resolve: &[(&str, SocketAddr)],
    identity: Option<&Issued>,
) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("ca"))
        .tls_info(true)
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(5));
    for (name, addr) in resolve {
        b = b.resolve(name, *addr);
    }
    if let Some(id) = identity {
        let pem = format!("{}{}", id.chain, id.key);
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("identity"));
    }
    b.build().expect("https client")
}

/// The DER of the certificate the server presented for `resp`.
pub fn peer_certificate(resp: &reqwest::Response) -> Option<Vec<u8>> {
    resp.extensions()
        .get::<reqwest::tls::TlsInfo>()?
        .peer_certificate()
        .map(<[u8]>::to_vec)
}

/// An HTTP backend reachable only over TLS (optionally requiring a client certificate from
/// `pki`): answers its name, and `ok` on `/healthz` (counted).
pub struct TlsBackend {
    pub addr: SocketAddr,
    probes: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl TlsBackend {
    pub async fn start(pki: &Pki, name: &str, names: &[&str], client_auth: bool) -> TlsBackend {
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
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let probes = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(serve(listener, acceptor, name.to_string(), probes.clone()));
        TlsBackend { addr, probes, task }
    }

    /// `/healthz` requests that completed a TLS handshake.
    pub fn probes(&self) -> u64 {
        self.probes.load(Ordering::Relaxed)
    }
}

impl Drop for TlsBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, acceptor: TlsAcceptor, name: String, probes: Arc<AtomicU64>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let (acceptor, name, probes) = (acceptor.clone(), name.clone(), probes.clone());
                connections.spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else { return };
                    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (name, probes) = (name.clone(), probes.clone());
                        async move {
                            let body = if req.uri().path() == "/healthz" {
                                probes.fetch_add(1, Ordering::Relaxed);
                                "ok".to_string()
                            } else {
                                name
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
