//! The task that keeps every mesh service's workload certificate current: it mints what is
//! missing or due (half life, a new signing CA, a changed lifetime), re-reads the CA files
//! when they change (keeping the last good CA when the new files do not belong together),
//! and hands the result to the controller as part of the overlay.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::metrics::MeshMetrics;
use super::workload::{MeshCa, MeshCaError, MeshIdentities, renewal, unix};
use crate::control::Controller;
use crate::events::{self, Kind, NewEvent};

/// How often the issuer looks at the clock, the config and the CA files.
const TICK: Duration = Duration::from_secs(1);

/// `serve --mesh-ca-cert/--mesh-ca-key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshCaFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Size and modification time of both files: a change means "read them again".
type Stamp = Option<[(u64, Option<SystemTime>); 2]>;

fn stamp(files: &MeshCaFiles) -> Stamp {
    let one = |p: &PathBuf| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.len(), m.modified().ok()))
    };
    Some([one(&files.cert)?, one(&files.key)?])
}

/// Mints and renews workload certificates; see the module doc.
pub struct Issuer {
    files: MeshCaFiles,
    ca: MeshCa,
    stamp: Stamp,
    /// serve's `--trust-domain`, for a mesh that names none.
    default_trust_domain: String,
    metrics: MeshMetrics,
}

impl Issuer {
    /// Reads the CA files; an error here stops serve from starting.
    pub fn new(
        files: MeshCaFiles,
        default_trust_domain: &str,
        metrics: MeshMetrics,
    ) -> Result<Issuer, MeshCaError> {
        let ca = MeshCa::load(&files.cert, &files.key)?;
        Ok(Issuer {
            stamp: stamp(&files),
            files,
            ca,
            default_trust_domain: default_trust_domain.to_string(),
            metrics,
        })
    }

    /// Keeps the overlay's identities current until shutdown.
    pub async fn run(mut self, controller: Arc<Controller>, shutdown: CancellationToken) {
        let mut inputs = controller.watch_inputs();
        loop {
            let controller2 = controller.clone();
            let (back, ()) = match tokio::task::spawn_blocking(move || {
                self.tick(&controller2, SystemTime::now());
                (self, ())
            })
            .await
            {
                Ok(done) => done,
                Err(e) => {
                    error!(error = %e, "the mesh certificate issuer stopped");
                    return;
                }
            };
            self = back;
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(TICK) => {}
                // A new config may add a service: mint at once.
                changed = inputs.changed() => if changed.is_err() { return },
            }
        }
    }

    /// One look: the CA files, then each service's certificate.
    pub fn tick(&mut self, controller: &Controller, now: SystemTime) {
        self.reload_ca();
        let config = controller.config();
        let mesh = config.as_ref().and_then(|c| c.mesh.as_ref());
        let held = controller.overlay().mesh.clone();
        let Some(mesh) = mesh else {
            if held.is_some() {
                controller.update_overlay(|o| o.mesh = None);
            }
            return;
        };
        let td = mesh
            .trust_domain
            .clone()
            .unwrap_or_else(|| self.default_trust_domain.clone());
        let mut next = MeshIdentities {
            trust_domain: td.clone(),
            bundle_pem: self.ca.bundle_pem.clone(),
            workloads: BTreeMap::new(),
        };
        let t = unix(now);
        for service in mesh.services.keys() {
            let current = held.as_ref().and_then(|h| h.workloads.get(service));
            let due = renewal(
                current,
                &self.ca.signer,
                mesh.certificate_ttl,
                &td,
                service,
                t,
            );
            let cert = match (due, current) {
                (None, Some(c)) => c.clone(),
                (Some(why), current) => {
                    match self.ca.mint(&td, service, mesh.certificate_ttl, now) {
                        Ok(c) => {
                            self.metrics.issued(service, why.label());
                            info!(service, reason = why.label(), not_after = c.not_after,
                                sha256 = %c.sha256, "workload certificate issued");
                            c
                        }
                        Err(e) => {
                            self.metrics.issue_failed();
                            error!(service, error = %e, "cannot mint a workload certificate");
                            match current {
                                Some(c) => c.clone(),
                                None => continue,
                            }
                        }
                    }
                }
                (None, None) => continue,
            };
            self.metrics.observe(service, &cert);
            next.workloads.insert(service.clone(), cert);
        }
        self.metrics.forget_except(mesh.services.keys());
        if held.as_deref() != Some(&next) {
            controller.update_overlay(|o| o.mesh = Some(Arc::new(next)));
        }
    }

    /// Re-reads the CA files when they changed; a pair that does not belong together (or any
    /// other error) is refused, counted and reported, and the last good CA keeps signing.
    fn reload_ca(&mut self) {
        let now = stamp(&self.files);
        if now == self.stamp {
            return;
        }
        self.stamp = now;
        match MeshCa::load(&self.files.cert, &self.files.key) {
            Ok(ca) => {
                if ca.signer != self.ca.signer || ca.bundle_pem != self.ca.bundle_pem {
                    info!(signer = %ca.signer, "mesh CA reloaded");
                    events::record(NewEvent::new(
                        Kind::Reload,
                        format!("mesh CA reloaded: signer sha256 {}", ca.signer),
                    ));
                }
                self.ca = ca;
            }
            Err(e) => {
                self.metrics.ca_rejected();
                warn!(error = %e, "mesh CA files rejected; still signing with the last good CA");
                events::record(NewEvent::new(
                    Kind::Reload,
                    format!("mesh CA rejected: {e}; still signing with the last good CA"),
                ));
            }
        }
    }
}
