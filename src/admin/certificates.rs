//! `GET /api/v1/certificates`: every certificate and CA the served config uses, what it is
//! and who uses it. Never the key: a certificate's key shows as its file path only.

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::AdminState;
use crate::config::Config;
use crate::tls::CertificateInfo;

#[derive(Debug, Serialize)]
pub struct CertificateView {
    /// The SDS Secret name Envoy knows it by.
    pub secret: String,
    /// `certificate` (presented, with a key) or `ca` (trusted roots).
    pub kind: &'static str,
    pub file: String,
    /// The key's file (certificates only); its content is never shown.
    pub key_file: Option<String>,
    /// The first certificate of the file (the leaf, or the first CA)…
    #[serde(flatten)]
    pub leaf: Option<CertificateInfo>,
    /// …and every certificate in the file, in order.
    pub chain: Vec<CertificateInfo>,
    pub listeners: Vec<String>,
    pub clusters: Vec<String>,
}

pub async fn certificates(State(s): State<AdminState>) -> Json<Vec<CertificateView>> {
    Json(
        s.controller
            .config()
            .map(|c| certificate_views(&c))
            .unwrap_or_default(),
    )
}

/// The certificates of `config`, by Secret name.
pub fn certificate_views(config: &Config) -> Vec<CertificateView> {
    config
        .secrets
        .iter()
        .map(|(name, s)| CertificateView {
            secret: name.clone(),
            kind: if s.is_ca() { "ca" } else { "certificate" },
            file: s.cert_path.display().to_string(),
            key_file: s.key.as_ref().map(|(p, _)| p.display().to_string()),
            leaf: s.certificates.first().cloned(),
            chain: s.certificates.clone(),
            listeners: config
                .listeners
                .values()
                .filter(|l| l.secrets().any(|n| n == name))
                .map(|l| l.name.clone())
                .collect(),
            clusters: config
                .clusters
                .values()
                .filter(|c| c.secrets().any(|n| n == name))
                .map(|c| c.name.clone())
                .collect(),
        })
        .collect()
}
