//! Incremental (delta): `DeltaDiscoveryRequest` / `DeltaDiscoveryResponse`.

use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;

use super::protocol::{Mode, Plan, Protocol, Request, Subscription};
use super::wire::{self, Frames};
use crate::cache::Snapshot;

pub(crate) struct Delta;

impl Protocol for Delta {
    type Req = DeltaDiscoveryRequest;
    const MODE: Mode = Mode::Delta;

    fn request(req: DeltaDiscoveryRequest) -> Request {
        Request {
            type_url: req.type_url,
            node: req.node,
            nonce: req.response_nonce,
            error: req.error_detail.map(|s| s.message),
            subscription: Subscription::Changes {
                subscribe: req.resource_names_subscribe,
                unsubscribe: req.resource_names_unsubscribe,
                initial_versions: req.initial_resource_versions,
            },
        }
    }

    /// `system_version_info`: the snapshot's version (the spec leaves it to debugging).
    fn wire_version<'a>(_plan: &'a Plan, snapshot: &'a Snapshot) -> &'a str {
        &snapshot.version
    }

    fn response(plan: &Plan, nonce: &str, snapshot: &Snapshot) -> Frames {
        wire::delta_response(
            Self::wire_version(plan, snapshot),
            plan.resources.iter().map(|r| r.delta.clone()),
            plan.t.type_url(),
            &plan.removed,
            nonce,
        )
    }
}
