//! What a non-HTTP listener forwards: whole connections, by listener or by TLS server name.

/// How a `protocol: tcp` or `protocol: tls_passthrough` listener picks a cluster for a
/// connection. Envoy never looks inside the bytes: no HTTP, no TLS termination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpForward {
    /// `protocol: tcp`: every connection goes to this cluster.
    To(String),
    /// `protocol: tls_passthrough`: the ClientHello's SNI picks the cluster. Server names are
    /// exact (`a.example.com`) or a leading wildcard (`*.b.example.com`), in name order.
    Sni(Vec<SniRoute>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SniRoute {
    pub server_name: String,
    pub cluster: String,
}

impl TcpForward {
    pub fn clusters(&self) -> impl Iterator<Item = &str> {
        let (single, sni) = match self {
            TcpForward::To(c) => (Some(c.as_str()), &[][..]),
            TcpForward::Sni(s) => (None, s.as_slice()),
        };
        single
            .into_iter()
            .chain(sni.iter().map(|r| r.cluster.as_str()))
    }
}
