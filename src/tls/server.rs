//! A listening port's rustls configuration (the xDS port, the admin API), read from PEM files
//! and read again when they change: new connections get the new certificate and client CA,
//! open streams keep theirs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// How often the files are compared with what was loaded.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// Where a port's TLS material lives (`serve --xds-tls-cert/--xds-tls-key/--xds-client-ca`,
/// `--admin-tls-cert/--admin-tls-key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// With a client CA every connection must present a certificate chaining to it (mTLS),
    /// and its SPIFFE ID bounds what the streams on it may claim.
    pub client_ca: Option<PathBuf>,
}

use super::TlsFileError;

fn file_error(path: &Path, message: impl ToString) -> TlsFileError {
    TlsFileError::File {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsFileError> {
    super::read_pem_file(path).map_err(|e| file_error(path, e))
}

fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    super::parse_chain(pem).map_err(|e| file_error(path, e))
}

/// The contents the current configuration was built from.
type Loaded = [Vec<u8>; 3];

fn contents(files: &TlsFiles) -> Result<Loaded, TlsFileError> {
    Ok([
        read(&files.cert)?,
        read(&files.key)?,
        match &files.client_ca {
            Some(ca) => read(ca)?,
            None => Vec::new(),
        },
    ])
}

fn build(
    files: &TlsFiles,
    alpn: &[Vec<u8>],
    loaded: &Loaded,
) -> Result<ServerConfig, TlsFileError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates(&files.cert, &loaded[0])?;
    let key = super::parse_key(&loaded[1]).map_err(|e| file_error(&files.key, e))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsFileError::Rustls(e.to_string()))?;
    let builder = match &files.client_ca {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(path, &loaded[2])? {
                roots
                    .add(cert)
                    .map_err(|e| file_error(path, format!("not a usable CA: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| file_error(path, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| file_error(&files.key, format!("does not match the certificate: {e}")))?;
    config.alpn_protocols = alpn.to_vec();
    Ok(config)
}

/// The configuration new connections are accepted with.
pub struct ServerTls {
    files: TlsFiles,
    alpn: Vec<Vec<u8>>,
    current: RwLock<Arc<ServerConfig>>,
    loaded: Mutex<Loaded>,
}

impl ServerTls {
    /// Reads the files; an error here stops `serve` from starting. `alpn`: the protocols
    /// offered (`h2` for gRPC, `http/1.1` for the admin API).
    pub fn load(files: TlsFiles, alpn: &[&[u8]]) -> Result<Arc<ServerTls>, TlsFileError> {
        let alpn: Vec<Vec<u8>> = alpn.iter().map(|p| p.to_vec()).collect();
        let loaded = contents(&files)?;
        let config = build(&files, &alpn, &loaded)?;
        Ok(Arc::new(ServerTls {
            files,
            alpn,
            current: RwLock::new(Arc::new(config)),
            loaded: Mutex::new(loaded),
        }))
    }

    /// Whether client certificates are required (and bound to identities).
    pub fn mutual(&self) -> bool {
        self.files.client_ca.is_some()
    }

    pub(crate) fn config(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Rebuilds the configuration if a file changed. A broken file (half-written, mismatched
    /// key) is reported and the last good configuration stays in use. Returns whether the
    /// configuration was replaced.
    pub fn reload_if_changed(&self) -> Result<bool, TlsFileError> {
        let now = contents(&self.files)?;
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if *loaded == now {
            return Ok(false);
        }
        let config = build(&self.files, &self.alpn, &now)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        *loaded = now;
        Ok(true)
    }

    /// Checks the files every second until shutdown.
    pub async fn watch(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(RELOAD_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let this = self.clone();
            let result = tokio::task::spawn_blocking(move || this.reload_if_changed()).await;
            match result {
                Ok(Ok(true)) => {
                    failing = false;
                    info!(cert = %self.files.cert.display(), "TLS certificate or client CA changed: new connections use it");
                }
                Ok(Ok(false)) => failing = false,
                Ok(Err(e)) => {
                    if !failing {
                        error!(error = %e, "cannot reload the TLS files; still using the last good ones");
                    }
                    failing = true;
                }
                Err(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA, and a server certificate for `name` signed by it, written to `dir`.
    fn write_pki(dir: &Path, name: &str) {
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = ca.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    }

    fn files(dir: &Path) -> TlsFiles {
        TlsFiles {
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            client_ca: Some(dir.join("ca.pem")),
        }
    }

    #[test]
    fn changed_files_replace_the_configuration_and_broken_ones_keep_the_last_good() {
        let dir = tempfile::tempdir().unwrap();
        write_pki(dir.path(), "one.example");
        let tls = ServerTls::load(files(dir.path()), &[b"h2"]).unwrap();
        assert!(tls.mutual());
        let first = tls.config();
        assert!(!tls.reload_if_changed().unwrap(), "nothing changed");
        assert!(Arc::ptr_eq(&first, &tls.config()));

        write_pki(dir.path(), "two.example");
        assert!(tls.reload_if_changed().unwrap());
        let second = tls.config();
        assert!(!Arc::ptr_eq(&first, &second));

        // A key that does not match the certificate (a half-done rotation) is refused.
        std::fs::write(
            dir.path().join("server.key"),
            rcgen::KeyPair::generate().unwrap().serialize_pem(),
        )
        .unwrap();
        let e = tls.reload_if_changed().unwrap_err().to_string();
        assert!(e.contains("server.key"), "{e}");
        assert!(Arc::ptr_eq(&second, &tls.config()));
    }

    #[test]
    fn unreadable_material_is_named_by_its_file() {
        let dir = tempfile::tempdir().unwrap();
        write_pki(dir.path(), "one.example");
        std::fs::write(dir.path().join("ca.pem"), "not pem").unwrap();
        let e = ServerTls::load(files(dir.path()), &[b"h2"])
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("ca.pem") && e.contains("no PEM certificate"),
            "{e}"
        );
        std::fs::write(dir.path().join("server.pem"), vec![b'a'; 2 * 1024 * 1024]).unwrap();
        let e = ServerTls::load(files(dir.path()), &[b"h2"])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("larger than"), "{e}");
    }
}
