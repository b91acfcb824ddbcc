//! `--tls`: the benchmark over mTLS. A CA made for the run signs flotilla's certificate and one
//! client certificate per fleet (an SVID carries exactly one SPIFFE ID, and flotilla refuses a
//! certificate with several), so each connection carries the streams of one fleet.

use std::path::Path;

use anyhow::{Context, Result};
use flotilla::identity::spiffe_id;
use flotilla::tls::ClientTls;
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType};

/// The run's certificates: `serve` flags, and what the streams present.
pub(crate) struct Pki {
    pub(crate) serve_flags: Vec<String>,
    /// The run's CA (certificate, key): `mesh` has it sign workload certificates too.
    pub(crate) ca: (std::path::PathBuf, std::path::PathBuf),
    /// One per fleet, in the order of the fleets given to [`Pki::create`].
    pub(crate) clients: Vec<ClientTls>,
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
        let ca_path = write("ca.pem", ca.pem())?;
        let mut clients = Vec::with_capacity(fleets.len());
        for (i, fleet) in fleets.iter().enumerate() {
            let id = SanType::URI(spiffe_id("flotilla.local", fleet, None).try_into()?);
            let (client, client_key) = leaf(vec![id], ExtendedKeyUsagePurpose::ClientAuth)?;
            clients.push(ClientTls {
                ca: ca_path.clone(),
                cert_and_key: Some((
                    write(&format!("client-{i}.pem"), client)?,
                    write(&format!("client-{i}.key"), client_key)?,
                )),
            });
        }
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
            clients,
            ca: (ca_path, write("ca.key", ca_key.serialize_pem())?),
        })
    }
}
