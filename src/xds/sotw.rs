//! State-of-the-world: `DiscoveryRequest` / `DiscoveryResponse`.

use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};

use super::protocol::{Mode, Plan, Protocol, Request, Subscription};
use crate::cache::Snapshot;

pub(crate) struct Sotw;

impl Protocol for Sotw {
    type Req = DiscoveryRequest;
    type Resp = DiscoveryResponse;
    const MODE: Mode = Mode::Sotw;

    fn request(req: DiscoveryRequest) -> Request {
        Request {
            type_url: req.type_url,
            node: req.node,
            nonce: req.response_nonce,
            error: req.error_detail.map(|s| s.message),
            subscription: Subscription::Complete {
                names: req.resource_names,
                version_info: req.version_info,
            },
        }
    }

    fn response(plan: &Plan, nonce: String, _snapshot: &Snapshot) -> DiscoveryResponse {
        DiscoveryResponse {
            version_info: plan.version_info.clone(),
            resources: plan.resources.iter().map(|r| r.body.clone()).collect(),
            type_url: plan.t.type_url().to_string(),
            nonce,
            ..Default::default()
        }
    }
}
