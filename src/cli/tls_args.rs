//! `serve`'s flags for TLS on the xDS port.

use std::path::PathBuf;

use flotilla::xds::tls::{DEFAULT_TRUST_DOMAIN, TlsFiles, XdsTlsOptions};

#[derive(clap::Args, Debug)]
pub(crate) struct XdsTlsArgs {
    /// Serve xDS over TLS with this certificate (PEM chain); re-read when it changes.
    #[arg(
        long,
        env = "FLOTILLA_XDS_TLS_CERT",
        requires = "xds_tls_key",
        value_name = "FILE"
    )]
    pub(crate) xds_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --xds-tls-cert.
    #[arg(
        long,
        env = "FLOTILLA_XDS_TLS_KEY",
        requires = "xds_tls_cert",
        value_name = "FILE"
    )]
    pub(crate) xds_tls_key: Option<PathBuf>,
    /// Require client certificates chaining to this CA (mTLS): each stream may claim only
    /// the fleet and node its certificate's spiffe://<trust-domain>/fleet/… SAN allows.
    #[arg(
        long,
        env = "FLOTILLA_XDS_CLIENT_CA",
        requires = "xds_tls_cert",
        value_name = "FILE"
    )]
    pub(crate) xds_client_ca: Option<PathBuf>,
    /// The SPIFFE trust domain of client identities.
    #[arg(long, env = "FLOTILLA_TRUST_DOMAIN", default_value = DEFAULT_TRUST_DOMAIN, value_parser = parse_trust_domain)]
    pub(crate) trust_domain: String,
}

impl XdsTlsArgs {
    pub(crate) fn options(self) -> Option<XdsTlsOptions> {
        Some(XdsTlsOptions {
            files: TlsFiles {
                cert: self.xds_tls_cert?,
                key: self.xds_tls_key?,
                client_ca: self.xds_client_ca,
            },
            trust_domain: self.trust_domain,
        })
    }
}

#[derive(clap::Args, Debug)]
pub(crate) struct AdminTlsArgs {
    /// Serve the admin API over TLS with this certificate (PEM chain); re-read when it changes.
    #[arg(
        long,
        env = "FLOTILLA_ADMIN_TLS_CERT",
        requires = "admin_tls_key",
        value_name = "FILE"
    )]
    pub(crate) admin_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --admin-tls-cert.
    #[arg(
        long,
        env = "FLOTILLA_ADMIN_TLS_KEY",
        requires = "admin_tls_cert",
        value_name = "FILE"
    )]
    pub(crate) admin_tls_key: Option<PathBuf>,
    /// Let anyone read the admin API (state, nodes, events, traffic, metrics, dashboard) when it
    /// listens beyond loopback; otherwise reads need --admin-token as mutations do.
    #[arg(long)]
    pub(crate) admin_public_read: bool,
}

impl AdminTlsArgs {
    pub(crate) fn files(&self) -> Option<TlsFiles> {
        Some(TlsFiles {
            cert: self.admin_tls_cert.clone()?,
            key: self.admin_tls_key.clone()?,
            client_ca: None,
        })
    }
}

/// Longest trust domain accepted (SPIFFE allows 255 bytes).
const MAX_TRUST_DOMAIN: usize = 255;

/// A SPIFFE trust domain: lowercase letters, digits, `.`, `-` and `_`.
pub(crate) fn parse_trust_domain(text: &str) -> Result<String, String> {
    if text.is_empty() || text.len() > MAX_TRUST_DOMAIN {
        return Err(format!("must be 1 to {MAX_TRUST_DOMAIN} bytes"));
    }
    if let Some(c) = text
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '-' | '_'))
    {
        return Err(format!(
            "{c:?} is not allowed (a SPIFFE trust domain is lowercase letters, digits, '.', '-', '_')"
        ));
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_domains_are_spiffe_names() {
        assert!(parse_trust_domain("flotilla.local").is_ok());
        assert!(parse_trust_domain("Example.org").is_err());
        assert!(parse_trust_domain("a/b").is_err());
        assert!(parse_trust_domain("").is_err());
        assert!(parse_trust_domain(&"a".repeat(256)).is_err());
    }
}
