//! State-of-the-world: `DiscoveryRequest` (decoded as `SotwRequest`) / `DiscoveryResponse`.

use super::protocol::{Mode, Plan, Protocol, Request, Subscription};
use super::request::SotwRequest;
use super::wire::{self, Frames};
use crate::cache::Snapshot;

pub(crate) struct Sotw;

impl Protocol for Sotw {
    type Req = SotwRequest;
    const MODE: Mode = Mode::Sotw;

    fn request(req: SotwRequest) -> Request {
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

    fn wire_version<'a>(plan: &'a Plan, _snapshot: &'a Snapshot) -> &'a str {
        &plan.version_info
    }

    fn response(plan: &Plan, nonce: &str, snapshot: &Snapshot) -> Frames {
        wire::sotw_response(
            Self::wire_version(plan, snapshot),
            plan.resources.iter().map(|r| r.sotw.clone()),
            plan.t.type_url(),
            nonce,
        )
    }
}
