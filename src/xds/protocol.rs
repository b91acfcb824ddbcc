//! The two xDS protocol variants, reduced to what differs between them: how a request
//! changes subscriptions and how a response is shaped. The stream loop (`stream`) is shared.

use std::collections::HashMap;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;

use super::client::TypeState;
use super::plan::{Entry, View};
use crate::cache::{Resource, ResourceType, Snapshot, TypeSet, version_of};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Sotw,
    Delta,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Sotw => "sotw",
            Mode::Delta => "delta",
        }
    }
}

/// A request, whichever variant it came in.
#[derive(Debug, Clone, Default)]
pub(crate) struct Request {
    pub(crate) type_url: String,
    pub(crate) node: Option<Node>,
    pub(crate) nonce: String,
    pub(crate) error: Option<String>,
    pub(crate) subscription: Subscription,
}

#[derive(Debug, Clone)]
pub(crate) enum Subscription {
    /// SotW: every name the client wants (none means wildcard for clusters and listeners),
    /// and the version it holds.
    Complete {
        names: Vec<String>,
        version_info: String,
    },
    /// Delta: changes to the subscription, and on a first request what the client holds.
    Changes {
        subscribe: Vec<String>,
        unsubscribe: Vec<String>,
        initial_versions: HashMap<String, String>,
    },
}

impl Default for Subscription {
    fn default() -> Subscription {
        Subscription::Complete {
            names: Vec::new(),
            version_info: String::new(),
        }
    }
}

/// A response to send, before it is given a nonce and encoded.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) t: ResourceType,
    /// What the client holds once it applies this response (SotW `version_info`).
    pub(crate) version_info: String,
    pub(crate) resources: Vec<Arc<Resource>>,
    pub(crate) removed: Vec<String>,
    pub(crate) complete: bool,
}

/// One wire variant.
pub(crate) trait Protocol: Send + 'static {
    type Req: Send + 'static;
    type Resp: Send + 'static;
    const MODE: Mode;

    fn request(req: Self::Req) -> Request;
    fn response(plan: &Plan, nonce: String, snapshot: &Snapshot) -> Self::Resp;
}

/// Applies a request's subscription to a type's state. `snapshot` supplies the content of
/// resources a reconnecting client reports holding at the current version.
pub(crate) fn subscribe(
    t: ResourceType,
    state: &mut TypeState,
    sub: &Subscription,
    snapshot: &Snapshot,
) {
    let first = !state.requested;
    state.requested = true;
    match sub {
        Subscription::Complete {
            names,
            version_info,
        } => {
            let wildcard = t.is_wildcard() && names.is_empty() || names.iter().any(|n| n == "*");
            state.wildcard = wildcard;
            // Envoy repeats its whole subscription in every request, ACKs included; when it is
            // the one held (in the same order), there is nothing to rebuild. For EDS with
            // 1,000 clusters that saves 1,000 string copies per ACK and per stream.
            if !names.iter().eq(state.names.iter()) {
                let wanted: std::collections::BTreeSet<String> =
                    names.iter().filter(|n| *n != "*").cloned().collect();
                let dropped: Vec<String> = state.names.difference(&wanted).cloned().collect();
                for name in dropped {
                    state.unsubscribe(&name);
                }
                state.names = wanted;
            }
            // A reconnecting client that reports exactly the current resources holds them:
            // versions are content hashes, so this survives a flotilla restart.
            if first && !version_info.is_empty() {
                let current: Vec<&Arc<Resource>> = snapshot
                    .get(t)
                    .resources
                    .values()
                    .filter(|r| state.subscribed(&r.name))
                    .collect();
                let v = version_of(
                    current
                        .iter()
                        .map(|r| (r.name.as_str(), r.version.as_str())),
                );
                if v == *version_info {
                    for r in current {
                        state.known.insert(
                            r.name.clone(),
                            super::client::Known {
                                version: r.version.clone(),
                                resource: Some(r.clone()),
                            },
                        );
                    }
                    state.answered = true;
                }
            }
        }
        Subscription::Changes {
            subscribe,
            unsubscribe,
            initial_versions,
        } => {
            if first && subscribe.is_empty() && t.is_wildcard() {
                state.wildcard = true;
            }
            for name in subscribe {
                if name == "*" {
                    state.wildcard = true;
                } else {
                    state.names.insert(name.clone());
                }
            }
            for name in unsubscribe {
                if name == "*" {
                    state.wildcard = false;
                } else {
                    state.unsubscribe(name);
                }
            }
            if first {
                for (name, version) in initial_versions {
                    let resource = snapshot
                        .get(t)
                        .get(name)
                        .filter(|r| r.version == *version)
                        .cloned();
                    state.known.insert(
                        name.clone(),
                        super::client::Known {
                            version: version.clone(),
                            resource,
                        },
                    );
                }
            }
        }
    }
}

/// What to send next for one type, if anything. Nothing while a response is in flight.
/// `all` is the snapshot's set of type `t` (the view is drawn from it).
pub(crate) fn next(
    mode: Mode,
    t: ResourceType,
    view: &View<'_>,
    all: &TypeSet,
    state: &TypeState,
) -> Option<Plan> {
    if !state.requested || state.in_flight.is_some() {
        return None;
    }
    let resolved: Vec<(&str, &str, Option<&Arc<Resource>>)> = view
        .iter()
        .filter_map(|(name, entry)| match entry {
            Entry::Current(r) => Some((*name, r.version.as_str(), Some(*r))),
            Entry::Keep => state
                .known
                .get(*name)
                .map(|k| (*name, k.version.as_str(), k.resource.as_ref())),
        })
        .collect();
    // A view holding every resource of the set and nothing else has the set's version,
    // computed once per snapshot: no need to hash 1,000 (name, version) pairs per stream.
    let whole_set = view.len() == all.resources.len()
        && resolved.len() == view.len()
        && view.values().all(|e| matches!(e, Entry::Current(_)));
    let version_info = if whole_set {
        all.version.clone()
    } else {
        version_of(resolved.iter().map(|(n, v, _)| (*n, *v)))
    };
    let changed: Vec<Arc<Resource>> = held_elsewhere(view, state)
        .filter(|r| state.rejected.get(&r.name) != Some(&r.version))
        .cloned()
        .collect();

    match mode {
        Mode::Sotw if t.is_wildcard() => {
            let held = version_of(
                state
                    .known
                    .iter()
                    .map(|(n, k)| (n.as_str(), k.version.as_str())),
            );
            let unchanged = version_info == held;
            if (state.answered && unchanged) || state.rejected_set.as_deref() == Some(&version_info)
            {
                return None;
            }
            Some(Plan {
                t,
                version_info,
                resources: resolved.iter().filter_map(|(_, _, r)| r.cloned()).collect(),
                removed: Vec::new(),
                complete: true,
            })
        }
        Mode::Sotw => {
            if changed.is_empty() && state.answered {
                return None;
            }
            Some(Plan {
                t,
                version_info,
                resources: changed,
                removed: Vec::new(),
                complete: false,
            })
        }
        Mode::Delta => {
            let removed: Vec<String> = state
                .known
                .keys()
                .filter(|name| state.subscribed(name))
                .filter(|name| !view.contains_key(name.as_str()))
                .cloned()
                .collect();
            if changed.is_empty()
                && removed.is_empty()
                && (state.answered || !state.known.is_empty())
            {
                return None;
            }
            Some(Plan {
                t,
                version_info,
                resources: changed,
                removed,
                complete: false,
            })
        }
    }
}

/// The view's current resources that the client does not hold at that version. The view
/// and what the client holds are both sorted by name: when of similar size they are walked
/// side by side (one comparison per step), otherwise each name is looked up.
fn held_elsewhere<'a>(
    view: &'a View<'_>,
    state: &'a TypeState,
) -> impl Iterator<Item = &'a Arc<Resource>> {
    let walk = view.len() * 8 >= state.known.len();
    let mut known = state.known.iter().peekable();
    view.iter().filter_map(move |(name, entry)| {
        let Entry::Current(r) = entry else {
            return None;
        };
        let held = if walk {
            while known.next_if(|(k, _)| k.as_str() < *name).is_some() {}
            known
                .peek()
                .filter(|(k, _)| k.as_str() == *name)
                .map(|(_, k)| *k)
        } else {
            state.known.get(*name)
        };
        held.is_none_or(|k| k.version != r.version).then_some(*r)
    })
}
