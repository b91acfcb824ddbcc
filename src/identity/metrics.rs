//! What the identity checks count: streams and connections refused, by reason.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::Rejection;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// The identity checks' families; clones record into the same series.
#[derive(Clone, Debug, Default)]
pub struct IdentityMetrics {
    rejected: Family<ReasonLabel, Counter>,
}

impl IdentityMetrics {
    /// Registers the families (the series name predates this module and is kept:
    /// `flotilla_xds_rejected_streams_total`, which dashboards and alerts use).
    pub fn register(registry: &mut Registry) -> IdentityMetrics {
        let m = IdentityMetrics::default();
        registry.register(
            "xds_rejected_streams",
            "Connections and streams refused by the xDS port's TLS and identity checks, by reason",
            m.rejected.clone(),
        );
        for r in Rejection::ALL {
            let _ = m.rejected.get_or_create(&ReasonLabel { reason: r.label() });
        }
        m
    }

    pub fn rejected(&self, reason: Rejection) {
        self.rejected
            .get_or_create(&ReasonLabel {
                reason: reason.label(),
            })
            .inc();
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IssuedLabels {
    service: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabel {
    service: String,
}

/// What the mesh's certificate issuer counts: certificates minted, when each expires and is
/// due for renewal (an alert fires when renewal is overdue), and failures.
#[derive(Clone, Debug, Default)]
pub struct MeshMetrics {
    issued: Family<IssuedLabels, Counter>,
    not_after: Family<ServiceLabel, Gauge>,
    renew_at: Family<ServiceLabel, Gauge>,
    issue_errors: Counter,
    ca_rejected: Counter,
    services: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
}

impl MeshMetrics {
    pub fn register(registry: &mut Registry) -> MeshMetrics {
        let m = MeshMetrics::default();
        registry.register(
            "mesh_workload_certificates_issued",
            "Workload certificates minted, by service and reason (new, half_life, new_signer, changed)",
            m.issued.clone(),
        );
        registry.register(
            "mesh_workload_certificate_expiry_timestamp_seconds",
            "When the current workload certificate of a service expires (Unix seconds)",
            m.not_after.clone(),
        );
        registry.register(
            "mesh_workload_certificate_renewal_timestamp_seconds",
            "When the current workload certificate of a service is due for renewal, half-way through its life (Unix seconds)",
            m.renew_at.clone(),
        );
        registry.register(
            "mesh_workload_certificate_issue_errors",
            "Workload certificates that could not be minted",
            m.issue_errors.clone(),
        );
        registry.register(
            "mesh_ca_rejected",
            "Changes to the mesh CA files that were refused (the last good CA kept signing)",
            m.ca_rejected.clone(),
        );
        m
    }

    pub(crate) fn issued(&self, service: &str, reason: &'static str) {
        self.issued
            .get_or_create(&IssuedLabels {
                service: service.to_string(),
                reason,
            })
            .inc();
    }

    pub(crate) fn observe(&self, service: &str, cert: &super::workload::WorkloadCert) {
        let label = ServiceLabel {
            service: service.to_string(),
        };
        self.not_after.get_or_create(&label).set(cert.not_after);
        self.renew_at.get_or_create(&label).set(cert.renew_at());
        self.services
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(service.to_string());
    }

    /// Drops the gauges of services no longer in the mesh.
    pub(crate) fn forget_except<'a>(&self, services: impl Iterator<Item = &'a String>) {
        let keep: std::collections::BTreeSet<&String> = services.collect();
        let mut known = self.services.lock().unwrap_or_else(|e| e.into_inner());
        known.retain(|s| {
            if keep.contains(s) {
                return true;
            }
            let label = ServiceLabel { service: s.clone() };
            self.not_after.remove(&label);
            self.renew_at.remove(&label);
            false
        });
    }

    pub(crate) fn issue_failed(&self) {
        self.issue_errors.inc();
    }

    pub(crate) fn ca_rejected(&self) {
        self.ca_rejected.inc();
    }
}
