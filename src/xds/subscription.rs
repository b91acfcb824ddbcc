//! What one stream's client has subscribed to and holds, per resource type.
//!
//! Both protocol variants keep the same state: subscriptions, the resources the client is known
//! to hold (acknowledged, or reported on reconnect), the one response in flight, and what it
//! rejected. SotW and delta differ only in how requests update it and responses are shaped.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use super::held::Held;
use super::names::{self, Names};
use super::protocol::Plan;
use super::sorted;
use crate::cache::{Resource, ResourceType, Snapshot, TypeSet};

/// A response sent and not yet acknowledged. At most one per type: new state waiting behind
/// it coalesces, so a slow client only ever receives the newest state.
#[derive(Debug, Clone)]
pub(crate) struct InFlight {
    pub(crate) nonce: String,
    /// What the client holds once it applies this response (planning's version).
    pub(crate) version_info: String,
    /// The version on the wire: SotW `version_info`, delta `system_version_info`.
    pub(crate) sent_version: String,
    pub(crate) sent: Vec<Arc<Resource>>,
    pub(crate) removed: Vec<String>,
    /// SotW CDS/LDS responses carry the complete set: what is not in it is gone once ACKed.
    pub(crate) complete: bool,
    /// The set the client holds exactly once it applies this response, when known.
    pub(crate) reaches: Option<Arc<TypeSet>>,
    pub(crate) at: Instant,
    /// When the state this response carries came to be (snapshot creation, or the stream's
    /// start if later): the start of the push latency.
    pub(crate) since: Instant,
}

#[derive(Debug)]
pub(crate) struct TypeState {
    /// The client has sent at least one request for this type.
    pub(crate) requested: bool,
    /// At least one response has been sent (an initial request always gets one).
    pub(crate) answered: bool,
    pub(crate) wildcard: bool,
    /// The client has subscribed to a name explicitly (`*` included): from then on an empty
    /// subscription means none, not the legacy wildcard.
    pub(crate) named: bool,
    /// Delta: names subscribed to since the last response, which the next response must
    /// answer, as a resource or (when it does not exist) in `removed_resources`.
    pub(crate) unanswered: BTreeSet<String>,
    /// The names subscribed to (shared with every stream that has the same subscription).
    pub(crate) names: Names,
    /// Fingerprint of the last SotW name list received, which set `wildcard` and `names`.
    pub(crate) names_seen: Option<u64>,
    pub(crate) known: Held,
    /// The last answer of [`TypeState::covers`], for the set and names it was given for.
    covers_memo: Option<(Arc<TypeSet>, Names, bool)>,
    /// Boxed: five types' worth of an unboxed one (170 bytes each) would sit in every stream,
    /// while a stream in sync has none.
    pub(crate) in_flight: Option<Box<InFlight>>,
    /// name → version the client rejected: not sent again until the version changes (a NACK
    /// must not turn into a resend loop).
    pub(crate) rejected: BTreeMap<String, String>,
    /// For complete-set responses: the rejected set's version_info.
    pub(crate) rejected_set: Option<String>,
    /// Names whose removal the client rejected: not removed again until they come back.
    pub(crate) rejected_removals: BTreeSet<String>,
}

impl Default for TypeState {
    fn default() -> TypeState {
        TypeState {
            requested: false,
            answered: false,
            wildcard: false,
            named: false,
            unanswered: BTreeSet::new(),
            names: names::empty(),
            names_seen: None,
            known: Held::default(),
            covers_memo: None,
            in_flight: None,
            rejected: BTreeMap::new(),
            rejected_set: None,
            rejected_removals: BTreeSet::new(),
        }
    }
}

/// Outcome of matching a request's nonce against the response in flight.
#[derive(Debug)]
pub(crate) enum Reply {
    /// No response was in flight for this nonce (initial request, or a stale nonce).
    None,
    Ack(InFlight),
    Nack(InFlight, String),
}

impl TypeState {
    pub(crate) fn subscribed(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }

    /// Applies an ACK or NACK carried by a request with `nonce`. Requests with a nonce other
    /// than the in-flight one are stale (the client has not seen the newest response yet) and
    /// neither acknowledge nor reject anything.
    pub(crate) fn reply(&mut self, nonce: &str, error: Option<String>) -> Reply {
        if nonce.is_empty() || self.in_flight.as_ref().is_none_or(|f| f.nonce != nonce) {
            return Reply::None;
        }
        let Some(flight) = self.in_flight.take().map(|f| *f) else {
            return Reply::None;
        };
        match error {
            None => {
                if flight.complete {
                    self.rejected_set = None;
                }
                for r in &flight.sent {
                    self.rejected.remove(&r.name);
                    self.rejected_removals.remove(&r.name);
                }
                for name in &flight.removed {
                    self.rejected_removals.remove(name);
                }
                match &flight.reaches {
                    Some(set) => self.known.rebase(set),
                    None => {
                        if flight.complete {
                            self.known.clear();
                        }
                        for r in &flight.sent {
                            self.known.hold(r);
                        }
                        for name in &flight.removed {
                            self.known.remove(name);
                        }
                    }
                }
                Reply::Ack(flight)
            }
            Some(message) => {
                self.rejected_in_part(&flight);
                Reply::Nack(flight, message)
            }
        }
    }

    /// Records that `plan` went out with `nonce`, carrying `sent_version` on the wire.
    pub(crate) fn record_sent(
        &mut self,
        plan: Plan,
        nonce: String,
        sent_version: String,
        since: Instant,
    ) {
        self.answered = true;
        self.unanswered.clear();
        self.in_flight = Some(Box::new(InFlight {
            nonce,
            version_info: plan.version_info,
            sent_version,
            sent: plan.resources,
            removed: plan.removed,
            complete: plan.complete,
            reaches: plan.reaches,
            at: Instant::now(),
            since,
        }));
    }

    /// A NACK says that the client refused *some* of a response, not which part: Envoy and
    /// gRPC apply resources one by one and keep the valid ones of a rejected response. What
    /// the response changed is therefore unknown on the client until a later response settles
    /// it (a revert included, which is then sent, not taken as a no-op). The rejected content
    /// itself is remembered so that it is not sent again until it changes: a NACK never turns
    /// into a resend loop.
    fn rejected_in_part(&mut self, flight: &InFlight) {
        if flight.complete {
            // A complete set is refused as a whole: what was sent changed, what was held and
            // left out may have been removed.
            self.rejected_set = Some(flight.version_info.clone());
            let sent: BTreeSet<&str> = flight.sent.iter().map(|r| r.name.as_str()).collect();
            let mut unsure: Vec<String> = flight
                .sent
                .iter()
                .filter(|r| {
                    self.known
                        .get(&r.name)
                        .is_none_or(|k| k.version != r.version)
                })
                .map(|r| r.name.clone())
                .collect();
            unsure.extend(
                self.known
                    .iter()
                    .filter(|(n, _)| !sent.contains(n))
                    .map(|(n, _)| n.to_string()),
            );
            for name in unsure {
                self.known.forget_version(&name);
            }
        } else {
            for r in &flight.sent {
                self.rejected.insert(r.name.clone(), r.version.clone());
                self.known.forget_version(&r.name);
            }
            for name in &flight.removed {
                self.rejected_removals.insert(name.clone());
                self.known.forget_version(name);
            }
        }
    }

    /// The subscription changed while a response may be in flight: what that response would
    /// leave the client holding was computed for the old subscription (the client may have
    /// dropped, or asked again for, names since), so its ACK must record only what it carried.
    pub(crate) fn subscription_changed(&mut self) {
        if let Some(flight) = self.in_flight.as_mut() {
            flight.reaches = None;
        }
    }

    /// Entering the wildcard is a new request for everything: all of it is (re)sent. What the
    /// client may hold stays recorded, as of unknown version: a name it holds that the
    /// snapshot no longer has must still be removed.
    pub(crate) fn enter_wildcard(&mut self) {
        self.wildcard = true;
        let held: Vec<String> = self.known.iter().map(|(n, _)| n.to_string()).collect();
        for name in held {
            self.known.forget_version(&name);
        }
    }

    /// The client no longer holds what it does not subscribe to (after leaving the wildcard).
    pub(crate) fn forget_unsubscribed(&mut self) {
        let gone: Vec<String> = self
            .known
            .iter()
            .map(|(n, _)| n)
            .filter(|n| !self.subscribed(n))
            .map(str::to_string)
            .collect();
        for name in gone {
            self.known.remove(&name);
            self.rejected.remove(&name);
        }
    }

    /// Replaces the subscribed names; the client forgets what it no longer subscribes to.
    pub(crate) fn set_names(&mut self, wanted: BTreeSet<String>) {
        if wanted == *self.names {
            return;
        }
        if !self.wildcard {
            for gone in self.names.difference(&wanted) {
                self.known.remove(gone);
                self.rejected.remove(gone);
            }
            // "the server must resend any newly requested resources, even if it previously
            // sent those resources" (an ACK that crossed an unsubscription recorded them).
            for new in wanted.difference(&self.names) {
                self.known.remove(new);
            }
        }
        self.names = names::intern(wanted);
    }

    /// Subscribes to `added` and unsubscribes from `removed` (sorted, disjoint; `added` not
    /// subscribed yet, `removed` subscribed): [`TypeState::set_names`] for a change given as
    /// such, which a delta request is. The new set is found without copying the old one when
    /// another stream made the same change (see [`names::changed`]).
    pub(crate) fn change_names(&mut self, added: &[String], removed: &[String]) {
        if added.is_empty() && removed.is_empty() {
            return;
        }
        if !self.wildcard {
            for gone in removed {
                self.known.remove(gone);
                self.rejected.remove(gone);
            }
            for new in added {
                self.known.remove(new);
            }
        }
        self.names = names::changed(&self.names, added, removed);
    }

    /// Whether every resource of `set` is subscribed to. Cheap after the first call for a
    /// given subscription: a later set with the same names (only contents changed, as with an
    /// endpoint update) inherits the answer.
    pub(crate) fn covers(&mut self, snapshot: &Snapshot, t: ResourceType) -> bool {
        if self.wildcard {
            return true;
        }
        let set = snapshot.set(t);
        if let Some((seen, names, answer)) = &self.covers_memo
            && Arc::ptr_eq(names, &self.names)
        {
            let same_names = Arc::ptr_eq(seen, set)
                || snapshot
                    .changes(t)
                    .is_some_and(|c| Arc::ptr_eq(&c.from, seen) && c.same_names());
            if same_names {
                let answer = *answer;
                self.covers_memo = Some((set.clone(), self.names.clone(), answer));
                return answer;
            }
        }
        // Both sorted by name: the subscription is walked alongside the set.
        let names = &self.names;
        let mut subscribed = sorted::finder(
            set.resources.len(),
            names.len(),
            names.iter().map(|n| (n.as_str(), ())),
            |n| names.get(n).map(|_| ()),
        );
        let answer = set.resources.keys().all(|k| subscribed(k).is_some());
        self.covers_memo = Some((set.clone(), self.names.clone(), answer));
        answer
    }
}

/// Every type's state, indexed by `ResourceType`.
#[derive(Debug, Default)]
pub(crate) struct ClientState {
    types: [TypeState; ResourceType::COUNT],
    /// Per type, bumped by every `get_mut`: equal generations mean an unchanged state, which
    /// lets the stream skip re-planning a type whose inputs did not change.
    generations: [u64; ResourceType::COUNT],
}

impl ClientState {
    pub(crate) fn get(&self, t: ResourceType) -> &TypeState {
        &self.types[t.index()]
    }

    pub(crate) fn get_mut(&mut self, t: ResourceType) -> &mut TypeState {
        self.generations[t.index()] += 1;
        &mut self.types[t.index()]
    }

    /// Mutable access for bookkeeping that does not change what planning reads (memos).
    pub(crate) fn get_mut_untracked(&mut self, t: ResourceType) -> &mut TypeState {
        &mut self.types[t.index()]
    }

    pub(crate) fn generation(&self, t: ResourceType) -> u64 {
        self.generations[t.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(name: &str, body: u8) -> Arc<Resource> {
        Resource::test(name, body)
    }

    fn flight(nonce: &str, sent: Vec<Arc<Resource>>, complete: bool) -> InFlight {
        InFlight {
            nonce: nonce.into(),
            version_info: "v".into(),
            sent_version: "v".into(),
            sent,
            removed: Vec::new(),
            complete,
            reaches: None,
            at: Instant::now(),
            since: Instant::now(),
        }
    }

    #[test]
    fn ack_of_a_complete_set_replaces_what_is_known() {
        let mut s = TypeState {
            in_flight: Some(Box::new(flight("1", vec![res("a", 1)], true))),
            ..TypeState::default()
        };
        assert!(matches!(s.reply("1", None), Reply::Ack(_)));
        s.in_flight = Some(Box::new(flight("2", vec![res("b", 1)], true)));
        assert!(matches!(s.reply("2", None), Reply::Ack(_)));
        assert_eq!(
            s.known.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            vec!["b"]
        );
    }

    #[test]
    fn stale_nonces_neither_ack_nor_nack() {
        let mut s = TypeState {
            in_flight: Some(Box::new(flight("2", vec![res("a", 1)], false))),
            ..TypeState::default()
        };
        assert!(matches!(s.reply("1", Some("bad".into())), Reply::None));
        assert!(s.in_flight.is_some());
        assert!(matches!(s.reply("", None), Reply::None));
    }

    #[test]
    fn nack_remembers_the_rejected_versions_until_a_later_ack() {
        let bad = res("a", 1);
        let mut s = TypeState {
            in_flight: Some(Box::new(flight("1", vec![bad.clone()], false))),
            ..TypeState::default()
        };
        assert!(matches!(s.reply("1", Some("no".into())), Reply::Nack(_, _)));
        assert_eq!(s.rejected.get("a"), Some(&bad.version));
        assert!(
            s.known
                .get("a")
                .is_none_or(|h| h.version == crate::xds::held::UNKNOWN),
            "the client may or may not hold it"
        );
        s.in_flight = Some(Box::new(flight("2", vec![res("a", 2)], false)));
        assert!(matches!(s.reply("2", None), Reply::Ack(_)));
        assert!(s.rejected.is_empty());
    }
}
