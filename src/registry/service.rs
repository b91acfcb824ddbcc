//! One registration stream: registrations, the drain handshake, and the end of the stream.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, Response, Status, Streaming};
use tracing::{debug, info};

use super::drain::{self, DEFAULT_DEADLINE, Drained, MAX_DEADLINE};
use super::proto::register_request::Request as Req;
use super::proto::register_response::Response as Resp;
use super::proto::registry_server::Registry;
use super::proto::{
    Draining, EndpointRef, Leave, MayExit, RegisterRequest, RegisterResponse, Registered, Rejected,
};
use crate::overlay::EndpointKey;
use crate::runtime::session::{BoundRegistration, Session};
use crate::runtime::{Runtime, RuntimeError};

/// Largest request message accepted (a registration with its metadata is far smaller).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// A client that leaves a response unread this long loses its stream (and registrations).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// The `flotilla.registry.v1.Registry` service.
#[derive(Clone)]
pub struct RegistryService {
    pub runtime: Arc<Runtime>,
    /// Ends open streams on shutdown.
    pub shutdown: CancellationToken,
    /// With mTLS, a registration needs a certificate with an identity of the trust domain.
    pub authorizer: crate::identity::Authorizer,
    /// The connected Envoys, whose admin interfaces are never registered.
    pub nodes: Arc<crate::xds::NodeRegistry>,
    /// Whether a stream must carry the admin token (a plaintext xDS port beyond loopback).
    pub token: StreamToken,
}

/// What a registration stream must show besides its client certificate.
#[derive(Debug, Clone, Default)]
pub enum StreamToken {
    /// Nothing: the xDS port is on loopback or serves TLS.
    #[default]
    NotNeeded,
    /// `authorization: Bearer <admin token>`, on a plaintext xDS port beyond loopback,
    /// where anyone who reaches the port could otherwise register (None: no token is
    /// configured, so every stream is refused).
    Required(Option<String>),
}

impl StreamToken {
    /// The rule for an xDS port listening on `listen`, with TLS or not.
    pub fn for_port(listen: SocketAddr, tls: bool, admin_token: Option<String>) -> StreamToken {
        if tls || listen.ip().is_loopback() {
            StreamToken::NotNeeded
        } else {
            StreamToken::Required(admin_token)
        }
    }

    fn check(&self, metadata: &tonic::metadata::MetadataMap) -> Result<(), Status> {
        let StreamToken::Required(token) = self else {
            return Ok(());
        };
        let Some(token) = token else {
            return Err(Status::permission_denied(
                "registration over a plaintext xDS port beyond loopback needs the admin token, \
                 and none is configured (--admin-token), or TLS on the xDS port",
            ));
        };
        let sent = metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let matches = sent.is_some_and(|s| {
            s.len() == token.len()
                && s.bytes()
                    .zip(token.bytes())
                    .fold(0u8, |a, (x, y)| a | (x ^ y))
                    == 0
        });
        if !matches {
            return Err(Status::unauthenticated(
                "registration over a plaintext xDS port beyond loopback needs the admin token \
                 (authorization: Bearer …; `flotilla register --registry-token`)",
            ));
        }
        Ok(())
    }
}

impl RegistryService {
    /// The tonic service, with its message size limit.
    pub fn server(self) -> super::proto::registry_server::RegistryServer<RegistryService> {
        super::proto::registry_server::RegistryServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    }
}

type Responses = Pin<Box<dyn Stream<Item = Result<RegisterResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Registry for RegistryService {
    type RegisterStream = Responses;

    async fn register(
        &self,
        req: Request<Streaming<RegisterRequest>>,
    ) -> Result<Response<Responses>, Status> {
        let xds_peer = req.extensions().get::<crate::identity::XdsPeer>();
        self.authorizer.check_registration(xds_peer)?;
        self.token.check(req.metadata())?;
        let identity_fleets = xds_peer.and_then(|p| p.cert.as_ref()).map(|c| {
            c.identities
                .iter()
                .map(|i| i.fleet.clone())
                .collect::<Vec<_>>()
        });
        let peer = xds_peer.and_then(|p| p.remote_addr()).or(req.remote_addr());
        let session = self
            .runtime
            .open_session(peer.map(|p| p.ip()))
            .map_err(|e| Status::new(code(&e), e.to_string()))?;
        let (tx, rx) = mpsc::channel(16);
        let stream = InstanceStream {
            session,
            tx,
            runtime: self.runtime.clone(),
            peer,
            identity_fleets,
            nodes: self.nodes.clone(),
        };
        tokio::spawn(stream.run(req.into_inner(), self.shutdown.clone()));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// What serves one instance's stream.
struct InstanceStream {
    session: Session,
    tx: mpsc::Sender<Result<RegisterResponse, Status>>,
    runtime: Arc<Runtime>,
    peer: Option<SocketAddr>,
    /// The fleets of the stream's client certificate (None without mTLS).
    identity_fleets: Option<Vec<String>>,
    nodes: Arc<crate::xds::NodeRegistry>,
}

impl InstanceStream {
    async fn run(mut self, mut requests: Streaming<RegisterRequest>, shutdown: CancellationToken) {
        let id = self.session.id();
        debug!(stream = id, peer = ?self.peer, "registration stream opened");
        let mut drains: JoinSet<(Vec<EndpointKey>, Drained)> = JoinSet::new();
        let mut reading = true;
        let end = loop {
            tokio::select! {
                () = shutdown.cancelled() => break Some(Status::unavailable("flotilla is shutting down")),
                () = self.tx.closed() => break None,
                Some(key) = self.session.leave_requests.recv() => {
                    if !self.leave(vec![(key.cluster, key.address.to_string())], DEFAULT_DEADLINE, &mut drains).await {
                        break None;
                    }
                }
                Some(done) = drains.join_next() => {
                    let Ok((keys, drained)) = done else { continue };
                    let reply = Resp::MayExit(MayExit {
                        endpoints: keys.iter().map(reference).collect(),
                        deadline_passed: drained.deadline_passed,
                        in_flight: drained.in_flight,
                    });
                    info!(stream = id, endpoints = keys.len(), ?drained, "drained: instance may exit");
                    if !self.send(reply).await {
                        break None;
                    }
                }
                message = requests.message(), if reading => match message {
                    Ok(Some(request)) => {
                        if !self.handle(request, &mut drains).await {
                            break None;
                        }
                    }
                    // Half-closed: drains in progress still get their answer.
                    Ok(None) if !drains.is_empty() => reading = false,
                    Ok(None) => break None,
                    Err(status) => break Some(Status::invalid_argument(format!(
                        "the registration stream broke or sent an unreadable message ({}); its registrations are removed",
                        status.message()
                    ))),
                },
                else => break None,
            }
        };
        if let Some(status) = end {
            let _ = self.tx.try_send(Err(status));
        }
        debug!(stream = id, "registration stream closed");
        // Dropping the session removes every endpoint of the stream.
    }

    /// Applies one request; false when the stream must end.
    async fn handle(
        &mut self,
        request: RegisterRequest,
        drains: &mut JoinSet<(Vec<EndpointKey>, Drained)>,
    ) -> bool {
        match request.request {
            Some(Req::Register(e)) => {
                let endpoint = EndpointRef {
                    cluster: e.cluster.clone(),
                    address: e.address.clone(),
                };
                let registration = BoundRegistration {
                    cluster: e.cluster,
                    address: e.address,
                    weight: e.weight,
                    zone: Some(e.zone).filter(|z| !z.is_empty()),
                    metadata: e.metadata.into_iter().collect(),
                    identity_fleets: self.identity_fleets.clone(),
                    instance: None,
                };
                let admins = self.nodes.envoy_admins();
                let allowed = crate::config::parse_socket_address(&registration.address)
                    .ok()
                    .map_or(Ok(()), |a| {
                        crate::runtime::admission::not_an_envoy_admin(a, &admins)
                    });
                let result = match allowed {
                    Ok(()) => self.session.register(&registration).await,
                    Err(e) => Err(e),
                };
                let reply = match result {
                    Ok(key) => {
                        // Registered means Envoy's next EDS response carries it.
                        self.session.published().await;
                        Resp::Registered(Registered {
                            endpoint: Some(reference(&key)),
                        })
                    }
                    Err(err) => rejected(Some(endpoint), &err),
                };
                self.send(reply).await
            }
            Some(Req::Leave(Leave {
                endpoints,
                deadline_ms,
            })) => {
                let deadline = match deadline_ms {
                    0 => DEFAULT_DEADLINE,
                    ms => Duration::from_millis(u64::from(ms)),
                };
                if deadline > MAX_DEADLINE {
                    let err = RuntimeError::BadRequest(format!(
                        "deadline_ms {deadline_ms} is over the limit ({})",
                        MAX_DEADLINE.as_millis()
                    ));
                    return self.send(rejected(None, &err)).await;
                }
                let which = endpoints
                    .into_iter()
                    .map(|r| (r.cluster, r.address))
                    .collect();
                self.leave(which, deadline, drains).await
            }
            None => {
                let err = RuntimeError::BadRequest(
                    "empty request: set `register` or `leave`".to_string(),
                );
                self.send(rejected(None, &err)).await
            }
        }
    }

    /// Starts the drain handshake for `which` (every endpoint of the stream when empty).
    async fn leave(
        &mut self,
        which: Vec<(String, String)>,
        deadline: Duration,
        drains: &mut JoinSet<(Vec<EndpointKey>, Drained)>,
    ) -> bool {
        let keys = match self.session.leave(&which).await {
            Ok(keys) => keys,
            Err(err) => return self.send(rejected(None, &err)).await,
        };
        self.session.published().await;
        let reply = Resp::Draining(Draining {
            endpoints: keys.iter().map(reference).collect(),
        });
        if !self.send(reply).await {
            return false;
        }
        let runtime = self.runtime.clone();
        drains.spawn(async move {
            let drained = drain::until_idle(&runtime, &keys, deadline).await;
            (keys, drained)
        });
        true
    }

    async fn send(&self, response: Resp) -> bool {
        let message = RegisterResponse {
            response: Some(response),
        };
        matches!(
            tokio::time::timeout(SEND_TIMEOUT, self.tx.send(Ok(message))).await,
            Ok(Ok(()))
        )
    }
}

fn reference(key: &EndpointKey) -> EndpointRef {
    EndpointRef {
        cluster: key.cluster.clone(),
        address: key.address.to_string(),
    }
}

fn rejected(endpoint: Option<EndpointRef>, err: &RuntimeError) -> Resp {
    Resp::Rejected(Rejected {
        endpoint,
        code: code_name(code(err)),
        message: err.to_string(),
    })
}

/// The gRPC status code a runtime error stands for.
fn code(err: &RuntimeError) -> Code {
    match err {
        RuntimeError::NoConfig => Code::Unavailable,
        RuntimeError::UnknownCluster(_) | RuntimeError::UnknownEndpoint { .. } => Code::NotFound,
        RuntimeError::BadRequest(_) => Code::InvalidArgument,
        RuntimeError::Forbidden(_) => Code::PermissionDenied,
        RuntimeError::Configured { .. } | RuntimeError::Taken { .. } => Code::AlreadyExists,
        RuntimeError::Limit(_) | RuntimeError::Full { .. } => Code::ResourceExhausted,
        RuntimeError::Store(_) => Code::Internal,
        RuntimeError::StoreUnavailable(_) => Code::Unavailable,
    }
}

/// A status code as the gRPC spec spells it (`NOT_FOUND`).
fn code_name(code: Code) -> String {
    let mut name = String::new();
    for c in format!("{code:?}").chars() {
        if c.is_uppercase() && !name.is_empty() {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

#[cfg(test)]
mod token_tests {
    use super::StreamToken;
    use tonic::metadata::MetadataMap;

    fn with(value: Option<&str>) -> MetadataMap {
        let mut m = MetadataMap::new();
        if let Some(v) = value {
            m.insert("authorization", v.parse().unwrap());
        }
        m
    }

    #[test]
    fn a_plaintext_port_beyond_loopback_needs_the_admin_token() {
        let token = Some("s3cret".to_string());
        let lo = "127.0.0.1:18000".parse().unwrap();
        let any = "0.0.0.0:18000".parse().unwrap();
        let open = StreamToken::for_port(lo, false, token.clone());
        assert!(open.check(&with(None)).is_ok(), "loopback");
        let tls = StreamToken::for_port(any, true, token.clone());
        assert!(tls.check(&with(None)).is_ok(), "TLS");
        let needs = StreamToken::for_port(any, false, token);
        assert_eq!(
            needs.check(&with(None)).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert!(needs.check(&with(Some("Bearer wrong"))).is_err());
        assert!(needs.check(&with(Some("s3cret"))).is_err());
        assert!(needs.check(&with(Some("Bearer s3cret"))).is_ok());
        let none = StreamToken::for_port(any, false, None);
        assert_eq!(
            none.check(&with(Some("Bearer x"))).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
    }
}
