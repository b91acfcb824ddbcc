//! `--tls`: the benchmark over mTLS. A CA made for the run signs flotilla's certificate and one
//! client certificate carrying every fleet's SPIFFE ID (connections multiplex streams of
//! several fleets, as the plaintext runs do).

use std::path::Path;

use anyhow::{Context, Result};
use flotilla::tls::ClientTls;
use flotilla::xds::tls::spiffe_id;
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType};

/// The run's certificates: `serve` flags, and what the streams present.
pub(crate) struct Pki {
    pub(crate) serve_flags: Vec<String>,
    pub(crate) client: ClientTls,
}

impl Pki {
    pub(crate) fn create(dir: &Path, fleets: &[String]) -> Result<Pki> {
        let write = |name: &str, text: String| -> Result<std::path::PathBuf> {
            let path = dir.join(name);
            std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
            Ok(path)
        };
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate()?;
        let ca = ca.self_signed(&ca_key)?;
        let leaf =
            |sans: Vec<SanType>, usage: ExtendedKeyUsagePurpose| -> Result<(String, String)> {
                let mut params = CertificateParams::new(Vec::<String>::new())?;
                params.subject_alt_names = sans;
                params.extended_key_usages = vec![usage];
                let key = KeyPair::generate()?;
                let cert = params.signed_by(&key, &ca, &ca_key)?;
                Ok((cert.pem(), key.serialize_pem()))
            };
        let (server, server_key) = leaf(
            vec![SanType::IpAddress([127, 0, 0, 1].into())],
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        let ids = fleets
            .iter()
            .map(|f| -> Result<SanType> {
                Ok(SanType::URI(
                    spiffe_id("flotilla.local", f, None).try_into()?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let (client, client_key) = leaf(ids, ExtendedKeyUsagePurpose::ClientAuth)?;
        let ca_path = write("ca.pem", ca.pem())?;
        let flag = |p: std::path::PathBuf| p.display().to_string();
        Ok(Pki {
            serve_flags: vec![
                "--xds-tls-cert".into(),
                flag(write("server.pem", server)?),
                "--xds-tls-key".into(),
                flag(write("server.key", server_key)?),
                "--xds-client-ca".into(),
                flag(ca_path.clone()),
            ],
            client: ClientTls {
                ca: Some(ca_path),
                cert_and_key: Some((
                    write("client.pem", client)?,
                    write("client.key", client_key)?,
                )),
            },
        })
    }
}
