//! TLS: the SDS `Secret`s (certificates with their keys, CA bundles) and the transport
//! sockets of listeners and clusters that name them. Listeners and clusters carry only Secret
//! names, so rotating a certificate changes one Secret and no Listener or Cluster.

use envoy_types::pb::envoy::config::core::v3::{
    ConfigSource, DataSource, TransportSocket, data_source, transport_socket,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, SdsSecretConfig, Secret,
    SubjectAltNameMatcher, TlsCertificate, TlsParameters, UpstreamTlsContext,
    common_tls_context::{CombinedCertificateValidationContext, ValidationContextType},
    secret,
    subject_alt_name_matcher::SanType,
    tls_parameters::TlsProtocol,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
use envoy_types::pb::google::protobuf::BoolValue;

use super::any;
use crate::config::model::{
    ListenerTls, SecretMaterial, TlsVersion, TrustedCa, UpstreamProtocol, UpstreamTls,
};

const TLS_SOCKET: &str = "envoy.transport_sockets.tls";

/// The operating system's roots on the Envoy host, for `ca: system`: the bundle Debian,
/// Ubuntu and Alpine keep (Envoy refuses a SAN check without a trusted CA, and its
/// `system_root_certs` does not count as one).
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The Secret carrying a certificate file (with its key) or a CA bundle.
pub(super) fn secret(name: &str, material: &SecretMaterial) -> Secret {
    let r#type = match &material.key {
        Some((_, key)) => secret::Type::TlsCertificate(TlsCertificate {
            certificate_chain: Some(inline(&material.cert_pem)),
            private_key: Some(inline(key.expose())),
            ..Default::default()
        }),
        None => secret::Type::ValidationContext(CertificateValidationContext {
            trusted_ca: Some(inline(&material.cert_pem)),
            ..Default::default()
        }),
    };
    Secret {
        name: name.to_string(),
        r#type: Some(r#type),
    }
}

/// A listener's TLS: its certificates (Envoy picks by SNI, the first one by default), TLS 1.2
/// at least unless raised, ALPN h2 then http/1.1, and client certificates checked against
/// the client CA when one is named.
pub(super) fn downstream(tls: &ListenerTls, sds: &ConfigSource) -> TransportSocket {
    let common = CommonTlsContext {
        tls_params: Some(TlsParameters {
            tls_minimum_protocol_version: match tls.min_version {
                TlsVersion::V1_2 => TlsProtocol::TlSv12,
                TlsVersion::V1_3 => TlsProtocol::TlSv13,
            } as i32,
            ..Default::default()
        }),
        tls_certificate_sds_secret_configs: tls
            .certificates
            .iter()
            .map(|name| sds_config(name, sds))
            .collect(),
        alpn_protocols: vec!["h2".to_string(), "http/1.1".to_string()],
        validation_context_type: tls
            .client_ca
            .as_ref()
            .map(|ca| ValidationContextType::ValidationContextSdsSecretConfig(sds_config(ca, sds))),
        ..Default::default()
    };
    let context = DownstreamTlsContext {
        common_tls_context: Some(common),
        require_client_certificate: tls.client_ca.as_ref().map(|_| BoolValue {
            value: tls.require_client_cert,
        }),
        ..Default::default()
    };
    transport_socket(any(&context))
}

/// A cluster's TLS to its endpoints: SNI, the endpoint's certificate checked against the CA
/// (and, with SNI, that it names the SNI host), and a client certificate for mTLS.
pub(super) fn upstream(
    tls: &UpstreamTls,
    protocol: UpstreamProtocol,
    sds: &ConfigSource,
) -> TransportSocket {
    let sans: Vec<SubjectAltNameMatcher> = tls
        .sni
        .iter()
        .map(|host| SubjectAltNameMatcher {
            san_type: SanType::Dns as i32,
            matcher: Some(StringMatcher {
                match_pattern: Some(string_matcher::MatchPattern::Exact(host.clone())),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    let validation = match &tls.ca {
        TrustedCa::System => {
            ValidationContextType::ValidationContext(CertificateValidationContext {
                trusted_ca: Some(DataSource {
                    specifier: Some(data_source::Specifier::Filename(
                        SYSTEM_CA_BUNDLE.to_string(),
                    )),
                    ..Default::default()
                }),
                match_typed_subject_alt_names: sans,
                ..Default::default()
            })
        }
        TrustedCa::Secret(ca) => {
            ValidationContextType::CombinedValidationContext(CombinedCertificateValidationContext {
                default_validation_context: Some(CertificateValidationContext {
                    match_typed_subject_alt_names: sans,
                    ..Default::default()
                }),
                validation_context_sds_secret_config: Some(sds_config(ca, sds)),
                ..Default::default()
            })
        }
    };
    let alpn = match protocol {
        UpstreamProtocol::Http1 => "http/1.1",
        UpstreamProtocol::Http2 => "h2",
    };
    let common = CommonTlsContext {
        tls_certificate_sds_secret_configs: tls
            .client_certificate
            .iter()
            .map(|name| sds_config(name, sds))
            .collect(),
        alpn_protocols: vec![alpn.to_string()],
        validation_context_type: Some(validation),
        ..Default::default()
    };
    let context = UpstreamTlsContext {
        common_tls_context: Some(common),
        sni: tls.sni.clone().unwrap_or_default(),
        ..Default::default()
    };
    transport_socket(any(&context))
}

fn transport_socket(config: envoy_types::pb::google::protobuf::Any) -> TransportSocket {
    TransportSocket {
        name: TLS_SOCKET.to_string(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(config)),
    }
}

pub(super) fn sds_config(name: &str, sds: &ConfigSource) -> SdsSecretConfig {
    SdsSecretConfig {
        name: name.to_string(),
        sds_config: Some(sds.clone()),
    }
}

pub(super) fn inline(bytes: &[u8]) -> DataSource {
    DataSource {
        specifier: Some(data_source::Specifier::InlineBytes(bytes.to_vec())),
        ..Default::default()
    }
}
