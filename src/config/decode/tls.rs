//! `listeners.<name>.tls` and `clusters.<name>.tls`: certificate files are read and checked
//! here, relative to the YAML file naming them, so that a bad certificate is refused like
//! bad YAML and the last good configuration keeps being served.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rustls_pki_types::CertificateDer;

use crate::config::diagnostic::Sink;
use crate::config::load::read_capped;
use crate::config::model::{
    ListenerTls, SecretMaterial, Secrets, TlsVersion, TrustedCa, UpstreamTls, VirtualHost,
    ca_secret_name, certificate_secret_name,
};
use crate::config::reader::{self, Fields};
use crate::config::shape::{Kind, Object, object, optional, required};
use crate::config::yaml::Node;
use crate::tls::{self, PrivateKeyPem, TlsError};

/// Certificates per listener at most (Envoy picks among them by SNI).
pub const MAX_CERTIFICATES: usize = 64;
/// The most flotilla reads from one certificate, key or CA file.
pub use crate::tls::MAX_PEM_BYTES;

/// TLS versions a listener may require at least.
const VERSIONS: &[&str] = &["1.2", "1.3"];

pub(crate) const LISTENER_TLS: Object = object(
    "listener_tls",
    "TLS termination: certificates Envoy presents (served over SDS), client certificates.",
    &[
        required(
            "certificates",
            Kind::List(&Kind::Object(&CERTIFICATE)),
            "1 to 64 certificates; Envoy picks one by SNI, the first by default.",
        ),
        optional(
            "min_version",
            Kind::Enum(VERSIONS),
            "Lowest TLS version accepted (default \"1.2\").",
        )
        .defaults_to("\"1.2\""),
        optional(
            "client_ca",
            Kind::NonEmpty,
            "PEM file of the CA client certificates must chain to (mTLS).",
        ),
        optional(
            "require_client_cert",
            Kind::Bool,
            "With client_ca: refuse clients without a certificate (default true).",
        )
        .defaults_to("true"),
    ],
);

const CERTIFICATE: Object = object(
    "certificate",
    "A certificate and its key, PEM files relative to the YAML file (watched for rotation).",
    &[
        required("cert", Kind::NonEmpty, "The full chain, leaf first."),
        required("key", Kind::NonEmpty, "The private key of the leaf."),
    ],
);

pub(crate) const UPSTREAM_TLS: Object = object(
    "upstream_tls",
    "TLS from Envoy (and flotilla's health probes) to the endpoints.",
    &[
        optional(
            "sni",
            Kind::NonEmpty,
            "Server name sent, and required in the endpoint's certificate.",
        ),
        optional(
            "ca",
            Kind::NonEmpty,
            "PEM file of the CA the endpoint's certificate chains to, or `system` (default).",
        )
        .defaults_to("system"),
        optional(
            "cert",
            Kind::NonEmpty,
            "Client certificate (mTLS to the backend).",
        ),
        optional("key", Kind::NonEmpty, "Its private key."),
    ],
);

pub(crate) fn listener_tls(
    sink: &mut Sink,
    node: &Node,
    path: &str,
    secrets: &mut Secrets,
) -> Option<ListenerTls> {
    let f = Fields::read(sink, node, path, &LISTENER_TLS)?;
    let certificates = match f.get("certificates") {
        Some(n) => certificates(sink, n, &f.path("certificates"), secrets),
        None => {
            sink.error(node, path, "missing field `certificates`");
            None
        }
    };
    let min_version = match f.get("min_version") {
        None => Some(TlsVersion::V1_2),
        Some(n) => match n.as_str() {
            Some("1.2") => Some(TlsVersion::V1_2),
            Some("1.3") => Some(TlsVersion::V1_3),
            _ => {
                sink.error(n, &f.path("min_version"), "expected \"1.2\" or \"1.3\"");
                None
            }
        },
    };
    let client_ca = match f.get("client_ca") {
        Some(n) => ca(sink, n, &f.path("client_ca"), secrets).map(Some),
        None => Some(None),
    };
    let require_client_cert = match f.get("require_client_cert") {
        Some(n) => {
            let required = reader::boolean(sink, n, &f.path("require_client_cert"));
            if required == Some(true) && f.get("client_ca").is_none() {
                sink.error(
                    n,
                    &f.path("require_client_cert"),
                    "needs `client_ca`: the CA that client certificates must chain to",
                );
                return None;
            }
            required
        }
        // Verifying client certificates is asked for by naming a CA; optional only if said.
        None => Some(f.get("client_ca").is_some()),
    };
    Some(ListenerTls {
        certificates: certificates?,
        min_version: min_version?,
        client_ca: client_ca?,
        require_client_cert: require_client_cert?,
    })
}

pub(crate) fn upstream_tls(
    sink: &mut Sink,
    node: &Node,
    path: &str,
    secrets: &mut Secrets,
) -> Option<UpstreamTls> {
    let f = Fields::read(sink, node, path, &UPSTREAM_TLS)?;
    let sni = match f.get("sni") {
        Some(n) => reader::non_empty_string(sink, n, &f.path("sni")).map(Some),
        None => Some(None),
    };
    let ca = match f.get("ca") {
        None => Some(TrustedCa::System),
        Some(n) if n.as_str() == Some("system") => Some(TrustedCa::System),
        Some(n) => ca(sink, n, &f.path("ca"), secrets).map(TrustedCa::Secret),
    };
    let client_certificate = match (f.get("cert"), f.get("key")) {
        (None, None) => Some(None),
        (Some(_), Some(_)) => pair(sink, &f, secrets).map(Some),
        _ => {
            sink.error(
                node,
                path,
                "give both `cert` and `key` (a client certificate for mTLS), or neither",
            );
            None
        }
    };
    Some(UpstreamTls {
        sni: sni?,
        ca: ca?,
        client_certificate: client_certificate?,
    })
}

/// Reports every domain of `hosts` that no certificate of `tls` is valid for. `*` (any host)
/// and `prefix.*` cannot be checked against a certificate and are left out.
pub(crate) fn check_coverage(
    sink: &mut Sink,
    node: &Node,
    path: &str,
    tls: &ListenerTls,
    hosts: &[VirtualHost],
    secrets: &Secrets,
) {
    let leaves: Vec<(CertificateDer<'static>, &Path)> = tls
        .certificates
        .iter()
        .filter_map(|name| secrets.get(name))
        .filter_map(|s| {
            let chain = tls::parse_chain(&s.cert_pem).ok()?;
            Some((chain.into_iter().next()?, s.cert_path.as_path()))
        })
        .collect();
    for host in hosts {
        for domain in &host.domains {
            if domain == "*" || domain.ends_with(".*") {
                continue;
            }
            if !leaves.iter().any(|(leaf, _)| tls::covers(leaf, domain)) {
                let files: Vec<String> = leaves
                    .iter()
                    .map(|(_, p)| p.display().to_string())
                    .collect();
                sink.error(
                    node,
                    &format!("{path}.certificates"),
                    format!(
                        "no certificate covers `{domain}` (host `{}`): {} has no subjectAltName for it",
                        host.name,
                        files.join(", ")
                    ),
                );
            }
        }
    }
}

fn certificates(
    sink: &mut Sink,
    node: &Node,
    path: &str,
    secrets: &mut Secrets,
) -> Option<Vec<String>> {
    let items = reader::list(sink, node, path)?;
    if items.is_empty() || items.len() > MAX_CERTIFICATES {
        sink.error(
            node,
            path,
            format!("a TLS listener needs 1 to {MAX_CERTIFICATES} certificates"),
        );
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let ipath = format!("{path}[{i}]");
        let Some(f) = Fields::read(sink, item, &ipath, &CERTIFICATE) else {
            ok = false;
            continue;
        };
        if f.get("cert").is_none() || f.get("key").is_none() {
            sink.error(
                item,
                &ipath,
                "a certificate needs `cert` and `key` (PEM files)",
            );
            ok = false;
            continue;
        }
        match pair(sink, &f, secrets) {
            Some(name) if !out.contains(&name) => out.push(name),
            Some(_) => {
                sink.error(item, &ipath, "this certificate is listed twice");
                ok = false;
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// `cert` + `key`: read, checked as a pair, registered as a Secret; its name.
fn pair(sink: &mut Sink, f: &Fields<'_>, secrets: &mut Secrets) -> Option<String> {
    let (cert_node, key_node) = (f.get("cert")?, f.get("key")?);
    let cert = file(sink, cert_node, &f.path("cert"), Holds::Certificates);
    let key = file(sink, key_node, &f.path("key"), Holds::Key);
    let ((cert_path, cert_pem), (key_path, key_pem)) = (cert?, key?);
    let name = certificate_secret_name(&cert_path);
    if let Some(known) = secrets.get(&name) {
        if known.key.as_ref().map(|(p, _)| p) != Some(&key_path) {
            sink.error(
                key_node,
                &f.path("key"),
                format!(
                    "{} is used with another key elsewhere; a certificate file has one key",
                    cert_path.display()
                ),
            );
            return None;
        }
        return Some(name);
    }
    let checked = tls::parse_chain(&cert_pem).and_then(|chain| {
        let key = tls::parse_key(&key_pem)?;
        tls::check_pair(&chain, &key)?;
        describe_all(&chain)
    });
    let certificates = match checked {
        Ok(c) => c,
        Err(e @ (TlsError::NoKey | TlsError::BadKey(_))) => {
            sink.error(
                key_node,
                &f.path("key"),
                format!("{}: {e}", key_path.display()),
            );
            return None;
        }
        Err(e) => {
            sink.error(
                cert_node,
                &f.path("cert"),
                format!("{} (key {}): {e}", cert_path.display(), key_path.display()),
            );
            return None;
        }
    };
    if let Err(e) = currently_valid(&certificates[0]) {
        sink.error(
            cert_node,
            &f.path("cert"),
            format!("{}: {e}", cert_path.display()),
        );
        return None;
    }
    secrets.insert(
        name.clone(),
        SecretMaterial {
            cert_path,
            cert_pem,
            key: Some((key_path, PrivateKeyPem::new(key_pem))),
            certificates,
        },
    );
    Some(name)
}

/// A CA bundle file, registered as a Secret; its name.
pub(crate) fn ca(
    sink: &mut Sink,
    node: &Node,
    path: &str,
    secrets: &mut Secrets,
) -> Option<String> {
    let (ca_path, pem) = file(sink, node, path, Holds::Certificates)?;
    let name = ca_secret_name(&ca_path);
    if secrets.contains_key(&name) {
        return Some(name);
    }
    let certificates = match tls::parse_chain(&pem).and_then(|c| describe_all(&c)) {
        Ok(c) => c,
        Err(e) => {
            sink.error(node, path, format!("{}: {e}", ca_path.display()));
            return None;
        }
    };
    secrets.insert(
        name.clone(),
        SecretMaterial {
            cert_path: ca_path,
            cert_pem: pem,
            key: None,
            certificates,
        },
    );
    Some(name)
}

fn describe_all(chain: &[CertificateDer<'static>]) -> Result<Vec<tls::CertificateInfo>, TlsError> {
    chain
        .iter()
        .enumerate()
        .map(|(i, c)| tls::describe(c, i))
        .collect()
}

fn currently_valid(leaf: &tls::CertificateInfo) -> Result<(), String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    if leaf.not_after < now {
        return Err(format!(
            "the certificate ({}) expired on {}",
            leaf.subject,
            timestamp(leaf.not_after)
        ));
    }
    if leaf.not_before > now {
        return Err(format!(
            "the certificate ({}) is not valid before {}",
            leaf.subject,
            timestamp(leaf.not_before)
        ));
    }
    Ok(())
}

/// Unix seconds as a UTC date an operator reads.
pub fn timestamp(secs: i64) -> String {
    match x509_parser::time::ASN1Time::from_timestamp(secs) {
        Ok(t) => t.to_string(),
        Err(_) => secs.to_string(),
    }
}

/// What a PEM file named in the YAML must hold.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Holds {
    /// Certificates only (a `cert` chain or a CA bundle): it is sent to Envoys as is.
    Certificates,
    /// A private key.
    Key,
}

/// Whether PEM text holds a private key block (`-----BEGIN … PRIVATE KEY-----`): one the PEM
/// reader knows (PKCS#8, PKCS#1, SEC1), or any other label ending in `PRIVATE KEY`
/// (`ENCRYPTED PRIVATE KEY`), which the reader skips as unknown.
fn holds_private_key(pem: &[u8]) -> bool {
    use rustls_pki_types::pem::{PemObject, SectionKind};
    let known = <(SectionKind, Vec<u8>)>::pem_slice_iter(pem).any(|item| {
        matches!(
            item,
            Ok((
                SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey,
                _
            ))
        )
    });
    known || pem.windows(16).any(|w| w == b"PRIVATE KEY-----")
}

/// Reads a PEM file named by `node`, relative to the YAML file it is written in, if the
/// load policy lets it be served (inside the config's directory or a `--secrets-dir`, not
/// one of flotilla's own keys) and it holds what it should: a certificate or CA file with a
/// private key in it would hand that key to every Envoy (and to `render`).
fn file(sink: &mut Sink, node: &Node, path: &str, holds: Holds) -> Option<(PathBuf, Vec<u8>)> {
    let name = reader::non_empty_string(sink, node, path)?;
    let base = node.loc.file.parent().unwrap_or(Path::new(""));
    let resolved = std::path::absolute(base.join(&name)).unwrap_or_else(|_| base.join(&name));
    let policy = sink.policy();
    if holds == Holds::Key
        && let Some(why) = &policy.no_private_keys
    {
        sink.error(node, path, format!("{}: {why}", resolved.display()));
        return None;
    }
    let config_dir = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
    if let Err(why) = policy.servable(&resolved, &config_dir) {
        sink.error(node, path, format!("{}: {why}", resolved.display()));
        return None;
    }
    let mut budget = MAX_PEM_BYTES;
    match read_capped(&resolved, &mut budget) {
        Ok(bytes) if holds == Holds::Certificates && holds_private_key(&bytes) => {
            let message = format!(
                "{}: holds a PRIVATE KEY block; a certificate or CA file is sent to Envoys as \
                 is and must hold certificates only (put the key in its own file, named by `key`)",
                resolved.display()
            );
            sink.error(node, path, message);
            None
        }
        Ok(bytes) => Some((resolved, bytes)),
        Err(crate::config::LoadError::TooLarge { path: p }) => {
            let message = format!("{}: larger than {MAX_PEM_BYTES} bytes", p.display());
            sink.error(node, path, message);
            None
        }
        Err(e) => {
            sink.error(node, path, e.to_string());
            None
        }
    }
}
