//! A hook for `benches/` only: the work one stream does to plan its responses when the
//! snapshot changes, reachable without a server. Hidden from the docs; not an API.

use super::protocol::{self, Mode};
use super::subscription::ClientState;
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
            if !t.is_wildcard() {
                state.set_names(snapshot.get(t).resources.keys().cloned().collect());
            }
            state.known.rebase(snapshot.set(t));
        }
        PlanBench { mode, client }
    }

    /// Plans every type against `next` in make-before-break order, as the stream loop does
    /// after a snapshot change; returns how many resources each type's response would carry.
    pub fn plan(&mut self, next: &Snapshot) -> [Option<usize>; ResourceType::COUNT] {
        ResourceType::ALL.map(|t| {
            protocol::next(self.mode, t, next, &mut self.client, true).map(|p| p.resources.len())
        })
    }
}
