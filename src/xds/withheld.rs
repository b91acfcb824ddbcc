//! A client naming a listener that is for the other kind of client (an Envoy asking for a
//! proxyless gRPC listener, a gRPC client for a socket listener): it is answered as not
//! existing (the snapshot it is served leaves the listener out), and told why here, once per
//! listener and stream.

use std::collections::BTreeSet;

use super::protocol::Subscription;
use crate::cache::ClientKind;

/// The withheld listeners `sub` names that the stream has not told the client about yet;
/// they are added to `told`.
pub(crate) fn newly_asked(
    sub: &Subscription,
    withheld: &BTreeSet<String>,
    told: &mut BTreeSet<String>,
) -> Vec<String> {
    let mut asked = Vec::new();
    let mut check = |name: &str| {
        if withheld.contains(name) && !told.contains(name) {
            told.insert(name.to_string());
            asked.push(name.to_string());
        }
    };
    match sub {
        Subscription::Complete { names, .. } => names.iter().for_each(&mut check),
        Subscription::Changes { subscribe, .. } => subscribe.iter().for_each(|n| check(n.as_str())),
    }
    asked
}

/// What the log and the event say.
pub(crate) fn message(kind: ClientKind, node: &str, listener: &str) -> String {
    match kind {
        ClientKind::Envoy => format!(
            "Envoy node {node} asked for proxyless gRPC listener {listener}; it is served only to gRPC clients"
        ),
        _ => format!(
            "gRPC client node {node} asked for listener {listener}, an Envoy listener (it has an address); it is served only to Envoys"
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::xds::request::NameList;

    fn sotw(names: &[&str]) -> Subscription {
        Subscription::Complete {
            names: NameList::from_names(names),
            version_info: String::new(),
        }
    }

    fn delta(subscribe: &[&str], unsubscribe: &[&str]) -> Subscription {
        Subscription::Changes {
            subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
            unsubscribe: unsubscribe.iter().map(|s| s.to_string()).collect(),
            initial_versions: HashMap::new(),
        }
    }

    #[test]
    fn only_withheld_names_not_yet_told_are_reported() {
        let withheld: BTreeSet<String> = ["g1", "g2"].map(String::from).into();
        // (told before, request, reported)
        let cases: &[(&[&str], Subscription, &[&str])] = &[
            (&[], sotw(&[]), &[]),
            (&[], sotw(&["*"]), &[]),
            (&[], sotw(&["web"]), &[]),
            (&[], sotw(&["web", "g1"]), &["g1"]),
            (&["g1"], sotw(&["web", "g1"]), &[]),
            (&["g1"], sotw(&["g1", "g2"]), &["g2"]),
            (&[], delta(&["g2", "web"], &[]), &["g2"]),
            (&[], delta(&[], &["g1"]), &[]),
            (&["g2"], delta(&["g2"], &[]), &[]),
        ];
        for (before, sub, want) in cases {
            let mut told: BTreeSet<String> = before.iter().map(|s| s.to_string()).collect();
            let asked = newly_asked(sub, &withheld, &mut told);
            assert_eq!(asked, want.to_vec(), "told {before:?}, request {sub:?}");
            assert!(
                want.iter().all(|n| told.contains(*n)),
                "{sub:?}: remembered"
            );
        }
    }

    #[test]
    fn the_message_names_the_node_the_listener_and_who_it_is_for() {
        assert_eq!(
            message(ClientKind::Envoy, "edge-1", "greeter:50051"),
            "Envoy node edge-1 asked for proxyless gRPC listener greeter:50051; it is served only to gRPC clients"
        );
        let m = message(ClientKind::Grpc, "app-1", "public");
        assert!(
            m.starts_with("gRPC client node app-1 asked for listener public"),
            "{m}"
        );
        assert!(m.ends_with("served only to Envoys"), "{m}");
    }
}
