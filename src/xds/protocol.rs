//! The two xDS protocol variants, reduced to what differs between them: how a request
//! changes subscriptions and how a response is shaped. The stream loop (`stream`) is shared.

use std::collections::HashMap;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;

use std::collections::BTreeSet;

use super::ordering::{Entry, View, view};
use super::request::NameList;
use super::sorted;
use super::subscription::{ClientState, TypeState};
use super::wire::Frames;
use crate::cache::{Resource, ResourceType, Snapshot, TypeSet, version_of, version_of_held};

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
        names: NameList,
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
            names: NameList::default(),
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
    /// The set the client holds exactly once it applies this, when known.
    pub(crate) reaches: Option<Arc<TypeSet>>,
}

impl Plan {
    /// A response that carries what changed in `set` (not all of it): the client holds
    /// exactly `set` once it applies it when `exact`.
    fn partial(
        t: ResourceType,
        set: &Arc<TypeSet>,
        resources: Vec<Arc<Resource>>,
        removed: Vec<String>,
        exact: bool,
    ) -> Plan {
        Plan {
            t,
            version_info: set.version.clone(),
            resources,
            removed,
            complete: false,
            reaches: exact.then(|| set.clone()),
        }
    }
}

/// One wire variant.
pub(crate) trait Protocol: Send + 'static {
    type Req: prost::Message + Default + Send + 'static;
    const MODE: Mode;

    fn request(req: Self::Req) -> Request;
    /// The version a response carries on the wire: what `/api/v1/nodes` shows.
    fn wire_version<'a>(plan: &'a Plan, snapshot: &'a Snapshot) -> &'a str;
    /// The response, assembled from the resources' pre-encoded entries.
    fn response(plan: &Plan, nonce: &str, snapshot: &Snapshot) -> Frames;
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
            // Envoy repeats its whole subscription in every request, ACKs included; when it is
            // the list it sent last time, there is nothing to look at.
            let fingerprint = names.fingerprint();
            if state.names_seen != Some(fingerprint) {
                state.subscription_changed();
                // Only a client that never named a resource asks for everything with an
                // empty list (the legacy wildcard); once it has, an empty list means nothing.
                let explicit = !names.is_empty();
                let wildcard = names.iter().any(|n| n == "*")
                    || (t.is_wildcard() && !explicit && !state.named);
                let leaves_wildcard = state.wildcard && !wildcard;
                state.named |= explicit;
                if wildcard && !state.wildcard && !first {
                    state.enter_wildcard();
                }
                state.wildcard = wildcard;
                if !names.iter().eq(state.names.iter().map(String::as_str)) {
                    state.set_names(
                        names
                            .iter()
                            .filter(|n| *n != "*")
                            .map(str::to_string)
                            .collect(),
                    );
                }
                if leaves_wildcard {
                    state.forget_unsubscribed();
                }
                state.names_seen = Some(fingerprint);
            }
            // A reconnecting client that reports exactly the current resources holds them:
            // versions are content hashes, so this survives a flotilla restart.
            if first && !version_info.is_empty() {
                if state.covers(snapshot, t) {
                    if snapshot.get(t).version == *version_info {
                        state.known.rebase(snapshot.set(t));
                        state.answered = true;
                    }
                } else {
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
                            state.known.hold(r);
                        }
                        state.answered = true;
                    }
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
            if !subscribe.is_empty() || !unsubscribe.is_empty() {
                state.subscription_changed();
            }
            let was_wildcard = state.wildcard;
            // The change to the subscribed names, kept as such: every stream of a fleet makes
            // the same one, and the new set is then found rather than copied (`names`).
            let mut added: BTreeSet<String> = BTreeSet::new();
            let mut dropped: BTreeSet<String> = BTreeSet::new();
            for name in subscribe {
                if name == "*" {
                    if !state.wildcard && !first {
                        state.enter_wildcard();
                    }
                    state.wildcard = true;
                    continue;
                }
                if !state.names.contains(name) {
                    added.insert(name.clone());
                }
                // The client may have forgotten a resource it still seems subscribed to: a
                // subscription is always answered, with the resource or its absence.
                state.known.remove(name);
                state.rejected.remove(name);
                state.unanswered.insert(name.clone());
            }
            for name in unsubscribe {
                if name == "*" {
                    state.wildcard = false;
                    continue;
                }
                let was_named = if added.remove(name) {
                    true
                } else if state.names.contains(name) {
                    dropped.insert(name.clone());
                    true
                } else {
                    false
                };
                if state.wildcard {
                    // Still wildcard-subscribed, the client cannot tell whether the name is
                    // covered by the wildcard: tell it, with the resource or its removal.
                    // It may still hold the resource, at a version flotilla no longer knows.
                    if was_named {
                        state.known.forget_version(name);
                        state.unanswered.insert(name.clone());
                    }
                } else {
                    state.known.remove(name);
                    state.rejected.remove(name);
                    state.unanswered.remove(name);
                }
            }
            let added: Vec<String> = added.into_iter().collect();
            let dropped: Vec<String> = dropped.into_iter().collect();
            state.change_names(&added, &dropped);
            if was_wildcard && !state.wildcard {
                state.forget_unsubscribed();
            }
            if first && !initial_versions.is_empty() {
                let set = snapshot.get(t);
                // The usual reconnect: the client holds exactly the current set.
                let exactly = initial_versions.len() == set.resources.len()
                    && initial_versions
                        .iter()
                        .all(|(n, v)| set.get(n).is_some_and(|r| r.version == *v));
                if exactly {
                    state.known.rebase(snapshot.set(t));
                } else {
                    for (name, version) in initial_versions {
                        let resource = set.get(name).filter(|r| r.version == *version).cloned();
                        state.known.hold_version(name, version, resource);
                    }
                }
            }
        }
    }
}

/// What to send next for one type, if anything. Nothing while a response is in flight.
///
/// A client that holds exactly the snapshot its stream saw before this one is planned from
/// the snapshot's own list of changes: work in proportion to what changed, not to how many
/// resources the type has. Anything else (first responses, ordering that holds changes back,
/// a client that fell more than one snapshot behind) takes the general path.
pub(crate) fn next(
    mode: Mode,
    t: ResourceType,
    snapshot: &Snapshot,
    client: &mut ClientState,
    ordered: bool,
) -> Option<Plan> {
    let state = client.get(t);
    if !state.requested || state.in_flight.is_some() {
        return None;
    }
    if let Some(plan) = from_changes(mode, t, snapshot, client, ordered) {
        #[cfg(test)]
        if mode == Mode::Delta {
            delta_check::answers_as_general(t, snapshot, client, ordered, plan.as_ref());
        }
        return plan;
    }
    let view = view(t, snapshot, client, ordered);
    general(mode, t, &view, snapshot.set(t), client.get(t))
}

/// The plan when it follows from the snapshot's changes; `None` when they do not suffice.
/// SotW here (it needs a subscription that covers the set); delta in [`delta_from_changes`].
fn from_changes(
    mode: Mode,
    t: ResourceType,
    snapshot: &Snapshot,
    client: &mut ClientState,
    ordered: bool,
) -> Option<Option<Plan>> {
    if mode == Mode::Delta {
        return delta_from_changes(t, snapshot, client, ordered);
    }
    let set = snapshot.set(t);
    if !client.get(t).answered || !client.get(t).unanswered.is_empty() {
        return None;
    }
    if client.get(t).known.is(set) {
        return Some(None); // ordering can only hold changes back, never ask for more
    }
    if ordered && !ordering_allows(t, snapshot, client) {
        return None;
    }
    let changes = snapshot.changes(t)?;
    if !client.get(t).known.is(&changes.from) || !client.get_mut_untracked(t).covers(snapshot, t) {
        return None;
    }
    let state = client.get(t);
    let not_refused = |r: &&Arc<Resource>| state.rejected.get(&r.name) != Some(&r.version);
    if t.is_wildcard() {
        if state.rejected_set.as_deref() == Some(&set.version) {
            return Some(None);
        }
        return Some(Some(Plan {
            t,
            version_info: set.version.clone(),
            resources: set.resources.values().cloned().collect(),
            removed: Vec::new(),
            complete: true,
            reaches: Some(set.clone()),
        }));
    }
    let resources: Vec<Arc<Resource>> = changes
        .changed
        .iter()
        .filter(not_refused)
        .cloned()
        .collect();
    if resources.is_empty() {
        return Some(None);
    }
    // Once applied, the client holds exactly the new set, unless something was refused or
    // it still holds resources the new set dropped (SotW removes nothing).
    let exact = resources.len() == changes.changed.len() && changes.removed.is_empty();
    Some(Some(Plan::partial(t, set, resources, Vec::new(), exact)))
}

/// Delta: the plan from the snapshot's changes for a client that holds exactly the previous
/// set (or the current one), also when its subscription does not cover the whole set or it
/// has just subscribed to names not answered yet. Both are the usual state of EDS while a
/// cluster is added: the new cluster's endpoints are in the snapshot before the client asks
/// for them, and then asked for by name. Changes are filtered by subscription and each new
/// name is looked up: work in proportion to the change, where the general path walks every
/// resource of the type. Answers as the general path does (`spec_model` checks the two
/// against each other through the same stream states).
fn delta_from_changes(
    t: ResourceType,
    snapshot: &Snapshot,
    client: &ClientState,
    ordered: bool,
) -> Option<Option<Plan>> {
    let set = snapshot.set(t);
    let state = client.get(t);
    if !state.answered {
        return None;
    }
    let current = state.known.is(set);
    if current && state.unanswered.is_empty() {
        return Some(None); // ordering can only hold changes back, never ask for more
    }
    if ordered && !ordering_allows(t, snapshot, client) {
        return None;
    }
    let changes = match current {
        true => None,
        false => Some(snapshot.changes(t).filter(|c| state.known.is(&c.from))?),
    };
    // The client holds exactly the new set once it applies this if every new or changed
    // resource is in it: a delta client holds only what it subscribes to, so then it
    // subscribes to the whole set (what the general path asks of its view), and no walk over
    // the set is needed to tell.
    let mut exact = true;
    let mut resources: Vec<Arc<Resource>> = Vec::new();
    let mut removed: Vec<String> = Vec::new();
    if let Some(c) = changes {
        for r in &c.changed {
            if !state.subscribed(&r.name) || state.rejected.get(&r.name) == Some(&r.version) {
                exact = false;
            } else {
                resources.push(r.clone());
            }
        }
        // As on the general path, a removal left out (not subscribed to, or refused before)
        // does not make the result inexact: the set is what the client holds of its
        // subscription.
        removed.extend(
            c.removed
                .iter()
                .filter(|n| state.subscribed(n) && !state.rejected_removals.contains(*n))
                .cloned(),
        );
    }
    // Names just subscribed to: each is sent unless held at its version, or said absent. (A
    // name left while wildcard-subscribed stays unanswered; it is answered only if absent.)
    for name in &state.unanswered {
        let held = |r: &Arc<Resource>| {
            state
                .known
                .get(name)
                .is_some_and(|k| k.version == r.version)
        };
        match set.get(name) {
            Some(r)
                if state.subscribed(name)
                    && !held(r)
                    && !resources.iter().any(|s| s.name == *name) =>
            {
                if state.rejected.get(name) == Some(&r.version) {
                    exact = false;
                } else {
                    resources.push(r.clone());
                }
            }
            Some(_) => {}
            None if !removed.contains(name) => removed.push(name.clone()),
            None => {}
        }
    }
    if resources.is_empty() && removed.is_empty() {
        return Some(None);
    }
    resources.sort_by(|a, b| a.name.cmp(&b.name));
    Some(Some(Plan::partial(t, set, resources, removed, exact)))
}

/// Whether make-before-break lets type `t` take the snapshot as it is, decided cheaply; when
/// it might not, the general path works it out.
fn ordering_allows(t: ResourceType, snapshot: &Snapshot, client: &ClientState) -> bool {
    let clusters = &client.get(ResourceType::Cluster).known;
    let no_cluster_leaves = || {
        clusters.is(snapshot.set(ResourceType::Cluster))
            || snapshot
                .changes(ResourceType::Cluster)
                .is_some_and(|c| c.removed.is_empty() && clusters.is(&c.from))
    };
    match t {
        ResourceType::Cluster | ResourceType::Endpoint => no_cluster_leaves(),
        ResourceType::Listener | ResourceType::Route => {
            !client.get(ResourceType::Cluster).requested
                || clusters.is(snapshot.set(ResourceType::Cluster))
                    && client
                        .get(ResourceType::Endpoint)
                        .known
                        .is(snapshot.set(ResourceType::Endpoint))
        }
        ResourceType::Secret => {
            let held = &client.get(ResourceType::Secret).known;
            held.is(snapshot.set(ResourceType::Secret))
                || snapshot
                    .changes(ResourceType::Secret)
                    .is_some_and(|c| c.removed.is_empty() && held.is(&c.from))
        }
    }
}

/// The general path: the full view of the type against what the client holds.
fn general(
    mode: Mode,
    t: ResourceType,
    view: &View<'_>,
    all: &Arc<TypeSet>,
    state: &TypeState,
) -> Option<Plan> {
    let resolved: Vec<(&str, &str, Option<&Arc<Resource>>)> = view
        .iter()
        .filter_map(|(name, entry)| match entry {
            Entry::Current(r) => Some((*name, r.version.as_str(), Some(*r))),
            Entry::Keep => state
                .known
                .get(name)
                .map(|k| (*name, k.version, k.resource)),
        })
        .collect();
    // A view holding every resource of the set and nothing else has the set's version,
    // computed once per snapshot: no need to hash 1,000 (name, version) pairs per stream.
    let whole_set = view.len() == all.resources.len()
        && resolved.len() == view.len()
        && view.values().all(|e| matches!(e, Entry::Current(_)));
    // A delta response carries no per-type version: only a SotW one needs the hash.
    let version_info = if whole_set || mode == Mode::Delta {
        all.version.clone()
    } else {
        version_of_held(resolved.iter().copied())
    };
    let lacking: Vec<&Arc<Resource>> = held_elsewhere(view, state).collect();
    let changed: Vec<Arc<Resource>> = lacking
        .iter()
        .filter(|r| state.rejected.get(&r.name) != Some(&r.version))
        .map(|r| Arc::clone(r))
        .collect();
    // The client holds exactly the snapshot's set once it applies this response when the
    // view is that whole set and nothing in it was held back as refused (and, for SotW, which
    // removes nothing, when it holds nothing else).
    let exact = whole_set && changed.len() == lacking.len();

    match mode {
        Mode::Sotw if t.is_wildcard() => {
            let unchanged = version_info == state.known.version();
            if (state.answered && unchanged) || state.rejected_set.as_deref() == Some(&version_info)
            {
                return None;
            }
            let resources: Vec<Arc<Resource>> =
                resolved.iter().filter_map(|(_, _, r)| r.cloned()).collect();
            Some(Plan {
                t,
                version_info,
                reaches: whole_set.then(|| all.clone()),
                resources,
                removed: Vec::new(),
                complete: true,
            })
        }
        Mode::Sotw => {
            if changed.is_empty() && state.answered {
                return None;
            }
            let holds_more = || state.known.iter().any(|(n, _)| !view.contains_key(n));
            Some(Plan {
                t,
                version_info,
                resources: changed,
                removed: Vec::new(),
                complete: false,
                reaches: (exact && !holds_more()).then(|| all.clone()),
            })
        }
        Mode::Delta => {
            // Both sorted by name: what is held is walked alongside the view.
            let mut in_view = sorted::finder(
                state.known.len_hint(),
                view.len(),
                view.keys().map(|k| (*k, ())),
                |n| view.get(n).map(|_| ()),
            );
            let mut removed: Vec<String> = state
                .known
                .iter()
                .map(|(name, _)| name)
                .filter(|name| in_view(name).is_none())
                .filter(|name| state.subscribed(name) && !state.rejected_removals.contains(*name))
                .map(str::to_string)
                .collect();
            // Subscribed to and not in the snapshot: the answer is that it does not exist.
            let absent: Vec<String> = state
                .unanswered
                .iter()
                .filter(|n| !all.resources.contains_key(n) && !view.contains_key(n.as_str()))
                .filter(|n| !removed.contains(n))
                .cloned()
                .collect();
            removed.extend(absent);
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
                reaches: exact.then(|| all.clone()),
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
    let walk = view.len() * 8 >= state.known.len_hint();
    let mut known = state.known.iter().peekable();
    view.iter().filter_map(move |(name, entry)| {
        let Entry::Current(r) = entry else {
            return None;
        };
        let held = if walk {
            while known.next_if(|(k, _)| *k < *name).is_some() {}
            known.peek().filter(|(k, _)| *k == *name).map(|(_, h)| *h)
        } else {
            state.known.get(name)
        };
        held.is_none_or(|k| k.version != r.version).then_some(*r)
    })
}

#[cfg(test)]
#[path = "delta_check.rs"]
mod delta_check;

#[cfg(test)]
#[path = "spec_tests.rs"]
mod spec_tests;

#[cfg(test)]
#[path = "spec_model.rs"]
mod spec_model;
