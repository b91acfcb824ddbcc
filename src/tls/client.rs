//! flotilla's own clients of the xDS port over TLS (`flotilla register --registry-ca …`):
//! rustls, a CA to trust and optionally a client certificate, dialled through tonic.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use super::TlsFileError;

/// What a client presents and trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    pub ca: PathBuf,
    /// The client certificate and key (mTLS).
    pub cert_and_key: Option<(PathBuf, PathBuf)>,
}

fn file_error(path: &std::path::Path, e: impl ToString) -> TlsFileError {
    TlsFileError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

impl ClientTls {
    /// A connector for tonic's `Endpoint::connect_with_connector`, dialling `host:port`
    /// and verifying the server's certificate for `host`.
    pub fn connector(&self, host: &str, port: u16) -> Result<Connector, TlsFileError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.ca).map_err(|e| file_error(&self.ca, e))? {
            let cert = cert.map_err(|e| file_error(&self.ca, e))?;
            roots.add(cert).map_err(|e| file_error(&self.ca, e))?;
        }
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsFileError::Rustls(e.to_string()))?
            .with_root_certificates(roots);
        let mut config = match &self.cert_and_key {
            Some((cert, key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .map_err(|e| file_error(cert, e))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| file_error(cert, e))?;
                let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| file_error(key, e))?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|e| file_error(key, e))?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| TlsFileError::Rustls(format!("{host}: {e}")))?;
        Ok(Connector {
            tls: TlsConnector::from(Arc::new(config)),
            name,
            address: format!("{host}:{port}"),
        })
    }
}

/// Dials flotilla over TLS for tonic.
#[derive(Clone)]
pub struct Connector {
    tls: TlsConnector,
    name: ServerName<'static>,
    address: String,
}

type Dialled = TokioIo<TlsStream<TcpStream>>;

impl tower_service::Service<http::Uri> for Connector {
    type Response = Dialled;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Dialled, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let tcp = TcpStream::connect(&this.address).await?;
            let _ = tcp.set_nodelay(true);
            let tls = this.tls.connect(this.name, tcp).await?;
            Ok(TokioIo::new(tls))
        })
    }
}
