//! Incremental (delta): `DeltaDiscoveryRequest` / `DeltaDiscoveryResponse`.

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource,
};

use super::protocol::{Mode, Plan, Protocol, Request, Subscription};
use crate::cache::Snapshot;

pub(crate) struct Delta;

impl Protocol for Delta {
    type Req = DeltaDiscoveryRequest;
    type Resp = DeltaDiscoveryResponse;
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

    fn response(plan: &Plan, nonce: String, snapshot: &Snapshot) -> DeltaDiscoveryResponse {
        DeltaDiscoveryResponse {
            system_version_info: snapshot.version.clone(),
            resources: plan
                .resources
                .iter()
                .map(|r| Resource {
                    name: r.name.clone(),
                    version: r.version.clone(),
                    resource: Some(r.body.clone()),
                    ..Default::default()
                })
                .collect(),
            type_url: plan.t.type_url().to_string(),
            removed_resources: plan.removed.clone(),
            nonce,
            ..Default::default()
        }
    }
}
