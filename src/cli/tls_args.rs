//! `serve`'s flags for TLS on the xDS port.

use std::path::PathBuf;

use flotilla::identity::{DEFAULT_TRUST_DOMAIN, DnsPattern, IdentityRules, MAX_DNS_PATTERNS};
use flotilla::tls::TlsFiles;
use flotilla::xds::tls::XdsTlsOptions;

#[derive(clap::Args, Debug, Default)]
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
    /// For client certificates without a SPIFFE ID of the trust domain: a DNS SAN matching
    /// this pattern names the fleet (and node), e.g. `{node}.{fleet}.envoy.example.com`
    /// (without `{node}`: fleet-wide). Each placeholder is one whole label. Repeatable, at most 8.
    #[arg(
        long,
        env = "FLOTILLA_IDENTITY_DNS_PATTERN",
        value_delimiter = ',',
        requires = "xds_client_ca",
        value_name = "PATTERN",
        value_parser = parse_dns_pattern
    )]
    pub(crate) identity_dns_pattern: Vec<DnsPattern>,
}

impl XdsTlsArgs {
    /// The xDS port's TLS options (None: plaintext), or why the flags are refused.
    pub(crate) fn options(self) -> Result<Option<XdsTlsOptions>, String> {
        if self.identity_dns_pattern.len() > MAX_DNS_PATTERNS {
            return Err(format!(
                "--identity-dns-pattern: at most {MAX_DNS_PATTERNS} patterns, got {}",
                self.identity_dns_pattern.len()
            ));
        }
        let (Some(cert), Some(key)) = (self.xds_tls_cert, self.xds_tls_key) else {
            return Ok(None);
        };
        Ok(Some(XdsTlsOptions {
            files: TlsFiles {
                cert,
                key,
                client_ca: self.xds_client_ca,
            },
            identity: IdentityRules {
                trust_domain: self.trust_domain,
                dns_patterns: self.identity_dns_pattern,
            },
        }))
    }
}

fn parse_dns_pattern(text: &str) -> Result<DnsPattern, String> {
    text.parse()
        .map_err(|e: flotilla::identity::PatternError| e.to_string())
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

/// A SPIFFE trust domain: lowercase letters, digits, `.`, `-` and `_`.
pub(crate) fn parse_trust_domain(text: &str) -> Result<String, String> {
    flotilla::identity::check_trust_domain(text)?;
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

    #[test]
    fn more_than_eight_dns_patterns_are_refused() {
        use clap::Parser;
        #[derive(Parser)]
        struct Serve {
            #[command(flatten)]
            tls: XdsTlsArgs,
        }
        let mut args = vec!["serve", "--xds-tls-cert", "c", "--xds-tls-key", "k"];
        args.extend(["--xds-client-ca", "ca"]);
        let patterns: Vec<String> = (0..9)
            .map(|i| format!("--identity-dns-pattern={{fleet}}.d{i}.example.com"))
            .collect();
        let parse = |n: usize| {
            let mut all: Vec<&str> = args.clone();
            all.extend(patterns[..n].iter().map(String::as_str));
            Serve::try_parse_from(all)
                .expect("flags parse")
                .tls
                .options()
        };
        let options = parse(8).expect("8 patterns").expect("TLS on");
        assert_eq!(options.identity.dns_patterns.len(), 8);
        assert_eq!(
            parse(9).expect_err("9 patterns"),
            "--identity-dns-pattern: at most 8 patterns, got 9"
        );
        let bad = Serve::try_parse_from([
            "serve",
            "--xds-tls-cert",
            "c",
            "--xds-tls-key",
            "k",
            "--xds-client-ca",
            "ca",
            "--identity-dns-pattern",
            "*.{fleet}.example.com",
        ]);
        assert!(bad.is_err());
    }
}
