//! A property test: random request sequences against a small reference model of the spec.
//!
//! The model client subscribes (SotW lists or delta changes, wildcard or by name), applies
//! what it receives, ACKs or NACKs (a NACK applies nothing), and the snapshot changes under
//! it. Checked on every response: nothing is sent that the client did not ask for, a SotW
//! LDS/CDS response is the complete subscribed set, and a NACK is not answered by a resend of
//! the same content. Checked at the end, once the client ACKs everything: it holds exactly
//! the snapshot's subscribed resources (nothing asked for is withheld, nothing stale stays).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use crate::cache::{ResourceType, Snapshot};
use crate::xds::protocol::spec_tests::{Machine, delta, res, sotw};
use crate::xds::protocol::{Mode, Plan};
use crate::xds::subscription::Reply;

const NAMES: [&str; 4] = ["a", "b", "c", "d"];

#[derive(Debug, Clone)]
enum Op {
    /// Subscribe to exactly these names (indexes into NAMES), or the wildcard.
    Subscribe {
        names: Vec<usize>,
        wildcard: bool,
    },
    /// The snapshot becomes these (name, body) pairs.
    Change(Vec<(usize, u8)>),
    Ack,
    Nack,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (proptest::collection::vec(0..4usize, 0..4), any::<bool>())
            .prop_map(|(names, wildcard)| Op::Subscribe { names, wildcard }),
        proptest::collection::vec((0..4usize, 0..3u8), 0..5).prop_map(Op::Change),
        Just(Op::Ack),
        Just(Op::Ack),
        Just(Op::Nack),
    ]
}

fn snapshot(contents: &[(usize, u8)], previous: Option<&Snapshot>) -> Snapshot {
    let map: BTreeMap<&str, u8> = contents.iter().map(|(i, b)| (NAMES[*i], *b)).collect();
    let set: Vec<_> = map.iter().map(|(n, b)| res(n, *b)).collect();
    let s = Snapshot::of([set.clone(), set, Vec::new(), Vec::new(), Vec::new()]);
    match previous {
        Some(p) => s.follow(p),
        None => s,
    }
}

/// The reference client: what it subscribes to and holds (name → version).
#[derive(Debug, Default)]
struct Model {
    wildcard: bool,
    names: BTreeSet<String>,
    holds: BTreeMap<String, String>,
    /// Resources the client rejected, at the version rejected: flotilla does not send them
    /// again until they change (no resend loop), so they may stay unconverged.
    rejected: BTreeMap<String, String>,
    /// A rejected complete set (SotW LDS/CDS), likewise.
    rejected_set: Option<BTreeMap<String, String>>,
    /// Names whose removal was rejected.
    rejected_removals: BTreeSet<String>,
}

impl Model {
    fn wants(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }

    /// What the client should end up holding of `snapshot`.
    fn wanted(&self, snapshot: &Snapshot, t: ResourceType) -> BTreeMap<String, String> {
        snapshot
            .get(t)
            .resources
            .values()
            .filter(|r| self.wants(&r.name))
            .map(|r| (r.name.clone(), r.version.clone()))
            .collect()
    }

    fn rejected(&mut self, plan: &Plan) {
        if plan.complete {
            self.rejected_set = Some(
                plan.resources
                    .iter()
                    .map(|r| (r.name.clone(), r.version.clone()))
                    .collect(),
            );
            return;
        }
        for r in &plan.resources {
            self.rejected.insert(r.name.clone(), r.version.clone());
        }
        self.rejected_removals.extend(plan.removed.iter().cloned());
    }

    fn settled(&mut self, plan: &Plan) {
        if plan.complete {
            self.rejected_set = None;
        }
        for r in &plan.resources {
            self.rejected.remove(&r.name);
            self.rejected_removals.remove(&r.name);
        }
        for name in &plan.removed {
            self.rejected_removals.remove(name);
        }
    }

    fn apply(&mut self, plan: &Plan) {
        if plan.complete {
            self.holds.clear();
        }
        for r in &plan.resources {
            self.holds.insert(r.name.clone(), r.version.clone());
        }
        for name in &plan.removed {
            self.holds.remove(name);
        }
    }
}

struct Run {
    machine: Machine,
    model: Model,
    t: ResourceType,
    snapshot: Snapshot,
    in_flight: Option<Plan>,
    subscribed_once: bool,
    /// The subscription or snapshot changed since the response in flight was planned.
    changed_since_sent: bool,
}

impl Run {
    fn subscribe(&mut self, names: &[usize], wildcard: bool) {
        let wildcard = wildcard && self.t.is_wildcard();
        let wanted: BTreeSet<String> = names.iter().map(|i| NAMES[*i].to_string()).collect();
        let sub = match self.machine.mode {
            Mode::Sotw => {
                let mut list: Vec<&str> = wanted.iter().map(String::as_str).collect();
                if wildcard {
                    list.push("*");
                }
                sotw(&list, "")
            }
            Mode::Delta => {
                let mut add: Vec<&str> = wanted
                    .difference(&self.model.names)
                    .map(String::as_str)
                    .collect();
                let mut remove: Vec<&str> = self
                    .model
                    .names
                    .difference(&wanted)
                    .map(String::as_str)
                    .collect();
                match (self.model.wildcard, wildcard) {
                    (false, true) => add.push("*"),
                    (true, false) => remove.push("*"),
                    _ => {}
                }
                if !self.subscribed_once && add.is_empty() && self.t.is_wildcard() && !wildcard {
                    add.push("x"); // an empty first request would be the legacy wildcard
                }
                for name in &add {
                    self.model.rejected.remove(*name);
                }
                delta(&add, &remove)
            }
        };
        self.changed_since_sent = true;
        self.machine.request(self.t, sub, &self.snapshot);
        self.subscribed_once = true;
        self.model.wildcard = wildcard;
        self.model.names = wanted;
        // The client forgets what it no longer subscribes to.
        let model = &mut self.model;
        let keep: BTreeSet<String> = model
            .holds
            .keys()
            .filter(|n| model.wildcard || model.names.contains(*n))
            .cloned()
            .collect();
        model.holds.retain(|n, _| keep.contains(n));
    }

    /// Sends whatever flotilla sends now, checking it.
    fn poll(&mut self) -> Result<(), TestCaseError> {
        if self.in_flight.is_some() {
            return Ok(());
        }
        let Some(plan) = self.machine.send(self.t, &self.snapshot) else {
            return Ok(());
        };
        for r in &plan.resources {
            prop_assert!(
                self.model.wants(&r.name),
                "sent {} that the client did not ask for",
                r.name
            );
        }
        if plan.complete {
            let sent: BTreeMap<String, String> = plan
                .resources
                .iter()
                .map(|r| (r.name.clone(), r.version.clone()))
                .collect();
            prop_assert_eq!(&sent, &self.model.wanted(&self.snapshot, self.t));
        }
        self.in_flight = Some(plan);
        self.changed_since_sent = false;
        Ok(())
    }
}

fn check(mode: Mode, t: ResourceType, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut run = Run {
        machine: Machine::new(mode, false),
        model: Model::default(),
        t,
        snapshot: snapshot(&[(0, 0), (1, 0)], None),
        in_flight: None,
        subscribed_once: false,
        changed_since_sent: false,
    };
    run.subscribe(&[0], false);
    run.poll()?;
    for op in ops {
        match op {
            Op::Subscribe { names, wildcard } => run.subscribe(&names, wildcard),
            Op::Change(contents) => {
                run.snapshot = snapshot(&contents, Some(&run.snapshot));
                run.changed_since_sent = true;
            }
            Op::Ack => {
                if let Some(plan) = run.in_flight.take() {
                    prop_assert!(matches!(run.machine.reply(t, None), Reply::Ack(_)));
                    run.model.apply(&plan);
                    run.model.settled(&plan);
                    // A client drops what it receives but did not ask for.
                    let model = &mut run.model;
                    let wanted: BTreeSet<String> = model
                        .holds
                        .keys()
                        .filter(|n| model.wildcard || model.names.contains(*n))
                        .cloned()
                        .collect();
                    model.holds.retain(|n, _| wanted.contains(n));
                }
            }
            Op::Nack => {
                if let Some(plan) = run.in_flight.take() {
                    prop_assert!(matches!(
                        run.machine.reply(t, Some("no")),
                        Reply::Nack(_, _)
                    ));
                    run.model.rejected(&plan);
                    if !run.changed_since_sent {
                        prop_assert!(
                            run.machine.send(t, &run.snapshot).is_none(),
                            "a NACK was answered by a resend of the same content"
                        );
                    }
                }
            }
        }
        run.poll()?;
    }
    // Convergence: the client ACKs everything from now on.
    for _ in 0..10 {
        if let Some(plan) = run.in_flight.take() {
            prop_assert!(matches!(run.machine.reply(t, None), Reply::Ack(_)));
            run.model.apply(&plan);
            run.model.settled(&plan);
        }
        run.poll()?;
        if run.in_flight.is_none() {
            break;
        }
    }
    prop_assert!(run.in_flight.is_none(), "responses never end");
    let model = &run.model;
    let mut wanted = model.wanted(&run.snapshot, t);
    if model.rejected_set.as_ref() == Some(&wanted) {
        return Ok(()); // the client refused exactly this set, which is not sent again
    }
    // Still rejected at the version the snapshot has: not sent again, held in any state.
    let refused = |n: &String| {
        model.rejected.get(n) == run.snapshot.get(t).get(n).map(|r| &r.version)
            || model.rejected_removals.contains(n)
    };
    wanted.retain(|n, _| !refused(n));
    let held: BTreeMap<String, String> = model
        .holds
        .iter()
        .filter(|(n, _)| model.wants(n) && !refused(n))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    if mode == Mode::Sotw && !t.is_wildcard() {
        // SotW EDS/RDS cannot remove: only what exists must be held, at its version.
        for (name, version) in &wanted {
            prop_assert_eq!(held.get(name), Some(version), "{} withheld", name);
        }
    } else {
        prop_assert_eq!(held, wanted, "converged to the snapshot");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn sotw_clusters_follow_the_model(ops in proptest::collection::vec(op(), 0..24)) {
        check(Mode::Sotw, ResourceType::Cluster, ops)?;
    }

    #[test]
    fn sotw_endpoints_follow_the_model(ops in proptest::collection::vec(op(), 0..24)) {
        check(Mode::Sotw, ResourceType::Endpoint, ops)?;
    }

    #[test]
    fn delta_clusters_follow_the_model(ops in proptest::collection::vec(op(), 0..24)) {
        check(Mode::Delta, ResourceType::Cluster, ops)?;
    }

    #[test]
    fn delta_endpoints_follow_the_model(ops in proptest::collection::vec(op(), 0..24)) {
        check(Mode::Delta, ResourceType::Endpoint, ops)?;
    }
}
