//! Workload identities of the mesh: the CA that signs them, the certificates flotilla mints,
//! and when each must be renewed.
//!
//! Envoy cannot make a certificate signing request, so flotilla generates each service's key
//! itself, in memory: it is never written, logged, shown or persisted, and reaches only the
//! sidecars of that service, as an SDS Secret (see `translate::mesh`). A certificate names
//! its service in one URI SAN, `spiffe://<trust-domain>/service/<name>`, and is renewed at
//! half its lifetime, so a sidecar always holds one with time to spare.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls_pki_types::CertificateDer;

use crate::tls::{PrivateKeyPem, TlsError, describe, fingerprint, parse_chain, parse_key};

/// CA certificates in `--mesh-ca-cert` at most (the signer and those kept during a rotation).
pub const MAX_BUNDLE: usize = 16;
/// How long before "now" a certificate's validity starts: a sidecar's clock may lag.
const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// `spiffe://<trust_domain>/service/<service>`: a workload's identity.
pub fn service_id(trust_domain: &str, service: &str) -> String {
    format!("spiffe://{trust_domain}/service/{service}")
}

/// Why the mesh CA cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MeshCaError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Tls {
        path: PathBuf,
        #[source]
        source: TlsError,
    },
    #[error(
        "{path}: the first certificate is not a CA (basicConstraints CA:TRUE); it signs the workload certificates"
    )]
    NotCa { path: PathBuf },
    #[error("{cert}: more than {MAX_BUNDLE} certificates")]
    TooMany { cert: PathBuf },
    #[error(
        "{key} is not the key of the first certificate in {cert} (the CA that signs workload certificates)"
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error(
        "{key}: rcgen cannot sign with this key ({message}); use a PKCS#8 ECDSA P-256/P-384, Ed25519 or RSA key as `flotilla certs ca` writes"
    )]
    Unusable { key: PathBuf, message: String },
}

/// The CA that signs workload certificates, and the trust bundle sidecars check peers against.
pub struct MeshCa {
    /// Every certificate of `--mesh-ca-cert`: the signer first, then CAs still trusted during a
    /// rotation. Sent to every sidecar.
    pub bundle_pem: Vec<u8>,
    /// SHA-256 of the signer: a leaf issued by another signer is re-issued at once.
    pub signer: String,
    issuer: Certificate,
    key: KeyPair,
}

impl std::fmt::Debug for MeshCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshCa")
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

impl MeshCa {
    /// Reads `--mesh-ca-cert` (the signer first, other trusted CAs after) and `--mesh-ca-key`
    /// (the signer's key), and checks that they belong together.
    pub fn load(cert: &Path, key: &Path) -> Result<MeshCa, MeshCaError> {
        let read = |path: &Path| {
            crate::tls::read_pem_file(path).map_err(|message| MeshCaError::File {
                path: path.to_path_buf(),
                message,
            })
        };
        let (bundle_pem, key_pem) = (read(cert)?, read(key)?);
        MeshCa::from_pem(bundle_pem, &key_pem, cert, key)
    }

    /// [`MeshCa::load`] on PEM already read (`cert`, `key` name them in errors).
    pub fn from_pem(
        bundle_pem: Vec<u8>,
        key_pem: &[u8],
        cert: &Path,
        key: &Path,
    ) -> Result<MeshCa, MeshCaError> {
        let tls = |path: &Path| {
            let path = path.to_path_buf();
            move |source| MeshCaError::Tls { path, source }
        };
        let chain = parse_chain(&bundle_pem).map_err(tls(cert))?;
        if chain.len() > MAX_BUNDLE {
            return Err(MeshCaError::TooMany {
                cert: cert.to_path_buf(),
            });
        }
        let signer_der = chain[0].clone();
        if !describe(&signer_der, 0).map_err(tls(cert))?.is_ca {
            return Err(MeshCaError::NotCa {
                path: cert.to_path_buf(),
            });
        }
        let private = parse_key(key_pem).map_err(tls(key))?;
        crate::tls::check_pair(std::slice::from_ref(&signer_der), &private).map_err(
            |e| match e {
                TlsError::KeyMismatch { .. } => MeshCaError::KeyMismatch {
                    cert: cert.to_path_buf(),
                    key: key.to_path_buf(),
                },
                other => MeshCaError::Tls {
                    path: key.to_path_buf(),
                    source: other,
                },
            },
        )?;
        let unusable = |e: rcgen::Error| MeshCaError::Unusable {
            key: key.to_path_buf(),
            message: e.to_string(),
        };
        let key_text = std::str::from_utf8(key_pem).map_err(|e| MeshCaError::Unusable {
            key: key.to_path_buf(),
            message: e.to_string(),
        })?;
        let key_pair = KeyPair::from_pem(key_text).map_err(unusable)?;
        // rcgen signs as the CA whose name and key these are; the re-signed copy is only
        // ever used as the issuer's description, never sent anywhere.
        let issuer = CertificateParams::from_ca_cert_der(&CertificateDer::from(
            signer_der.as_ref().to_vec(),
        ))
        .and_then(|p| p.self_signed(&key_pair))
        .map_err(unusable)?;
        Ok(MeshCa {
            bundle_pem,
            signer: fingerprint(signer_der.as_ref()),
            issuer,
            key: key_pair,
        })
    }

    /// Mints the certificate of `service`, valid from a little before `now` for `ttl`, with a
    /// new key generated in memory.
    pub fn mint(
        &self,
        trust_domain: &str,
        service: &str,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<WorkloadCert, rcgen::Error> {
        let id = service_id(trust_domain, service);
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, service);
        params.subject_alt_names = vec![SanType::URI(id.clone().try_into()?)];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        // Each sidecar is a server on its inbound listener and a client on its calls.
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = (now - CLOCK_SKEW).into();
        params.not_after = (now + ttl).into();
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer, &self.key)?;
        Ok(WorkloadCert {
            spiffe_id: id,
            cert_pem: cert.pem().into_bytes(),
            key: PrivateKeyPem::new(key.serialize_pem().into_bytes()),
            sha256: fingerprint(cert.der()),
            issued_at: unix(now),
            not_after: unix(now + ttl),
            signer: self.signer.clone(),
        })
    }
}

/// One service's certificate and key, as flotilla minted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadCert {
    pub spiffe_id: String,
    pub cert_pem: Vec<u8>,
    /// Redacted in `Debug`; exposed only to make the SDS Secret.
    pub key: PrivateKeyPem,
    pub sha256: String,
    /// Unix seconds.
    pub issued_at: i64,
    pub not_after: i64,
    /// SHA-256 of the CA that signed it.
    pub signer: String,
}

impl WorkloadCert {
    /// When it is due for renewal: half-way through its life (Unix seconds).
    pub fn renew_at(&self) -> i64 {
        self.issued_at + (self.not_after - self.issued_at) / 2
    }
}

/// What the translation needs of the mesh's identities: an input like health verdicts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MeshIdentities {
    /// The trust domain the certificates were minted in (the config's, else serve's).
    pub trust_domain: String,
    /// PEM of every trusted mesh CA.
    pub bundle_pem: Vec<u8>,
    pub workloads: BTreeMap<String, WorkloadCert>,
}

/// Why a service's certificate must be (re-)issued now, if it must.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// No certificate yet.
    Missing,
    /// Half its lifetime has passed.
    HalfLife,
    /// Another CA signs now (a CA rotation).
    NewSigner,
    /// The configured lifetime or trust domain changed.
    Changed,
}

impl Renewal {
    pub fn label(self) -> &'static str {
        match self {
            Renewal::Missing => "new",
            Renewal::HalfLife => "half_life",
            Renewal::NewSigner => "new_signer",
            Renewal::Changed => "changed",
        }
    }
}

/// Whether `held` (the certificate of a service, if any) must be re-issued at `now` (Unix
/// seconds), with `signer` signing, `ttl` configured, in `trust_domain`. Pure: the rules are
/// tested one by one.
pub fn renewal(
    held: Option<&WorkloadCert>,
    signer: &str,
    ttl: Duration,
    trust_domain: &str,
    service: &str,
    now: i64,
) -> Option<Renewal> {
    let Some(c) = held else {
        return Some(Renewal::Missing);
    };
    if c.signer != signer {
        return Some(Renewal::NewSigner);
    }
    let lifetime = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
    if c.not_after - c.issued_at != lifetime || c.spiffe_id != service_id(trust_domain, service) {
        return Some(Renewal::Changed);
    }
    (now >= c.renew_at()).then_some(Renewal::HalfLife)
}

/// Unix seconds.
pub fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;
