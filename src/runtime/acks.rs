//! Drains of stream registrations across replicas: every replica says, through the store,
//! that its Envoys hold a leaving endpoint DRAINING and how many requests they still have in
//! flight to it; the replica holding the stream lets the instance exit once every live
//! replica says zero (or the deadline passes).

use tokio::sync::watch;

use super::{Runtime, RuntimeError};
use crate::overlay::EndpointKey;
use crate::store::Ack;

impl Runtime {
    /// Stream registrations asked to leave, whichever replica holds their stream.
    pub fn leaving(&self) -> Vec<EndpointKey> {
        self.lock().leases.leaving().iter().cloned().collect()
    }

    /// Publishes what this replica's Envoys say about leaving endpoint `key` (`None`:
    /// withdrawn, it left).
    pub async fn acknowledge(
        &self,
        key: &EndpointKey,
        ack: Option<Ack>,
    ) -> Result<(), RuntimeError> {
        self.store.publish_ack(&self.me, key, ack).await?;
        Ok(())
    }

    /// Requests in flight to `keys` summed over every live replica's Envoys, or `None` while
    /// some live replica has not acknowledged every one of them.
    pub fn in_flight_everywhere(&self, keys: &[EndpointKey]) -> Option<u64> {
        let state = self.lock();
        let mut replicas: Vec<&String> = state.members.iter().collect();
        if !state.members.contains(&self.me) {
            replicas.push(&self.me);
        }
        let mut total = 0;
        for replica in replicas {
            for key in keys {
                total += state.acks.get(&(key.clone(), replica.clone()))?.in_flight;
            }
        }
        Some(total)
    }

    /// Changes whenever members or acknowledgements change.
    pub fn acks_changed(&self) -> watch::Receiver<u64> {
        self.acks_changed.subscribe()
    }
}
