//! `flotilla_certificate_expiry_timestamp_seconds`: when each certificate the served config
//! uses stops being valid, for the expiry alerts (monitoring/) and the dashboard panel.

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tracing::warn;

use crate::config::Config;

/// A certificate that expires within this many seconds is warned about at every load.
pub const EXPIRY_WARNING_SECS: i64 = 14 * 24 * 3600;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertificateLabels {
    /// The SDS Secret name (one series per certificate file, whatever the rotation).
    secret: String,
    /// `certificate` or `ca`.
    kind: &'static str,
    subject: String,
}

#[derive(Clone, Debug, Default)]
pub struct CertificateMetrics {
    expiry: Family<CertificateLabels, Gauge>,
}

impl CertificateMetrics {
    pub fn register(registry: &mut Registry) -> CertificateMetrics {
        let m = CertificateMetrics::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "When each certificate (leaf, or first CA of a bundle) the served config uses expires, in Unix seconds",
            m.expiry.clone(),
        );
        m
    }

    /// Recomputes the series from the config being served, and warns about certificates
    /// that expire soon (the alert rules warn too; the log says it at the moment of loading).
    pub fn observe(&self, config: &Config) {
        self.expiry.clear();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        for (name, s) in &config.secrets {
            let Some(leaf) = s.certificates.first() else {
                continue;
            };
            self.expiry
                .get_or_create(&CertificateLabels {
                    secret: name.clone(),
                    kind: if s.is_ca() { "ca" } else { "certificate" },
                    subject: leaf.subject.clone(),
                })
                .set(leaf.not_after);
            let left = leaf.not_after - now;
            if left < EXPIRY_WARNING_SECS {
                warn!(
                    secret = %name,
                    file = %s.cert_path.display(),
                    subject = %leaf.subject,
                    days_left = left / 86_400,
                    "certificate expires within 14 days"
                );
            }
        }
    }
}
