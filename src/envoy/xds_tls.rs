//! The TLS transport socket of the xDS cluster in `flotilla bootstrap` (`--xds-ca/--xds-cert/
//! --xds-key`): Envoy verifies flotilla's certificate against the CA and the name it dials,
//! and presents its own client certificate, whose SPIFFE ID flotilla binds its node to.

use std::net::IpAddr;

use envoy_types::pb::envoy::config::core::v3::{
    DataSource, TransportSocket, data_source, transport_socket,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, SubjectAltNameMatcher, TlsCertificate,
    UpstreamTlsContext, common_tls_context::ValidationContextType,
    subject_alt_name_matcher::SanType,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher::MatchPattern};

use super::pack;

/// Files Envoy reads for its xDS connection (paths as Envoy sees them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdsClientTls {
    /// The CA flotilla's server certificate chains to.
    pub ca: String,
    /// Envoy's client certificate and key (mTLS); both or neither.
    pub cert_and_key: Option<(String, String)>,
}

fn file(path: &str) -> Option<DataSource> {
    Some(DataSource {
        specifier: Some(data_source::Specifier::Filename(path.to_string())),
        ..Default::default()
    })
}

/// The upstream TLS socket for a cluster reaching flotilla at `host`: SNI `host` (a DNS
/// name; none for an IP) and flotilla's certificate must carry `host` as a SAN.
pub fn transport_socket(tls: &XdsClientTls, host: &str) -> TransportSocket {
    let is_ip = host.parse::<IpAddr>().is_ok();
    let san = SubjectAltNameMatcher {
        san_type: if is_ip {
            SanType::IpAddress
        } else {
            SanType::Dns
        } as i32,
        matcher: Some(StringMatcher {
            match_pattern: Some(MatchPattern::Exact(host.to_string())),
            ..Default::default()
        }),
        ..Default::default()
    };
    let context = UpstreamTlsContext {
        sni: if is_ip {
            String::new()
        } else {
            host.to_string()
        },
        common_tls_context: Some(CommonTlsContext {
            tls_certificates: tls
                .cert_and_key
                .iter()
                .map(|(cert, key)| TlsCertificate {
                    certificate_chain: file(cert),
                    private_key: file(key),
                    ..Default::default()
                })
                .collect(),
            alpn_protocols: vec!["h2".to_string()],
            validation_context_type: Some(ValidationContextType::ValidationContext(
                CertificateValidationContext {
                    trusted_ca: file(&tls.ca),
                    match_typed_subject_alt_names: vec![san],
                    ..Default::default()
                },
            )),
            ..Default::default()
        }),
        ..Default::default()
    };
    TransportSocket {
        name: "envoy.transport_sockets.tls".to_string(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(pack(&context))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn context(host: &str) -> UpstreamTlsContext {
        let tls = XdsClientTls {
            ca: "/c/ca.pem".into(),
            cert_and_key: Some(("/c/e.pem".into(), "/c/e.key".into())),
        };
        let socket = transport_socket(&tls, host);
        assert_eq!(socket.name, "envoy.transport_sockets.tls");
        let Some(transport_socket::ConfigType::TypedConfig(any)) = socket.config_type else {
            panic!("typed config");
        };
        UpstreamTlsContext::decode(any.value.as_slice()).expect("UpstreamTlsContext")
    }

    #[test]
    fn a_name_is_sent_as_sni_and_checked_as_a_dns_san_an_ip_as_an_ip_san() {
        let named = context("xds.example");
        assert_eq!(named.sni, "xds.example");
        let common = named.common_tls_context.expect("common");
        assert_eq!(common.tls_certificates.len(), 1);
        assert_eq!(common.alpn_protocols, ["h2"]);
        let Some(ValidationContextType::ValidationContext(v)) = common.validation_context_type
        else {
            panic!("validation context");
        };
        assert_eq!(
            v.match_typed_subject_alt_names[0].san_type,
            SanType::Dns as i32
        );
        let ip = context("10.0.0.1");
        assert_eq!(ip.sni, "");
        let Some(ValidationContextType::ValidationContext(v)) = ip
            .common_tls_context
            .expect("common")
            .validation_context_type
        else {
            panic!("validation context");
        };
        assert_eq!(
            v.match_typed_subject_alt_names[0].san_type,
            SanType::IpAddress as i32
        );
    }
}
