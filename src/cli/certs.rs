//! `flotilla certs`: a local CA, a server certificate for the xDS port, and client
//! certificates carrying SPIFFE IDs, so that mTLS can be tried in two commands. Production
//! brings its own CA (cert-manager, SPIRE, Vault) writing the same SAN format.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

use flotilla::identity::{DEFAULT_TRUST_DOMAIN, spiffe_id};

use super::tls_args::parse_trust_domain;

/// A local CA's lifetime, and a certificate's: long enough to try things, short enough not
/// to be mistaken for production material.
const CA_DAYS: u64 = 3650;
const LEAF_DAYS: u64 = 365;
/// Longest fleet or node name in a SPIFFE ID path segment.
const MAX_NAME: usize = 128;
/// `--san` values at most.
const MAX_SANS: usize = 32;

#[derive(clap::Subcommand, Debug)]
pub(crate) enum CertsCommand {
    /// Create a CA: DIR/ca.pem and DIR/ca.key (refuses to overwrite an existing CA).
    Ca {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Issue the xDS port's certificate: DIR/server.pem and DIR/server.key.
    Server {
        /// The directory holding ca.pem and ca.key.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// A DNS name or IP address clients reach flotilla by (repeatable).
        #[arg(long = "san", required = true, value_name = "NAME")]
        sans: Vec<String>,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Issue a client certificate for a fleet (any node of it) or one node:
    /// DIR/<fleet>[-<node>].pem and .key, with URI SAN spiffe://<trust-domain>/fleet/<fleet>[/node/<node>].
    Issue {
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        #[arg(long, value_parser = parse_name)]
        fleet: String,
        #[arg(long, value_parser = parse_name)]
        node: Option<String>,
        #[arg(long, default_value = DEFAULT_TRUST_DOMAIN, value_parser = parse_trust_domain)]
        trust_domain: String,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

pub(crate) fn run(command: CertsCommand) -> anyhow::Result<std::process::ExitCode> {
    let written = match command {
        CertsCommand::Ca { out } => ca(&out)?,
        CertsCommand::Server { ca, sans, out } => server(&ca, &sans, &out)?,
        CertsCommand::Issue {
            ca,
            fleet,
            node,
            trust_domain,
            out,
        } => issue(&ca, &fleet, node.as_deref(), &trust_domain, &out)?,
    };
    tracing::info!(cert = %written.display(), "written");
    Ok(std::process::ExitCode::SUCCESS)
}

/// A fleet or node name usable as a SPIFFE path segment.
fn parse_name(text: &str) -> Result<String, String> {
    if text.is_empty() || text.len() > MAX_NAME {
        return Err(format!("must be 1 to {MAX_NAME} bytes"));
    }
    if let Some(c) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        return Err(format!(
            "{c:?} cannot be part of a SPIFFE ID (letters, digits, '.', '-', '_')"
        ));
    }
    if text == "." || text == ".." {
        return Err("'.' and '..' cannot be SPIFFE ID segments".into());
    }
    Ok(text.to_string())
}

fn validity(params: &mut CertificateParams, days: u64) {
    let now = SystemTime::now();
    params.not_before = (now - Duration::from_secs(3600)).into();
    params.not_after = (now + Duration::from_secs(days * 86_400)).into();
}

fn write(dir: &Path, name: &str, cert: &Certificate, key: &KeyPair) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let pem = dir.join(format!("{name}.pem"));
    std::fs::write(&pem, cert.pem()).with_context(|| format!("write {}", pem.display()))?;
    let key_path = dir.join(format!("{name}.key"));
    write_private(&key_path, key.serialize_pem().as_bytes())?;
    Ok(pem)
}

/// Writes a key readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("write {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("write {}", path.display()))
}

pub(crate) fn ca(out: &Path) -> anyhow::Result<PathBuf> {
    if out.join("ca.key").exists() {
        bail!(
            "{}: a CA already exists; remove it first to make a new one (every certificate it issued stops working)",
            out.join("ca.key").display()
        );
    }
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "flotilla local CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut params, CA_DAYS);
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    write(out, "ca", &cert, &key)
}

/// The CA of `dir`, ready to sign.
fn load_ca(dir: &Path) -> anyhow::Result<(Certificate, KeyPair)> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).with_context(|| {
            format!(
                "read {} (create a CA with `flotilla certs ca --out DIR`)",
                path.display()
            )
        })
    };
    let key = KeyPair::from_pem(&read("ca.key")?).context("ca.key is not a usable key")?;
    let params =
        CertificateParams::from_ca_cert_pem(&read("ca.pem")?).context("ca.pem is not a CA")?;
    let cert = params.self_signed(&key)?;
    Ok((cert, key))
}

fn leaf(
    ca_dir: &Path,
    name: &str,
    sans: Vec<SanType>,
    usage: ExtendedKeyUsagePurpose,
    out: &Path,
) -> anyhow::Result<PathBuf> {
    let (ca, ca_key) = load_ca(ca_dir)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.subject_alt_names = sans;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, LEAF_DAYS);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca, &ca_key)?;
    write(out, name, &cert, &key)
}

pub(crate) fn server(ca: &Path, names: &[String], out: &Path) -> anyhow::Result<PathBuf> {
    if names.len() > MAX_SANS {
        bail!("--san: at most {MAX_SANS}");
    }
    let mut sans = Vec::new();
    for n in names {
        sans.push(match n.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                n.clone()
                    .try_into()
                    .with_context(|| format!("--san {n}: not a DNS name or IP address"))?,
            ),
        });
    }
    leaf(ca, "server", sans, ExtendedKeyUsagePurpose::ServerAuth, out)
}

pub(crate) fn issue(
    ca: &Path,
    fleet: &str,
    node: Option<&str>,
    trust_domain: &str,
    out: &Path,
) -> anyhow::Result<PathBuf> {
    let id = spiffe_id(trust_domain, fleet, node);
    let name = match node {
        Some(n) => format!("{fleet}-{n}"),
        None => fleet.to_string(),
    };
    let san = SanType::URI(
        id.clone()
            .try_into()
            .with_context(|| format!("{id}: not a URI"))?,
    );
    leaf(
        ca,
        &name,
        vec![san],
        ExtendedKeyUsagePurpose::ClientAuth,
        out,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla::identity::{IdentityRules, PeerCert};

    #[test]
    fn names_must_be_spiffe_path_segments() {
        assert!(parse_name("edge-1.eu_west").is_ok());
        for bad in ["", "a/b", "..", "é", &"x".repeat(129)] {
            assert!(parse_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_ca_issues_server_and_client_certificates_with_spiffe_ids() {
        let dir = tempfile::tempdir().unwrap();
        ca(dir.path()).unwrap();
        let again = ca(dir.path()).unwrap_err().to_string();
        assert!(again.contains("a CA already exists"), "{again}");
        server(
            dir.path(),
            &["127.0.0.1".into(), "xds.local".into()],
            dir.path(),
        )
        .unwrap();
        let pem = issue(dir.path(), "edge", Some("e1"), "flotilla.local", dir.path()).unwrap();
        assert_eq!(pem, dir.path().join("edge-e1.pem"));
        let der = rustls_pem(&pem);
        let peer = PeerCert::from_der(&der, &IdentityRules::spiffe("flotilla.local"));
        assert_eq!(peer.sans, ["spiffe://flotilla.local/fleet/edge/node/e1"]);
        assert!(peer.allowing("edge", "e1").is_some());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("edge-e1.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    fn rustls_pem(path: &Path) -> Vec<u8> {
        use tokio_rustls::rustls::pki_types::CertificateDer;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_file(path).unwrap().to_vec()
    }
}
