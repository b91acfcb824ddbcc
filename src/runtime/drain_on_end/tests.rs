//! Draining on stream end against a real controller and the local store: one rule per row,
//! and a property test of the takeover rule.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use tokio_util::sync::CancellationToken;

use super::takes_over;
use crate::cache::SnapshotCache;
use crate::config::parse_str;
use crate::control::Controller;
use crate::runtime::leases::Lease;
use crate::runtime::session::{BoundRegistration, Session};
use crate::runtime::{Runtime, RuntimeError};
use crate::store::{Registration, StateFile, StreamOwner};

const PEER: Option<IpAddr> = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
const ADDRESS: &str = "127.0.0.7:15006";

fn runtime(dir: &tempfile::TempDir) -> (Arc<Controller>, Arc<Runtime>) {
    let c = Controller::new(Arc::new(SnapshotCache::new()), Default::default());
    let config = parse_str(
        "t.yaml",
        "version: 1\nclusters:\n  payments: { endpoints: [127.0.0.1:8081], registrations: {} }\n",
    )
    .unwrap();
    c.set_config(Arc::new(config));
    let rt = Runtime::local(
        c.clone(),
        StateFile::new(dir.path().join("s.json")),
        CancellationToken::new(),
    )
    .unwrap();
    (c, rt)
}

fn sidecar(instance: Option<&str>) -> BoundRegistration {
    BoundRegistration {
        cluster: "payments".into(),
        address: ADDRESS.into(),
        weight: 1,
        instance: instance.map(str::to_string),
        ..Default::default()
    }
}

/// A stream of `instance` (None: a plain registration stream) that drains for `grace`.
async fn join(
    rt: &Arc<Runtime>,
    instance: Option<&str>,
    grace: Duration,
) -> Result<Session, RuntimeError> {
    let mut s = rt.open_session(PEER).unwrap();
    s.drain_on_end(grace);
    s.register(&sidecar(instance)).await?;
    s.published().await;
    Ok(s)
}

/// (registered, leaving) for the address, as the overlay serves it.
fn served(c: &Controller) -> (bool, bool) {
    let o = c.overlay();
    let registered = o
        .registered
        .get("payments")
        .is_some_and(|v| v.iter().any(|e| e.address.to_string() == ADDRESS));
    let leaving = o.leaving.iter().any(|k| k.address.to_string() == ADDRESS);
    (registered, leaving)
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never: {what}");
}

const LONG: Duration = Duration::from_secs(30);
const SHORT: Duration = Duration::from_millis(50);

#[tokio::test]
async fn a_stream_that_ends_drains_for_the_grace_then_its_endpoint_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (c, rt) = runtime(&dir);
    let s = join(&rt, Some("payments-1"), Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(served(&c), (true, false));
    let ended = std::time::Instant::now();
    drop(s);
    rt.registrations_published().await;
    assert_eq!(served(&c), (true, true), "draining at once");
    until("removed after the grace", || served(&c) == (false, false)).await;
    assert!(ended.elapsed() >= Duration::from_millis(300));
    assert!(rt.leases().is_empty());
}

#[tokio::test]
async fn a_stream_without_drain_on_end_leaves_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (c, rt) = runtime(&dir);
    let s = rt.open_session(PEER).unwrap();
    s.register(&sidecar(Some("payments-1"))).await.unwrap();
    drop(s);
    rt.registrations_published().await;
    assert_eq!(served(&c), (false, false));
}

/// Who claims the address of a sidecar whose stream ended, and when.
struct Claim {
    rule: &'static str,
    grace: Duration,
    /// Claim once the first stream's endpoint is gone (after the grace), or during it.
    after_grace: bool,
    claimant: Option<&'static str>,
    accepted: bool,
}

#[tokio::test]
async fn who_may_claim_a_draining_instance() {
    let table = [
        Claim {
            rule: "the same sidecar reconnecting within the grace takes its instance back",
            grace: LONG,
            after_grace: false,
            claimant: Some("payments-1"),
            accepted: true,
        },
        Claim {
            rule: "another sidecar is refused the address while it drains",
            grace: LONG,
            after_grace: false,
            claimant: Some("payments-2"),
            accepted: false,
        },
        Claim {
            rule: "a registration stream is refused the address while it drains",
            grace: LONG,
            after_grace: false,
            claimant: None,
            accepted: false,
        },
        Claim {
            rule: "the same sidecar after the grace registers anew",
            grace: SHORT,
            after_grace: true,
            claimant: Some("payments-1"),
            accepted: true,
        },
        Claim {
            rule: "another sidecar after the grace registers",
            grace: SHORT,
            after_grace: true,
            claimant: Some("payments-2"),
            accepted: true,
        },
    ];
    for row in table {
        let dir = tempfile::tempdir().unwrap();
        let (c, rt) = runtime(&dir);
        drop(join(&rt, Some("payments-1"), row.grace).await.unwrap());
        rt.registrations_published().await;
        assert_eq!(served(&c), (true, true), "{}: draining", row.rule);
        if row.after_grace {
            until(row.rule, || served(&c) == (false, false)).await;
        }
        let got = join(&rt, row.claimant, LONG).await;
        assert_eq!(got.is_ok(), row.accepted, "{}: {:?}", row.rule, got.err());
        if let Err(e) = &got {
            assert!(matches!(e, RuntimeError::Taken { .. }), "{}: {e}", row.rule);
            assert_eq!(served(&c), (true, true), "{}: still draining", row.rule);
            continue;
        }
        assert_eq!(served(&c), (true, false), "{}: active", row.rule);
        let leases = rt.leases();
        assert_eq!(leases.len(), 1, "{}", row.rule);
        assert_eq!(
            leases[0].stream,
            got.as_ref().ok().map(|s| s.id()),
            "{}: held by the new stream",
            row.rule
        );
    }
}

#[tokio::test]
async fn a_takeover_survives_the_end_of_the_first_streams_grace() {
    let dir = tempfile::tempdir().unwrap();
    let (c, rt) = runtime(&dir);
    drop(
        join(&rt, Some("payments-1"), Duration::from_millis(200))
            .await
            .unwrap(),
    );
    let back = join(&rt, Some("payments-1"), LONG).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    rt.registrations_published().await;
    assert_eq!(served(&c), (true, false));
    assert_eq!(rt.leases()[0].stream, Some(back.id()));
    drop(back);
    rt.registrations_published().await;
    assert_eq!(served(&c), (true, true), "the new stream drains in turn");
}

fn lease(leaving: bool, session: bool, instance: Option<&str>) -> Lease {
    Lease {
        weight: 1,
        ttl: Duration::ZERO,
        expires: tokio::time::Instant::now(),
        registered: std::time::SystemTime::now(),
        renewals: 0,
        session: session.then(|| StreamOwner {
            replica: "a".into(),
            session: 1,
        }),
        zone: None,
        metadata: Default::default(),
        leaving,
        instance: instance.map(str::to_string),
    }
}

fn claim(stream: bool, instance: Option<&str>) -> Registration {
    Registration {
        stream: stream.then(|| StreamOwner {
            replica: "b".into(),
            session: 2,
        }),
        instance: instance.map(str::to_string),
        ..Registration::leased(1, Duration::ZERO)
    }
}

proptest! {
    /// A takeover needs all of: the held registration leaving, both stream registrations,
    /// and the same (named) sidecar.
    #[test]
    fn a_takeover_is_exactly_a_leaving_sidecar_reclaimed_by_itself(
        leaving: bool, held_stream: bool, claim_stream: bool,
        held in prop::option::of(0u8..3), claimant in prop::option::of(0u8..3),
    ) {
        let name = |n: Option<u8>| n.map(|n| format!("payments-{n}"));
        let (held_name, claim_name) = (name(held), name(claimant));
        let got = takes_over(
            &lease(leaving, held_stream, held_name.as_deref()),
            &claim(claim_stream, claim_name.as_deref()),
        );
        let want = leaving && held_stream && claim_stream && held.is_some() && held == claimant;
        prop_assert_eq!(got, want);
    }
}
