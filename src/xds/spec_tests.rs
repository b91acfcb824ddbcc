//! The xDS protocol state machine against the spec, one rule per test. Each test quotes the
//! sentence of envoyproxy.io's "xDS REST and gRPC protocol" page it checks. They drive the
//! stream's protocol core (`stream_core::Core`), the code the server's stream loop drives,
//! with no server.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crate::cache::{Resource, ResourceType, Snapshot};
use crate::xds::protocol::{Mode, Plan, Request, Subscription};
use crate::xds::request::NameList;
use crate::xds::stream_core::{Core, Kind};
use crate::xds::subscription::Reply;

use ResourceType::{Cluster, Endpoint, Listener, Route};

pub(crate) fn res(name: &str, body: u8) -> Arc<Resource> {
    Resource::test(name, body)
}

fn route(name: &str, body: u8, clusters: &[&str]) -> Arc<Resource> {
    let any = envoy_types::pb::google::protobuf::Any {
        type_url: "t".into(),
        value: vec![body],
    };
    Arc::new(Resource::new(
        name.to_string(),
        any,
        clusters.iter().map(|c| c.to_string()).collect(),
    ))
}

/// Clusters and their endpoints named `clusters`, one listener `l` whose route uses them.
fn config(clusters: &[(&str, u8)], listener: u8) -> Snapshot {
    let names: Vec<&str> = clusters.iter().map(|(n, _)| *n).collect();
    Snapshot::of([
        clusters.iter().map(|(n, b)| res(n, *b)).collect(),
        clusters.iter().map(|(n, b)| res(n, *b)).collect(),
        vec![res("l", listener)],
        vec![route("l", listener, &names)],
        Vec::new(),
    ])
}

pub(crate) fn sotw(names: &[&str], version_info: &str) -> Subscription {
    Subscription::Complete {
        names: NameList::from_names(names),
        version_info: version_info.into(),
    }
}

pub(crate) fn delta(sub: &[&str], unsub: &[&str]) -> Subscription {
    Subscription::Changes {
        subscribe: sub.iter().map(|n| n.to_string()).collect(),
        unsubscribe: unsub.iter().map(|n| n.to_string()).collect(),
        initial_versions: HashMap::new(),
    }
}

/// One stream's protocol core ([`Core`], what the stream loop drives), with the snapshot
/// given per call and each response read back as its plan.
pub(crate) struct Machine {
    pub(crate) mode: Mode,
    pub(crate) core: Core,
    /// Per type, the SotW subscription last sent: an ACK repeats it, as Envoy's do.
    last: HashMap<ResourceType, Subscription>,
    /// The snapshot the core holds, as given (address and version).
    given: Option<(usize, String)>,
}

impl Machine {
    pub(crate) fn new(mode: Mode, ads: bool) -> Machine {
        let kind = Kind { ads, only: None };
        Machine {
            mode,
            core: Core::new(mode, kind, Arc::new(Snapshot::default()), Instant::now()),
            last: HashMap::new(),
            given: None,
        }
    }

    /// The core serves `snapshot` from now on (a clone, once per snapshot given).
    pub(crate) fn serve(&mut self, snapshot: &Snapshot) {
        let key = (
            std::ptr::from_ref(snapshot) as usize,
            snapshot.version.clone(),
        );
        if self.given.as_ref() != Some(&key) {
            self.core.snapshot_changed(Arc::new(snapshot.clone()));
            self.given = Some(key);
        }
    }

    pub(crate) fn request(&mut self, t: ResourceType, sub: Subscription, snapshot: &Snapshot) {
        self.serve(snapshot);
        if matches!(sub, Subscription::Complete { .. }) {
            self.last.insert(t, sub.clone());
        }
        let req = Request {
            type_url: t.type_url().to_string(),
            subscription: sub,
            ..Request::default()
        };
        let handled = self.core.request(req).expect("a type the stream serves");
        assert!(matches!(handled.reply, Reply::None), "no nonce, no reply");
    }

    /// The next response for `t`, recorded as sent (in flight).
    pub(crate) fn send(&mut self, t: ResourceType, snapshot: &Snapshot) -> Option<Plan> {
        self.serve(snapshot);
        let response = self.core.respond(t)?;
        assert_eq!(response.t, t);
        let flight = self.core.in_flight(t).expect("in flight once sent");
        Some(Plan {
            t,
            version_info: flight.version_info.clone(),
            resources: flight.sent.clone(),
            removed: flight.removed.clone(),
            complete: flight.complete,
            reaches: flight.reaches.clone(),
        })
    }

    /// An ACK (or with `error`, a NACK) of the newest response sent, in a request that
    /// repeats the subscription as clients do.
    pub(crate) fn reply(&mut self, t: ResourceType, error: Option<&str>) -> Reply {
        let subscription = match self.mode {
            Mode::Sotw => self.last.get(&t).cloned().unwrap_or_default(),
            Mode::Delta => delta(&[], &[]),
        };
        let req = Request {
            type_url: t.type_url().to_string(),
            nonce: self.core.last_nonce(),
            error: error.map(str::to_string),
            subscription,
            ..Request::default()
        };
        self.core
            .request(req)
            .expect("a type the stream serves")
            .reply
    }

    /// Sends and ACKs until nothing is left to send; returns what was sent.
    fn settle(&mut self, t: ResourceType, snapshot: &Snapshot) -> Vec<Plan> {
        let mut sent = Vec::new();
        while let Some(plan) = self.send(t, snapshot) {
            assert!(matches!(self.reply(t, None), Reply::Ack(_)));
            sent.push(plan);
            assert!(sent.len() < 10, "no end to responses: {sent:?}");
        }
        sent
    }
}

fn names(plan: &Plan) -> Vec<&str> {
    plan.resources.iter().map(|r| r.name.as_str()).collect()
}

/// "The response_nonce field tells the server which of its responses the ACK or NACK is
/// associated with." / "ACK signifies successful configuration update".
#[test]
fn an_ack_names_its_response_by_nonce() {
    let s = config(&[("a", 1)], 1);
    let mut m = Machine::new(Mode::Sotw, false);
    m.request(Cluster, sotw(&[], ""), &s);
    m.send(Cluster, &s).expect("the first response");
    assert!(matches!(m.reply(Cluster, None), Reply::Ack(_)));
    assert!(m.core.client.get(Cluster).known.is(s.set(Cluster)));
}

/// "The management server should not send a DiscoveryResponse for any DiscoveryRequest that
/// has a stale nonce. A nonce becomes stale following a newer nonce being presented".
#[test]
fn a_stale_nonce_neither_acks_nor_nacks_and_sends_nothing() {
    let s = config(&[("a", 1)], 1);
    let mut m = Machine::new(Mode::Sotw, false);
    m.request(Cluster, sotw(&[], ""), &s);
    m.send(Cluster, &s).expect("response 1");
    let state = m.core.client.get_mut(Cluster);
    assert!(matches!(state.reply("0", Some("old".into())), Reply::None));
    assert!(state.in_flight.is_some());
    assert!(
        m.send(Cluster, &s).is_none(),
        "one response in flight per type"
    );
}

/// "NACK signifies unsuccessful configuration and is indicated by the presence of the
/// error_detail field." The rejected content is not sent again in a loop.
#[test]
fn a_nack_is_told_by_error_detail_and_not_answered_by_a_resend() {
    let s = config(&[("a", 1)], 1);
    let mut m = Machine::new(Mode::Delta, false);
    m.request(Endpoint, delta(&["a"], &[]), &s);
    m.send(Endpoint, &s).expect("endpoints");
    assert!(matches!(m.reply(Endpoint, Some("bad")), Reply::Nack(_, _)));
    assert!(m.send(Endpoint, &s).is_none(), "no resend loop");
}

/// "The management server should only send updates to the Envoy client when the resources
/// in the DiscoveryResponse have changed."
#[test]
fn nothing_is_sent_when_nothing_changed() {
    let s = config(&[("a", 1), ("b", 1)], 1);
    for mode in [Mode::Sotw, Mode::Delta] {
        let mut m = Machine::new(mode, false);
        m.request(Cluster, sotw(&[], ""), &s);
        assert_eq!(m.settle(Cluster, &s).len(), 1);
        let same = config(&[("a", 1), ("b", 1)], 1).follow(&s);
        assert!(m.send(Cluster, &same).is_none(), "{mode:?}");
    }
}

/// "if the client sends a request for a given resource type but has never explicitly
/// subscribed to any resource names [...] the server should treat that identically to how it
/// would treat the client having explicitly subscribed to "*"."
#[test]
fn sotw_an_empty_first_list_is_the_legacy_wildcard() {
    let s = config(&[("a", 1), ("b", 1)], 1);
    let mut m = Machine::new(Mode::Sotw, false);
    m.request(Cluster, sotw(&[], ""), &s);
    assert_eq!(names(&m.send(Cluster, &s).expect("all")), ["a", "b"]);
}

/// Issue 11 point 3. "once the client does explicitly subscribe to a resource name [...]
/// clearing the list of subscribed resources is interpreted as an unsubscription".
#[test]
fn sotw_an_empty_list_after_names_is_no_subscription() {
    let s = config(&[("a", 1), ("b", 1)], 1);
    let mut m = Machine::new(Mode::Sotw, false);
    m.request(Cluster, sotw(&["a"], ""), &s);
    assert_eq!(names(&m.settle(Cluster, &s)[0]), ["a"]);
    m.request(Cluster, sotw(&[], ""), &s);
    assert!(!m.core.client.get(Cluster).wildcard);
    let changed = config(&[("a", 2), ("b", 2)], 1).follow(&s);
    assert!(m.send(Cluster, &changed).is_none());
}

/// "Client sends a request with resource_names set to "*" and "A". Server interprets this as
/// continuing the existing subscription to "*" and adding a new subscription to "A"." /
/// "set to "A". Server interprets this as unsubscribing to "*"".
#[test]
fn sotw_star_and_names_combine_and_dropping_star_leaves_the_wildcard() {
    let s = config(&[("a", 1), ("b", 1)], 1);
    let mut m = Machine::new(Mode::Sotw, false);
    m.request(Cluster, sotw(&["*", "a"], ""), &s);
    assert_eq!(names(&m.settle(Cluster, &s)[0]), ["a", "b"]);
    m.request(Cluster, sotw(&["a"], ""), &s);
    let b_changed = config(&[("a", 1), ("b", 2)], 1).follow(&s);
    assert!(
        m.send(Cluster, &b_changed).is_none(),
        "b is no longer subscribed"
    );
    let a_changed = config(&[("a", 2), ("b", 2)], 1).follow(&b_changed);
    let plan = m.send(Cluster, &a_changed).expect("a changed");
    assert_eq!(
        names(&plan),
        ["a"],
        "a complete response of what is subscribed"
    );
}

/// "the server must include the complete state of the world, meaning that all resources of
/// the relevant type that are needed by the client must be included, even if they did not
/// change since the last response."
#[test]
fn sotw_listener_and_cluster_responses_are_complete() {
    let s = config(&[("a", 1), ("b", 1)], 1);
    let mut m = Machine::new(Mode::Sotw, false);
    m.request(Cluster, sotw(&[], ""), &s);
    m.settle(Cluster, &s);
    let one_changed = config(&[("a", 2), ("b", 1)], 1).follow(&s);
    let plan = m.send(Cluster, &one_changed).expect("the change");
    assert!(plan.complete);
    assert_eq!(names(&plan), ["a", "b"]);
}

/// Delta legacy wildcard: "Client sends a request with resource_names_subscribe unset. Server
/// interprets this as a subscription to "*"." / "set to "A". Server interprets this as
/// continuing the existing subscription to "*"" / unsubscribing "*" ends it.
#[test]
fn delta_wildcard_starts_empty_survives_names_and_ends_by_star() {
    let s = config(&[("a", 1), ("b", 1)], 1);
    let mut m = Machine::new(Mode::Delta, false);
    m.request(Cluster, delta(&[], &[]), &s);
    assert_eq!(names(&m.settle(Cluster, &s)[0]), ["a", "b"]);
    m.request(Cluster, delta(&["a"], &[]), &s);
    assert!(m.core.client.get(Cluster).wildcard);
    m.settle(Cluster, &s);
    m.request(Cluster, delta(&[], &["*"]), &s);
    let changed = config(&[("a", 2), ("b", 2)], 1).follow(&s);
    assert_eq!(
        names(&m.settle(Cluster, &changed)[0]),
        ["a"],
        "only a is left"
    );
}

/// Issue 11 point 4c. "When a resource subscribed to by a client does not exist, the server
/// will send a DeltaDiscoveryResponse message that contains that resource's name in the
/// removed_resources field."
#[test]
fn delta_a_missing_name_is_answered_in_removed_resources() {
    let s = config(&[("a", 1)], 1);
    let mut m = Machine::new(Mode::Delta, false);
    m.request(Endpoint, delta(&["a", "nope"], &[]), &s);
    let plan = m.send(Endpoint, &s).expect("an answer");
    assert_eq!(
        (names(&plan), plan.removed.clone()),
        (vec!["a"], vec!["nope".into()])
    );
    m.reply(Endpoint, None);
    m.request(Endpoint, delta(&["nope2"], &[]), &s);
    let plan = m.send(Endpoint, &s).expect("a later subscription too");
    assert_eq!(plan.removed, ["nope2"]);
}

/// Issue 11 point 4a. "A resource_names_subscribe field may contain resource names that the
/// server believes the client is already subscribed to, and furthermore has the most recent
/// versions of. However, the server *must* still provide those resources in the response".
#[test]
fn delta_resubscribing_re_sends_a_held_resource() {
    let s = config(&[("a", 1)], 1);
    let mut m = Machine::new(Mode::Delta, false);
    m.request(Endpoint, delta(&["a"], &[]), &s);
    m.settle(Endpoint, &s);
    m.request(Endpoint, delta(&["a"], &[]), &s);
    assert_eq!(names(&m.send(Endpoint, &s).expect("again")), ["a"]);
}

/// Issue 11 point 4b. "When a client has a wildcard subscription ("*") *and* a subscription
/// to another specific resource name, [...] if the client unsubscribes from that specific
/// resource name [...] the server must send a response that includes the specific resource
/// in either the removed_resources field [...] or in the resources field".
#[test]
fn delta_unsubscribing_a_name_under_the_wildcard_is_answered() {
    let s = config(&[("a", 1)], 1);
    let mut m = Machine::new(Mode::Delta, false);
    m.request(Cluster, delta(&["*", "a", "x"], &[]), &s);
    m.settle(Cluster, &s);
    m.request(Cluster, delta(&[], &["a", "x"]), &s);
    let plan = m.send(Cluster, &s).expect("the answer");
    assert_eq!(
        (names(&plan), plan.removed.clone()),
        (vec!["a"], vec!["x".into()])
    );
}

/// "On reconnect the Incremental xDS client may tell the server of its known resources to
/// avoid resending them over the network by sending them in initial_resource_versions."
#[test]
fn delta_initial_resource_versions_are_not_sent_again() {
    let s = config(&[("a", 1), ("b", 1)], 1);
    let mut m = Machine::new(Mode::Delta, false);
    let held: HashMap<String, String> = s
        .get(Endpoint)
        .resources
        .values()
        .filter(|r| r.name == "a")
        .map(|r| (r.name.clone(), r.version.clone()))
        .collect();
    m.request(
        Endpoint,
        Subscription::Changes {
            subscribe: vec!["a".into(), "b".into()],
            unsubscribe: Vec::new(),
            initial_versions: held,
        },
        &s,
    );
    assert_eq!(names(&m.send(Endpoint, &s).expect("only b")), ["b"]);
}

/// "In the incremental protocol variants, the server signals the client that a resource
/// should be deleted via the removed_resources field of the response."
#[test]
fn delta_a_deleted_resource_is_in_removed_resources() {
    let s = config(&[("a", 1), ("b", 1)], 1);
    let mut m = Machine::new(Mode::Delta, false);
    m.request(Cluster, delta(&[], &[]), &s);
    m.settle(Cluster, &s);
    let fewer = config(&[("a", 1)], 1).follow(&s);
    let plan = m.send(Cluster, &fewer).expect("the removal");
    assert_eq!(
        (names(&plan), plan.removed.clone()),
        (vec![], vec!["b".into()])
    );
}

/// Resource warming: "LDS updates must arrive after corresponding CDS/EDS updates." An Envoy
/// (wildcard CDS) gets a listener only once the clusters its routes use are warm.
#[test]
fn warming_order_holds_listeners_until_their_clusters_are_warm() {
    let s = config(&[("a", 1)], 1);
    let mut m = Machine::new(Mode::Sotw, true);
    m.request(Cluster, sotw(&[], ""), &s);
    m.request(Listener, sotw(&[], ""), &s);
    let first = m.send(Listener, &s).expect("an (empty) first answer");
    assert!(first.resources.is_empty());
    m.reply(Listener, None);
    m.send(Cluster, &s).expect("clusters");
    assert!(m.send(Listener, &s).is_none(), "clusters not yet known");
    m.request(Endpoint, sotw(&["a"], ""), &s);
    m.reply(Cluster, None);
    assert!(m.send(Listener, &s).is_none(), "endpoints not yet warm");
    m.settle(Endpoint, &s);
    assert_eq!(names(&m.send(Listener, &s).expect("now")), ["l"]);
}

/// "Warming of Cluster is completed only when a ClusterLoadAssignment response is supplied"
/// holds for EDS clusters only: a cluster whose names Envoy resolves (`resolve: envoy`,
/// STRICT_DNS or LOGICAL_DNS) has its endpoints inline and is never asked for over EDS. A
/// listener whose routes use one beside an EDS cluster is sent once the EDS cluster is warm
/// (it was held back for good: a real Envoy got an empty LDS, issue 25).
#[test]
fn warming_order_does_not_wait_for_endpoints_of_a_cluster_envoy_resolves() {
    // `b` (no route uses it yet) keeps the client from holding exactly the snapshot's
    // endpoints, so each cluster the route uses is looked at.
    let s = Snapshot::of([
        vec![res("a", 1), res("b", 1), res("dns", 1)],
        vec![res("a", 1), res("b", 1)],
        vec![res("l", 1)],
        vec![route("l", 1, &["a", "dns"])],
        Vec::new(),
    ]);
    let mut m = Machine::new(Mode::Sotw, true);
    m.request(Cluster, sotw(&[], ""), &s);
    m.request(Listener, sotw(&[], ""), &s);
    m.send(Listener, &s).expect("an (empty) first answer");
    m.reply(Listener, None);
    m.send(Cluster, &s).expect("clusters");
    m.request(Endpoint, sotw(&["a"], ""), &s);
    m.reply(Cluster, None);
    assert!(
        m.send(Listener, &s).is_none(),
        "endpoints of `a` not yet warm"
    );
    m.settle(Endpoint, &s);
    assert_eq!(names(&m.send(Listener, &s).expect("now")), ["l"]);
}

/// Issue 11 point 1. "Responses for Listener and Cluster resource types must include all
/// resources requested by the client": a client that asks for listeners before clusters
/// (proxyless gRPC: LDS, RDS, CDS, EDS) cannot warm them first, so it is not made to wait.
#[test]
fn warming_order_never_starves_a_client_without_clusters() {
    let s = config(&[("a", 1)], 1);
    let mut m = Machine::new(Mode::Sotw, true);
    m.request(Listener, sotw(&["l"], ""), &s);
    assert_eq!(names(&m.settle(Listener, &s)[0]), ["l"]);
    m.request(Route, sotw(&["l"], ""), &s);
    assert_eq!(names(&m.settle(Route, &s)[0]), ["l"]);
    // Subscribed to cluster `a` only: a route to a new cluster `b` is not held back for it.
    m.request(Cluster, sotw(&["a"], ""), &s);
    m.settle(Cluster, &s);
    m.request(Endpoint, sotw(&["a"], ""), &s);
    m.settle(Endpoint, &s);
    let more = config(&[("a", 1), ("b", 1)], 2).follow(&s);
    assert_eq!(names(&m.send(Route, &more).expect("at once")), ["l"]);
}

/// Issue 11 point 2. A NACK rejects some of a response (Envoy and gRPC keep the valid
/// resources of a rejected response): "The version_info indicates the most recent version
/// that the client is using" says nothing of which part. The revert is sent, and sync is
/// claimed only after an ACK.
#[test]
fn after_a_partial_nack_a_revert_is_sent() {
    for mode in [Mode::Sotw, Mode::Delta] {
        let s = config(&[("a", 1), ("b", 1)], 1);
        let mut m = Machine::new(mode, false);
        m.request(Cluster, sotw(&[], ""), &s);
        m.settle(Cluster, &s);
        let bad = config(&[("a", 2), ("b", 2)], 1).follow(&s);
        m.send(Cluster, &bad).expect("the change");
        assert!(matches!(
            m.reply(Cluster, Some("b is bad")),
            Reply::Nack(_, _)
        ));
        assert!(m.send(Cluster, &bad).is_none(), "{mode:?}: no resend loop");
        let reverted = config(&[("a", 1), ("b", 1)], 1).follow(&bad);
        let plan = m.send(Cluster, &reverted).expect("the revert is sent");
        assert_eq!(names(&plan), ["a", "b"], "{mode:?}");
        assert!(matches!(m.reply(Cluster, None), Reply::Ack(_)));
        assert!(m.core.client.get(Cluster).known.is(reverted.set(Cluster)));
    }
}

/// Clusters `a`'s definition at `cluster`, its endpoints at `endpoints`, no listener.
fn cluster_and_endpoints(cluster: u8, endpoints: u8, previous: Option<&Snapshot>) -> Snapshot {
    let s = Snapshot::of([
        vec![res("a", cluster)],
        vec![res("a", endpoints)],
        Vec::new(),
        Vec::new(),
        Vec::new(),
    ]);
    match previous {
        Some(p) => s.follow(p),
        None => s,
    }
}

/// Resource warming: "Warming of Cluster is completed only when a ClusterLoadAssignment
/// response is supplied by management server." Envoy re-creates (and warms again) a cluster
/// whose definition changed, and holds the CDS ACK until its endpoints arrive: on ADS, where
/// one stream carries both, the unchanged endpoints go out again right behind the update.
/// Per-type streams cannot see both types, so nothing is re-sent there.
#[test]
fn a_cluster_update_re_sends_its_endpoints_under_ads() {
    // (mode, ADS, endpoints re-sent behind the update)
    let table = [
        (Mode::Sotw, true, true),
        (Mode::Delta, true, true),
        (Mode::Sotw, false, false),
        (Mode::Delta, false, false),
    ];
    for (mode, ads, resent) in table {
        let s = cluster_and_endpoints(1, 1, None);
        let mut m = Machine::new(mode, ads);
        m.request(Cluster, sotw(&[], ""), &s);
        let eds = match mode {
            Mode::Sotw => sotw(&["a"], ""),
            Mode::Delta => delta(&["a"], &[]),
        };
        m.request(Endpoint, eds, &s);
        m.settle(Cluster, &s);
        m.settle(Endpoint, &s);
        let updated = cluster_and_endpoints(2, 1, Some(&s));
        let cds = m.send(Cluster, &updated).expect("the cluster update");
        assert_eq!(names(&cds), ["a"], "{mode:?} ads={ads}");
        // The CDS ACK is not there yet (Envoy waits for the endpoints).
        let eds = m.send(Endpoint, &updated);
        assert_eq!(
            eds.as_ref().map(names),
            resent.then(|| vec!["a"]),
            "{mode:?} ads={ads}"
        );
    }
}

/// The stream's judgement of "in sync" (what `/api/v1/nodes` and `flotilla_xds_nodes_out_of_sync`
/// show), one row per rule: "ACK signifies successful configuration update", "NACK signifies
/// unsuccessful configuration", a response without its ACK is neither, and a removal the
/// client has not acknowledged ("the server signals the client that a resource should be
/// deleted via the removed_resources field") is still held.
#[test]
fn in_sync_means_the_client_acknowledged_exactly_the_snapshot() {
    type Setup = fn(&mut Machine) -> Snapshot;
    let table: [(&str, Mode, bool, Setup, bool); 5] = [
        (
            "every response ACKed",
            Mode::Sotw,
            true,
            |m| {
                let s = config(&[("a", 1)], 1);
                for t in [Cluster, Listener] {
                    m.request(t, sotw(&[], ""), &s);
                }
                m.request(Endpoint, sotw(&["a"], ""), &s);
                m.request(Route, sotw(&["l"], ""), &s);
                for t in [Cluster, Endpoint, Listener, Route] {
                    m.settle(t, &s);
                }
                s
            },
            true,
        ),
        (
            "a response awaits its ACK",
            Mode::Delta,
            false,
            |m| {
                let s = config(&[("a", 1)], 1);
                m.request(Cluster, delta(&[], &[]), &s);
                m.send(Cluster, &s).expect("clusters");
                s
            },
            false,
        ),
        (
            "the client refused it (NACK)",
            Mode::Sotw,
            false,
            |m| {
                let s = config(&[("a", 1)], 1);
                m.request(Cluster, sotw(&[], ""), &s);
                m.send(Cluster, &s).expect("clusters");
                assert!(matches!(m.reply(Cluster, Some("bad")), Reply::Nack(_, _)));
                s
            },
            false,
        ),
        (
            "a removal not yet ACKed",
            Mode::Delta,
            false,
            |m| {
                let s = config(&[("a", 1), ("b", 1)], 1);
                m.request(Cluster, delta(&[], &[]), &s);
                m.settle(Cluster, &s);
                let fewer = config(&[("a", 1)], 1).follow(&s);
                m.send(Cluster, &fewer).expect("the removal");
                fewer
            },
            false,
        ),
        (
            "types never requested do not count",
            Mode::Delta,
            false,
            |m| {
                let s = config(&[("a", 1)], 1);
                m.request(Cluster, delta(&[], &[]), &s);
                m.settle(Cluster, &s);
                s
            },
            true,
        ),
    ];
    for (rule, mode, ads, setup, in_sync) in table {
        let mut m = Machine::new(mode, ads);
        let s = setup(&mut m);
        m.serve(&s);
        assert!(
            m.core.next().is_none(),
            "{rule}: the setup left something to send"
        );
        assert_eq!(m.core.in_sync(), in_sync, "{rule}");
    }
}

/// A request for a type the stream does not serve ends the stream: "type_url is required on
/// an ADS stream" (the aggregated service multiplexes every type by it), and a per-type
/// service serves its type only.
#[test]
fn a_request_for_a_type_the_stream_does_not_serve_is_refused() {
    let s = Arc::new(config(&[("a", 1)], 1));
    let request = |type_url: &str| Request {
        type_url: type_url.to_string(),
        ..Request::default()
    };
    let mut ads = Core::new(Mode::Sotw, Kind::ADS, s.clone(), Instant::now());
    assert!(ads.request(request("")).is_err(), "ADS needs the type");
    assert!(ads.request(request("type.googleapis.com/nope")).is_err());
    let mut cds = Core::new(Mode::Sotw, Kind::single(Cluster), s, Instant::now());
    assert_eq!(cds.request(request("")).expect("its own type").t, Cluster);
    assert!(cds.request(request(Listener.type_url())).is_err());
}

/// A NACK's message is kept to its limit: one 3.9 MB message per Envoy from 1,000 Envoys once
/// took gigabytes (issue 27).
#[test]
fn a_huge_nack_message_is_cut_as_it_is_read() {
    let s = config(&[("a", 1)], 1);
    let mut m = Machine::new(Mode::Sotw, false);
    m.request(Cluster, sotw(&[], ""), &s);
    m.send(Cluster, &s).expect("clusters");
    let huge = "x".repeat(4_000_000);
    match m.reply(Cluster, Some(&huge)) {
        Reply::Nack(_, message) => {
            assert!(
                message.len() < crate::xds::stream_core::MAX_NACK_MESSAGE_BYTES + 64,
                "{}",
                message.len()
            );
            assert!(message.ends_with("of 4000000 bytes shown)"));
        }
        other => panic!("a NACK: {other:?}"),
    }
}
