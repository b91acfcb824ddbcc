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
    /// that expire soon, in the log and the events (the alert rules warn too; this says it
    /// at the moment of loading).
    pub fn observe(&self, config: &Config) {
        self.expiry.clear();
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
        }
        for warning in expiring(config, unix_now()) {
            warn!("{warning}");
            crate::events::record(crate::events::NewEvent::new(
                crate::events::Kind::Reload,
                warning,
            ));
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A warning for each certificate of `config` that expires within 14 days of `now` (Unix
/// seconds): what `validate` prints and `serve` logs.
pub fn expiring(config: &Config, now: i64) -> Vec<String> {
    config
        .secrets
        .values()
        .filter_map(|s| {
            let leaf = s.certificates.first()?;
            let left = leaf.not_after - now;
            (left < EXPIRY_WARNING_SECS).then(|| {
                format!(
                    "warning: certificate {} ({}) expires in {} days, on {}",
                    s.cert_path.display(),
                    leaf.subject,
                    left.max(0) / 86_400,
                    crate::config::format_timestamp(leaf.not_after)
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_close_to_expiry_are_warned_about() {
        let dir = tempfile::tempdir().unwrap();
        let (chain, key, _) = crate::tls::tests::issued(&["a.example.com"]);
        std::fs::write(dir.path().join("a.pem"), chain).unwrap();
        std::fs::write(dir.path().join("a.key"), key).unwrap();
        let yaml = "version: 1\nclusters: { web: { endpoints: [127.0.0.1:1] } }\nlisteners:\n  l: { address: 127.0.0.1:2, tls: { certificates: [{ cert: a.pem, key: a.key }] }, routes: [{ to: web }] }\n";
        std::fs::write(dir.path().join("f.yaml"), yaml).unwrap();
        let config = crate::config::load(&dir.path().join("f.yaml"))
            .unwrap()
            .config;
        let not_after = config.secrets.values().next().unwrap().certificates[0].not_after;
        assert_eq!(
            expiring(&config, not_after - 15 * 86_400),
            Vec::<String>::new()
        );
        let warnings = expiring(&config, not_after - 5 * 86_400 - 60);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("a.pem ("), "{warnings:?}");
        assert!(warnings[0].contains("expires in 5 days"), "{warnings:?}");
        let metrics = CertificateMetrics::default();
        metrics.observe(&config);
        assert_eq!(
            metrics
                .expiry
                .get_or_create(&CertificateLabels {
                    secret: config.secrets.keys().next().unwrap().clone(),
                    kind: "certificate",
                    subject: config.secrets.values().next().unwrap().certificates[0]
                        .subject
                        .clone(),
                })
                .get(),
            not_after
        );
    }
}
