//! A hook for `benches/` only: the work one stream does to plan its responses when the
//! snapshot changes, reachable without a server. Hidden from the docs; not an API.

use super::client::{ClientState, Known};
use super::plan;
use super::protocol::{self, Mode};
use crate::cache::{ResourceType, Snapshot};

/// One ADS stream's state, as if its Envoy had received and ACKed all of a snapshot.
#[doc(hidden)]
pub struct PlanBench {
    mode: Mode,
    client: ClientState,
}

impl PlanBench {
    /// A client subscribed as Envoy is (wildcard CDS and LDS, EDS and RDS by name) that holds
    /// every resource of `snapshot`.
    pub fn synced(mode: Mode, snapshot: &Snapshot) -> PlanBench {
        let mut client = ClientState::default();
        for t in ResourceType::ALL {
            let state = client.get_mut(t);
            state.requested = true;
            state.answered = true;
            state.wildcard = t.is_wildcard();
            for (name, r) in &snapshot.get(t).resources {
                if !t.is_wildcard() {
                    state.names.insert(name.clone());
                }
                state.known.insert(
                    name.clone(),
                    Known {
                        version: r.version.clone(),
                        resource: Some(r.clone()),
                    },
                );
            }
        }
        PlanBench { mode, client }
    }

    /// Plans every type against `next` in make-before-break order, as the stream loop does
    /// after a snapshot change; returns how many resources each type's response would carry.
    pub fn plan(&self, next: &Snapshot) -> [Option<usize>; 4] {
        ResourceType::ALL.map(|t| {
            let view = plan::view(t, next, &self.client, true);
            protocol::next(self.mode, t, &view, next.get(t), self.client.get(t))
                .map(|p| p.resources.len())
        })
    }
}
