//! TLS backends that terminate TLS themselves (for `tls_passthrough` listeners) and a rustls
//! client that sends SNI: a test CA ([`Pki`]) signs each backend's certificate, nothing on disk.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::pki::Pki;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client that trusts only the CA `ca`.
pub fn client(ca: &Pki) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.ca_pem.as_bytes()) {
        roots.add(cert.expect("ca")).expect("root");
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// A backend that terminates TLS with a certificate for `names` and answers a line with
/// `<name>:<line>`.
pub struct TlsEcho {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl TlsEcho {
    pub async fn start(ca: &Pki, name: &str, server_names: &[&str]) -> TlsEcho {
        let issued = ca.issue(server_names);
        let key = PrivateKeyDer::from_pem_slice(issued.key.as_bytes()).expect("key");
        let cert = issued.leaf;
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .expect("server cert");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let name = name.to_string();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, name) = (acceptor.clone(), name.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = tls.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        let mut reply = format!("{name}:").into_bytes();
                        reply.extend_from_slice(&buf[..n]);
                        if tls.write_all(&reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        TlsEcho { addr, task }
    }

    pub fn address(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for TlsEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connects to `addr` with SNI `server_name`, verifies the certificate against the test CA,
/// sends `line` and returns the reply; `Err` says where it failed.
pub async fn exchange(
    client: &TlsConnector,
    addr: SocketAddr,
    server_name: &str,
    line: &str,
) -> Result<String, String> {
    let attempt = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let name = ServerName::try_from(server_name.to_string()).map_err(|e| e.to_string())?;
        let mut tls = client
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tls.write_all(line.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.ends_with(line.as_bytes()) {
            let n = tls.read(&mut buf).await.map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("closed".to_string());
            }
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(got).map_err(|e| e.to_string())
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .map_err(|_| "timed out".to_string())?
}
