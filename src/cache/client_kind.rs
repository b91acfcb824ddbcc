//! Which kind of xDS client a stream serves, from `node.user_agent_name`: Envoy and proxyless
//! gRPC clients run different listeners (a socket vs an `api_listener`), and each is served
//! only its own kind, so neither receives a listener it cannot run.

/// The kind of client, as far as listeners are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKind {
    /// `user_agent_name` "envoy": socket listeners only.
    Envoy,
    /// A gRPC library ("gRPC Python", "gRPC Go", "grpc-java", …): proxyless gRPC listeners only.
    Grpc,
    /// Any other xDS client (tools, test clients): every listener, as before kinds existed.
    Other,
}

impl ClientKind {
    pub fn from_user_agent(name: &str) -> ClientKind {
        if name == "envoy" {
            ClientKind::Envoy
        } else if name
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("grpc"))
        {
            ClientKind::Grpc
        } else {
            ClientKind::Other
        }
    }

    /// Whether this kind of client is served a listener (`grpc`: a proxyless gRPC one).
    pub fn serves(self, grpc: bool) -> bool {
        match self {
            ClientKind::Envoy => !grpc,
            ClientKind::Grpc => grpc,
            ClientKind::Other => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ClientKind::{self, Envoy, Grpc, Other};

    #[test]
    fn the_user_agent_name_decides_the_kind() {
        for (name, kind) in [
            ("envoy", Envoy),
            ("gRPC Python", Grpc),
            ("gRPC Go", Grpc),
            ("grpc-java", Grpc),
            ("GRPC C-core", Grpc),
            ("", Other),
            ("flotilla-loadgen", Other),
            ("Envoy", Other),
            ("grp", Other),
        ] {
            assert_eq!(ClientKind::from_user_agent(name), kind, "{name:?}");
        }
    }

    #[test]
    fn each_kind_is_served_its_own_listeners() {
        for (kind, socket, grpc) in [
            (Envoy, true, false),
            (Grpc, false, true),
            (Other, true, true),
        ] {
            assert_eq!(kind.serves(false), socket, "{kind:?} socket listener");
            assert_eq!(kind.serves(true), grpc, "{kind:?} gRPC listener");
        }
    }
}
