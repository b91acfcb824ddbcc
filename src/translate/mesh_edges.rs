//! Denied calls per edge of the mesh graph. Envoy's RBAC filter counts its decisions per
//! filter (`rbac.allowed`, `rbac.denied`), not per caller, and the calls it denies match no
//! policy, so neither per-policy stats nor the enforcing filter can say who was refused. So
//! each inbound listener also gets, before its enforcing filter, one RBAC filter per caller
//! that declares the service in its `calls:`, with only *shadow* rules: a DENY policy that
//! matches exactly the calls from that caller the enforcing rules refuse. Envoy counts a
//! match under `rbac.<shadow_rules_stat_prefix>shadow_denied` and lets the call through to
//! the enforcing filter, which refuses it; the prefix ([`caller_stat_prefix`]) names the
//! caller. With `default: allow` nothing is refused, and there are no such filters.

use envoy_types::pb::envoy::config::rbac::v3::{
    Permission, Policy, Rbac as RbacRules, permission, rbac,
};

use super::mesh::{any_permission, caller_principal, or_permissions, rule_permission};
use crate::config::model::{Mesh, MeshDefault, MeshProtocol};

/// The shadow rules' stat prefix for calls from `caller`: Envoy counts them under
/// `…rbac.mesh_from_<caller>.shadow_denied`.
pub fn caller_stat_prefix(caller: &str) -> String {
    format!("{CALLER_MARK}{caller}.")
}

/// What starts a caller's shadow stat prefix.
pub const CALLER_MARK: &str = "mesh_from_";

/// Per declared caller of `service` (in name order), the shadow rules matching the calls from
/// it that the service's rules deny.
pub(super) fn denied_from(
    mesh: &Mesh,
    td: &str,
    service: &str,
    protocol: MeshProtocol,
) -> Vec<(String, RbacRules)> {
    if mesh.default == MeshDefault::Allow {
        return Vec::new();
    }
    mesh.services
        .iter()
        .filter(|(caller, s)| *caller != service && s.calls.contains_key(service))
        .map(|(caller, _)| {
            let allowed: Vec<Permission> = mesh
                .rules_to(service)
                .filter(|r| r.from == *caller)
                .map(|r| rule_permission(r, protocol))
                .collect();
            // Denied: anything no rule from this caller allows.
            let denied = match allowed.is_empty() {
                true => any_permission(),
                false => Permission {
                    rule: Some(permission::Rule::NotRule(Box::new(or_permissions(allowed)))),
                },
            };
            let rules = RbacRules {
                action: rbac::Action::Deny as i32,
                policies: [(
                    format!("denied-from-{caller}"),
                    Policy {
                        permissions: vec![denied],
                        principals: vec![caller_principal(td, caller)],
                        ..Default::default()
                    },
                )]
                .into_iter()
                .collect(),
                ..Default::default()
            };
            (caller.clone(), rules)
        })
        .collect()
}

/// The caller a shadow-denied stat of a sidecar is about: from its name
/// (`….rbac.mesh_from_<caller>.shadow_denied`) or, with tags as labels, from a label holding
/// the prefix. None for any other stat.
pub fn caller_of(name: &str, labels: &[&str]) -> Option<String> {
    if !name.ends_with("shadow_denied") {
        return None;
    }
    let from_name = name
        .strip_suffix(".shadow_denied")
        .and_then(|n| n.rsplit_once(&format!("rbac.{CALLER_MARK}")))
        .map(|(_, c)| c);
    let from_label = || {
        labels
            .iter()
            .find_map(|l| l.strip_prefix(CALLER_MARK))
            .map(|c| c.strip_suffix('.').unwrap_or(c))
    };
    let caller = from_name.or_else(from_label)?;
    (!caller.is_empty() && caller.len() <= 128).then(|| caller.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mesh(yaml_rest: &str) -> Mesh {
        let yaml = format!(
            "version: 1
mesh:
  services:
    payments: {{ port: 9090 }}
    orders: {{ port: 8080, calls: {{ payments: 15101 }} }}
    frontend: {{ calls: {{ payments: 15102, orders: 15103 }} }}
    audit: {{ port: 7070 }}
{yaml_rest}"
        );
        crate::config::parse_str("m.yaml", &yaml)
            .unwrap()
            .mesh
            .unwrap()
    }

    #[test]
    fn one_shadow_filter_per_declared_caller() {
        let m = mesh("  allow:\n    - { from: orders, to: payments, paths: [/charge*] }\n");
        let d = denied_from(&m, "td", "payments", MeshProtocol::Http);
        let callers: Vec<&str> = d.iter().map(|(c, _)| c.as_str()).collect();
        // audit declares no call to payments: its refused calls count on the node only.
        assert_eq!(callers, ["frontend", "orders"]);
        let deny = rbac::Action::Deny as i32;
        assert!(d.iter().all(|(_, r)| r.action == deny));
        // frontend has no rule: every call from it is denied.
        let frontend = &d[0].1.policies["denied-from-frontend"];
        assert_eq!(frontend.permissions, [any_permission()]);
        // orders: what its rule does not allow.
        let orders = &d[1].1.policies["denied-from-orders"];
        assert!(matches!(
            orders.permissions[0].rule,
            Some(permission::Rule::NotRule(_))
        ));
        assert!(denied_from(&m, "td", "audit", MeshProtocol::Http).is_empty());
    }

    #[test]
    fn nothing_is_denied_with_default_allow() {
        let m = mesh("  default: allow\n");
        assert!(denied_from(&m, "td", "payments", MeshProtocol::Http).is_empty());
    }

    #[test]
    fn the_caller_is_read_back_from_the_stat() {
        let prefix = caller_stat_prefix("front.end");
        assert_eq!(
            caller_of(
                &format!("http.mesh_inbound_payments.rbac.{prefix}shadow_denied"),
                &[]
            )
            .as_deref(),
            Some("front.end")
        );
        assert_eq!(
            caller_of(
                "http.rbac.shadow_denied",
                &["mesh_inbound_payments", &prefix]
            )
            .as_deref(),
            Some("front.end")
        );
        assert_eq!(
            caller_of("http.mesh_inbound_payments.rbac.denied", &[]),
            None
        );
        assert_eq!(caller_of("http.rbac.shadow_denied", &["other"]), None);
    }
}
