//! TLS of flotilla's own clients: of the xDS port (`flotilla register --registry-ca …`, the
//! load generator) and of etcd (`serve --store-cacert/--store-cert/--store-key`). One reading
//! of the files (checked PEM, read once, so that a missing or malformed file is reported with
//! its name at start rather than failing each call), one rustls setup, one error type; the
//! same material drives a connector dialling one address and tonic's balanced channels.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use super::TlsFileError;

/// Where a client's TLS files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// The CA that signs the server's certificate; `None` trusts the system roots.
    pub ca: Option<PathBuf>,
    /// The client certificate and key (mTLS).
    pub cert_and_key: Option<(PathBuf, PathBuf)>,
}

impl ClientTls {
    /// Reads and checks the files, naming each by its path.
    pub fn load(&self) -> Result<ClientPem, TlsFileError> {
        let ca = self
            .ca
            .as_deref()
            .map(|ca| read(&ca.display().to_string(), ca, Kind::Certificate))
            .transpose()?;
        let identity = match &self.cert_and_key {
            Some((cert, key)) => Some((
                read(&cert.display().to_string(), cert, Kind::Certificate)?,
                read(&key.display().to_string(), key, Kind::Key)?,
            )),
            None => None,
        };
        Ok(ClientPem { ca, identity })
    }

    /// A connector dialling `host:port` (see [`ClientPem::connector`]).
    pub fn connector(&self, host: &str, port: u16) -> Result<Connector, TlsFileError> {
        self.load()?.connector(host, port)
    }
}

/// Command-line flags naming a client's TLS files, for errors that say which flag was wrong.
#[derive(Debug, Clone, Copy)]
pub struct ClientTlsFlags {
    pub ca: &'static str,
    pub cert: &'static str,
    pub key: &'static str,
}

/// What a client's TLS files held, checked to be PEM of the right kind.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientPem {
    ca: Option<Vec<u8>>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

enum Kind {
    Certificate,
    Key,
}

fn read(label: &str, path: &Path, kind: Kind) -> Result<Vec<u8>, TlsFileError> {
    let err = |message: String| TlsFileError::File {
        path: label.to_string(),
        message,
    };
    let bytes = super::read_pem_file(path).map_err(err)?;
    match kind {
        Kind::Certificate => super::parse_chain(&bytes)
            .map(drop)
            .map_err(|_| err("holds no PEM certificate".into()))?,
        Kind::Key => super::parse_key(&bytes)
            .map(drop)
            .map_err(|_| err("holds no PEM private key".into()))?,
    }
    Ok(bytes)
}

impl ClientPem {
    /// Reads the files given through `flags`; `Ok(None)` when none is given (no TLS). The
    /// certificate and key go together.
    pub fn load_flags(
        flags: ClientTlsFlags,
        ca: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<Option<ClientPem>, TlsFileError> {
        let label = |flag: &str, path: &Path| format!("{flag} {}", path.display());
        let identity = match (cert, key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some((
                read(&label(flags.cert, cert), cert, Kind::Certificate)?,
                read(&label(flags.key, key), key, Kind::Key)?,
            )),
            _ => {
                return Err(TlsFileError::Unpaired {
                    cert: flags.cert,
                    key: flags.key,
                });
            }
        };
        let ca = ca
            .map(|ca| read(&label(flags.ca, ca), ca, Kind::Certificate))
            .transpose()?;
        if ca.is_none() && identity.is_none() {
            return Ok(None);
        }
        Ok(Some(ClientPem { ca, identity }))
    }

    /// The rustls settings: the CA (or the system roots) and the client certificate, HTTP/2.
    pub fn rustls_config(&self) -> Result<ClientConfig, TlsFileError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        match &self.ca {
            Some(ca) => {
                for cert in
                    super::parse_chain(ca).map_err(|e| TlsFileError::Rustls(e.to_string()))?
                {
                    roots
                        .add(cert)
                        .map_err(|e| TlsFileError::Rustls(e.to_string()))?;
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(native.certs);
            }
        }
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsFileError::Rustls(e.to_string()))?
            .with_root_certificates(roots);
        let mut config = match &self.identity {
            Some((cert, key)) => {
                let chain =
                    super::parse_chain(cert).map_err(|e| TlsFileError::Rustls(e.to_string()))?;
                let key = super::parse_key(key).map_err(|e| TlsFileError::Rustls(e.to_string()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| TlsFileError::Rustls(e.to_string()))?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }

    /// A connector for tonic's `Endpoint::connect_with_connector`, dialling `host:port` and
    /// verifying the server's certificate for `host`.
    pub fn connector(&self, host: &str, port: u16) -> Result<Connector, TlsFileError> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| TlsFileError::Rustls(format!("{host}: {e}")))?;
        Ok(Connector {
            tls: TlsConnector::from(Arc::new(self.rustls_config()?)),
            name,
            address: format!("{host}:{port}"),
            source: None,
        })
    }

    /// The same settings for tonic's own connector (a channel balanced over several
    /// addresses, as towards the members of an etcd cluster).
    pub fn tonic_config(&self) -> tonic::transport::ClientTlsConfig {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        let mut config = ClientTlsConfig::new();
        config = match &self.ca {
            Some(ca) => config.ca_certificate(Certificate::from_pem(ca)),
            None => config.with_native_roots(),
        };
        if let Some((cert, key)) = &self.identity {
            config = config.identity(Identity::from_pem(cert, key));
        }
        config
    }
}

impl fmt::Debug for ClientPem {
    // Never prints the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientPem")
            .field("ca", &self.ca.is_some())
            .field("client_certificate", &self.identity.is_some())
            .finish()
    }
}

/// Dials flotilla over TLS for tonic.
#[derive(Clone)]
pub struct Connector {
    tls: TlsConnector,
    name: ServerName<'static>,
    address: String,
    /// The local address connections come from (`None`: the system picks).
    source: Option<std::net::IpAddr>,
}

impl Connector {
    /// Connections come from `ip`: the load generator gives each simulated host its own
    /// loopback address (127.0.0.0/8), as flotilla limits what one address may open.
    pub fn from_source(mut self, ip: std::net::IpAddr) -> Connector {
        self.source = Some(ip);
        self
    }
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
            let tcp = match this.source {
                None => TcpStream::connect(&this.address).await?,
                Some(ip) => connect_from(ip, &this.address).await?,
            };
            let _ = tcp.set_nodelay(true);
            let tls = this.tls.connect(this.name, tcp).await?;
            Ok(TokioIo::new(tls))
        })
    }
}

/// Connects to `address` from local address `ip` (any port).
async fn connect_from(ip: std::net::IpAddr, address: &str) -> std::io::Result<TcpStream> {
    let mut last = None;
    for to in tokio::net::lookup_host(address).await? {
        if to.is_ipv4() != ip.is_ipv4() {
            continue;
        }
        let socket = match ip {
            std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.bind(std::net::SocketAddr::new(ip, 0))?;
        match socket.connect(to).await {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::AddrNotAvailable,
            format!("{address} has no address of the family of {ip}"),
        )
    }))
}

#[cfg(test)]
mod tests;
