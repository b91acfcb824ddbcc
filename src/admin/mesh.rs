//! `GET /api/v1/mesh`: the mesh's services, their instances, identities (with expiry) and the
//! calls their sidecars allowed and denied. Certificates are described, never their keys.

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::AdminState;
use crate::config::model::{MeshDefault, MeshOutbound, service_cluster};
use crate::overlay::EndpointKey;
use crate::traffic::mesh_calls::Decisions;

#[derive(Debug, Serialize)]
pub struct MeshView {
    /// False when the served config has no `mesh:`.
    pub enabled: bool,
    pub trust_domain: Option<String>,
    pub default: Option<&'static str>,
    /// `passthrough` or `registry_only`: transparent calls to no service's VIP.
    pub outbound: Option<&'static str>,
    pub certificate_ttl_seconds: Option<u64>,
    pub services: Vec<ServiceView>,
    pub allow: Vec<RuleView>,
}

#[derive(Debug, Serialize)]
pub struct ServiceView {
    pub name: String,
    pub port: Option<u16>,
    pub protocol: &'static str,
    /// The virtual address apps dial (transparent sidecars), if any.
    pub vip: Option<String>,
    pub calls: Vec<CallView>,
    pub instances: Vec<InstanceView>,
    /// Connected sidecars (node ids), instances or not.
    pub sidecars: Vec<String>,
    pub identity: Option<IdentityView>,
    /// Calls into this service, as its sidecars' RBAC decided them (since flotilla started).
    pub calls_in: Decisions,
}

#[derive(Debug, Serialize)]
pub struct CallView {
    pub service: String,
    /// `None`: through the called service's VIP only.
    pub local_port: Option<u16>,
}

#[derive(Debug, Serialize)]
pub struct InstanceView {
    pub address: String,
    pub health: &'static str,
    pub draining: bool,
}

#[derive(Debug, Serialize)]
pub struct IdentityView {
    pub spiffe_id: String,
    pub sha256: String,
    pub issued_at: i64,
    pub not_after: i64,
    pub renew_at: i64,
}

#[derive(Debug, Serialize)]
pub struct RuleView {
    pub from: String,
    pub to: String,
    pub methods: Vec<String>,
    pub paths: Vec<String>,
}

pub async fn mesh(State(s): State<AdminState>) -> Json<MeshView> {
    Json(mesh_view(&s))
}

pub fn mesh_view(s: &AdminState) -> MeshView {
    let config = s.controller.config();
    let Some(mesh) = config.as_ref().and_then(|c| c.mesh.as_ref()) else {
        return MeshView {
            enabled: false,
            trust_domain: None,
            default: None,
            outbound: None,
            certificate_ttl_seconds: None,
            services: Vec::new(),
            allow: Vec::new(),
        };
    };
    let overlay = s.controller.overlay();
    let identities = overlay.mesh.as_deref();
    let streams = s.nodes.streams();
    let services = mesh
        .services
        .iter()
        .map(|(name, svc)| {
            let instances = config
                .as_ref()
                .and_then(|c| c.clusters.get(&service_cluster(name)))
                .map(|c| {
                    overlay
                        .endpoints(c)
                        .map(|(e, _)| {
                            let key = EndpointKey::new(c.name.clone(), e.address);
                            InstanceView {
                                address: e.address.to_string(),
                                health: overlay.health(&key).name(),
                                draining: overlay.is_draining(&key),
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut sidecars: Vec<String> = streams
                .iter()
                .filter(|st| st.fleet == *name)
                .map(|st| st.node_id.clone())
                .collect();
            sidecars.sort();
            sidecars.dedup();
            ServiceView {
                name: name.clone(),
                port: svc.port,
                protocol: svc.protocol.name(),
                vip: svc.vip.map(|v| v.to_string()),
                calls: svc
                    .calls
                    .iter()
                    .map(|(c, p)| CallView {
                        service: c.clone(),
                        local_port: *p,
                    })
                    .collect(),
                instances,
                sidecars,
                identity: identities
                    .and_then(|i| i.workloads.get(name))
                    .map(|w| IdentityView {
                        spiffe_id: w.spiffe_id.clone(),
                        sha256: w.sha256.clone(),
                        issued_at: w.issued_at,
                        not_after: w.not_after,
                        renew_at: w.renew_at(),
                    }),
                calls_in: s.traffic.mesh_calls.of(name),
            }
        })
        .collect();
    MeshView {
        enabled: true,
        trust_domain: Some(crate::translate::mesh::trust_domain(mesh, identities).to_string()),
        default: Some(match mesh.default {
            MeshDefault::Deny => "deny",
            MeshDefault::Allow => "allow",
        }),
        outbound: Some(match mesh.outbound {
            MeshOutbound::Passthrough => "passthrough",
            MeshOutbound::RegistryOnly => "registry_only",
        }),
        certificate_ttl_seconds: Some(mesh.certificate_ttl.as_secs()),
        services,
        allow: mesh
            .allow
            .iter()
            .map(|r| RuleView {
                from: r.from.clone(),
                to: r.to.clone(),
                methods: r.methods.clone(),
                paths: r.paths.clone(),
            })
            .collect(),
    }
}
