//! TLS towards etcd (`--store-cacert`, `--store-cert`, `--store-key`, named like etcdctl's
//! `--cacert`, `--cert`, `--key`): rustls through tonic, files read once at start so that a
//! missing or malformed file stops `serve` with the file's name rather than failing each call.

use std::fmt;
use std::path::Path;

use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// What the TLS files held, checked to be PEM of the right kind.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreTls {
    /// CA certificates that sign etcd's server certificate; `None` trusts the system roots.
    ca: Option<Vec<u8>>,
    /// Client certificate chain and key, for etcd's `--client-cert-auth`.
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TlsFileError {
    #[error("--store-cert and --store-key go together (the certificate and its key)")]
    Unpaired,
    #[error("{flag} {path}: {message}")]
    File {
        flag: &'static str,
        path: String,
        message: String,
    },
}

impl StoreTls {
    /// `Ok(None)` when no file is given (plain HTTP/2 to etcd).
    pub fn load(
        ca: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<Option<StoreTls>, TlsFileError> {
        let identity = match (cert, key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some((
                read("--store-cert", cert, has_certificate)?,
                read("--store-key", key, has_key)?,
            )),
            _ => return Err(TlsFileError::Unpaired),
        };
        let ca = ca
            .map(|ca| read("--store-cacert", ca, has_certificate))
            .transpose()?;
        if ca.is_none() && identity.is_none() {
            return Ok(None);
        }
        Ok(Some(StoreTls { ca, identity }))
    }

    /// The rustls settings tonic connects to etcd with.
    pub fn client_config(&self) -> ClientTlsConfig {
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

impl fmt::Debug for StoreTls {
    // Never prints the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreTls")
            .field("ca", &self.ca.is_some())
            .field("client_certificate", &self.identity.is_some())
            .finish()
    }
}

fn read(
    flag: &'static str,
    path: &Path,
    check: fn(&[u8]) -> bool,
) -> Result<Vec<u8>, TlsFileError> {
    let err = |message: String| TlsFileError::File {
        flag,
        path: path.display().to_string(),
        message,
    };
    let bytes = crate::tls::read_pem_file(path).map_err(err)?;
    if !check(&bytes) {
        let what = if flag == "--store-key" {
            "PEM private key"
        } else {
            "PEM certificate"
        };
        return Err(err(format!("holds no {what}")));
    }
    Ok(bytes)
}

fn has_certificate(pem: &[u8]) -> bool {
    crate::tls::parse_chain(pem).is_ok()
}

fn has_key(pem: &[u8]) -> bool {
    crate::tls::parse_key(pem).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n";

    fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn no_file_is_plain_http() {
        assert_eq!(StoreTls::load(None, None, None), Ok(None));
    }

    #[test]
    fn a_ca_alone_or_a_pair_turns_tls_on() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = (file(dir.path(), "c", CERT), file(dir.path(), "k", KEY));
        assert!(StoreTls::load(Some(&c), None, None).unwrap().is_some());
        let both = StoreTls::load(None, Some(&c), Some(&k)).unwrap().unwrap();
        assert!(both.ca.is_none() && both.identity.is_some());
        assert_eq!(
            format!("{both:?}"),
            "StoreTls { ca: false, client_certificate: true }"
        );
    }

    #[test]
    fn bad_files_name_the_flag_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = (file(dir.path(), "c", CERT), file(dir.path(), "k", KEY));
        let junk = file(dir.path(), "junk", "hello");
        let missing = dir.path().join("missing");
        for (ca, cert, key, message) in [
            (
                None,
                Some(&c),
                None,
                "--store-cert and --store-key go together",
            ),
            (
                None,
                None,
                Some(&k),
                "--store-cert and --store-key go together",
            ),
            (Some(&junk), None, None, "--store-cacert"),
            (Some(&k), None, None, "holds no PEM certificate"),
            (None, Some(&c), Some(&c), "holds no PEM private key"),
            (Some(&missing), None, None, "No such file"),
        ] {
            let e = StoreTls::load(
                ca.map(|p| p.as_path()),
                cert.map(|p| p.as_path()),
                key.map(|p| p.as_path()),
            )
            .unwrap_err()
            .to_string();
            assert!(e.contains(message), "{e}");
        }
        let big = file(
            dir.path(),
            "big",
            &"x".repeat(crate::tls::MAX_PEM_BYTES as usize + 1),
        );
        let e = StoreTls::load(Some(&big), None, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("larger than the 1048576 bytes allowed"), "{e}");
    }
}
