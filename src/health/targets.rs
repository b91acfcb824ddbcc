//! Which endpoints the checker probes, and which changes to its inputs can alter that.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::cache::Inputs;
use crate::config::Config;
use crate::config::model::{HealthCheck, Policy};
use crate::overlay::{EndpointKey, Overlay};

/// Whether a publish can change what is probed: only the config, the registrations and the
/// addresses hostnames resolved to decide that. The checker's own verdicts and weights, drains and overrides come back as
/// publishes too, and must not make it reconcile.
pub(super) fn probes_change(reconciled: Option<&Inputs>, current: &Inputs) -> bool {
    reconciled.is_none_or(|r| {
        !Arc::ptr_eq(&r.config, &current.config)
            || r.overlay.registered != current.overlay.registered
            || r.overlay.resolved != current.overlay.resolved
    })
}

/// Every endpoint that should be probed, with its check, whether its weight is measured
/// (least_response_time), and its configured weight.
pub(super) fn targets(
    config: &Config,
    overlay: &Overlay,
) -> BTreeMap<EndpointKey, (Arc<HealthCheck>, bool, u32)> {
    let mut out = BTreeMap::new();
    for c in config.clusters.values() {
        let Some(spec) = &c.health_check else {
            continue;
        };
        let spec = Arc::new(spec.clone());
        let measured = c.policy == Policy::LeastResponseTime;
        for (e, _) in overlay.endpoints(c) {
            out.entry(EndpointKey::new(c.name.clone(), e.address))
                .or_insert_with(|| (spec.clone(), measured, e.weight));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::Endpoint;
    use crate::overlay::Verdict;

    fn inputs(config: &Arc<Config>, overlay: Overlay) -> Inputs {
        Inputs {
            config: config.clone(),
            overlay: Arc::new(overlay),
        }
    }

    fn config() -> Arc<Config> {
        Arc::new(
            crate::config::parse_str(
                "t.yaml",
                "version: 1\nclusters:\n  web: { endpoints: [127.0.0.1:8081] }\n",
            )
            .unwrap(),
        )
    }

    fn key() -> EndpointKey {
        EndpointKey::new("web", "127.0.0.1:8081".parse().unwrap())
    }

    #[test]
    fn the_first_inputs_are_reconciled() {
        assert!(probes_change(None, &inputs(&config(), Overlay::default())));
    }

    #[test]
    fn a_new_config_is_reconciled() {
        let before = inputs(&config(), Overlay::default());
        assert!(probes_change(
            Some(&before),
            &inputs(&config(), Overlay::default())
        ));
    }

    #[test]
    fn a_registration_is_reconciled() {
        let c = config();
        let before = inputs(&c, Overlay::default());
        let mut overlay = Overlay::default();
        overlay.registered.insert(
            "web".into(),
            vec![Endpoint::registered("127.0.0.1:9000".parse().unwrap(), 1)],
        );
        assert!(probes_change(Some(&before), &inputs(&c, overlay)));
    }

    #[test]
    fn the_checkers_own_verdicts_are_not_reconciled() {
        let c = config();
        let before = inputs(&c, Overlay::default());
        let mut overlay = Overlay::default();
        overlay.verdicts.insert(key(), Verdict::Unhealthy);
        overlay.measured_weights.insert(key(), 3);
        assert!(!probes_change(Some(&before), &inputs(&c, overlay)));
    }

    #[test]
    fn drains_and_overrides_are_not_reconciled() {
        let c = config();
        let before = inputs(&c, Overlay::default());
        let mut overlay = Overlay::default();
        overlay.draining.insert(key());
        overlay.weights.insert(key(), 5);
        assert!(!probes_change(Some(&before), &inputs(&c, overlay)));
    }
}
