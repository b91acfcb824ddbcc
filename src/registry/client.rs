//! The instance's end of a registration stream (used by `flotilla register` and the tests).

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use super::proto::register_request::Request as Req;
use super::proto::register_response::Response as Resp;
use super::proto::registry_client::RegistryClient;
use super::proto::{Endpoint, Leave, MayExit, RegisterRequest, RegisterResponse};

/// HTTP/2 PINGs from the instance's side: flotilla's end of a lost connection is found by
/// flotilla's own keepalive; this finds the instance's end, so that it reconnects.
const KEEPALIVE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("bad registry address `{0}`")]
    Address(String),
    #[error("cannot reach the registry: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("registry TLS: {0}")]
    Tls(String),
    #[error("registry stream: {}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    #[error("registration rejected ({code}): {message}")]
    Rejected { code: String, message: String },
    #[error("the registry closed the stream")]
    Closed,
    #[error("unexpected answer from the registry: {0}")]
    Unexpected(String),
}

impl ClientError {
    /// flotilla is there but cannot take the registration yet (no config loaded).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, ClientError::Rejected { code, .. } if code == "UNAVAILABLE")
    }

    /// Trying again cannot help: the registration was refused (wrong arguments), or the
    /// stream was, for its credentials (no admin token or the wrong one on a plaintext port
    /// beyond loopback; an identity not allowed). Anything else may pass later.
    pub fn is_final(&self) -> bool {
        match self {
            ClientError::Rejected { .. } => !self.is_unavailable(),
            ClientError::Status(s) => matches!(
                s.code(),
                tonic::Code::PermissionDenied | tonic::Code::Unauthenticated
            ),
            _ => false,
        }
    }
}

/// One open registration stream.
pub struct Client {
    requests: mpsc::Sender<RegisterRequest>,
    responses: Streaming<RegisterResponse>,
}

impl Client {
    /// Opens a stream to the registry at `registry` (`host:port` or an `http://` URL).
    pub async fn connect(registry: &str) -> Result<Client, ClientError> {
        Client::connect_with(registry, None).await
    }

    /// Like [`Client::connect`], over TLS (mTLS with a client certificate) when `tls` is given;
    /// `registry` is then `host:port`, and flotilla's certificate must be valid for `host`.
    pub async fn connect_with(
        registry: &str,
        tls: Option<&crate::tls::ClientTls>,
    ) -> Result<Client, ClientError> {
        Client::connect_authorized(registry, tls, None).await
    }

    /// Like [`Client::connect_with`], sending `token` as `authorization: Bearer <token>` (a
    /// plaintext xDS port beyond loopback takes registrations only with the admin token).
    pub async fn connect_authorized(
        registry: &str,
        tls: Option<&crate::tls::ClientTls>,
        token: Option<&str>,
    ) -> Result<Client, ClientError> {
        let url = if registry.contains("://") {
            registry.to_string()
        } else {
            format!("http://{registry}")
        };
        let endpoint = tonic::transport::Endpoint::from_shared(url)
            .map_err(|_| ClientError::Address(registry.to_string()))?
            .connect_timeout(Duration::from_secs(5))
            .http2_keep_alive_interval(KEEPALIVE)
            .keep_alive_timeout(KEEPALIVE)
            .keep_alive_while_idle(true);
        let channel = match tls {
            None => endpoint.connect().await?,
            Some(tls) => {
                let bad = || ClientError::Address(registry.to_string());
                let authority = endpoint.uri().authority().ok_or_else(bad)?;
                let host = authority
                    .host()
                    .trim_start_matches('[')
                    .trim_end_matches(']');
                let port = authority.port_u16().ok_or_else(bad)?;
                let connector = tls
                    .connector(host, port)
                    .map_err(|e| ClientError::Tls(e.to_string()))?;
                endpoint.connect_with_connector(connector).await?
            }
        };
        let (requests, rx) = mpsc::channel(16);
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        if let Some(token) = token {
            let value = format!("Bearer {token}").parse().map_err(|_| {
                ClientError::Unexpected("the token is not a valid header value".into())
            })?;
            request.metadata_mut().insert("authorization", value);
        }
        let responses = RegistryClient::new(channel)
            .register(request)
            .await?
            .into_inner();
        Ok(Client {
            requests,
            responses,
        })
    }

    async fn send(&self, request: Req) -> Result<(), ClientError> {
        self.requests
            .send(RegisterRequest {
                request: Some(request),
            })
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// The next answer; an error when the stream ends.
    pub async fn next(&mut self) -> Result<Resp, ClientError> {
        match self.responses.message().await? {
            Some(RegisterResponse {
                response: Some(r), ..
            }) => Ok(r),
            Some(_) => Err(ClientError::Unexpected("an empty response".into())),
            None => Err(ClientError::Closed),
        }
    }

    /// Registers `endpoint` and waits for the answer.
    pub async fn register(&mut self, endpoint: Endpoint) -> Result<(), ClientError> {
        self.send(Req::Register(endpoint)).await?;
        match self.next().await? {
            Resp::Registered(_) => Ok(()),
            Resp::Rejected(r) => Err(ClientError::Rejected {
                code: r.code,
                message: r.message,
            }),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Runs the drain handshake for every endpoint of the stream: returns once flotilla says
    /// the instance may exit.
    pub async fn leave(&mut self, deadline: Duration) -> Result<MayExit, ClientError> {
        let deadline_ms = u32::try_from(deadline.as_millis()).unwrap_or(u32::MAX);
        self.send(Req::Leave(Leave {
            endpoints: Vec::new(),
            deadline_ms,
        }))
        .await?;
        loop {
            match self.next().await? {
                Resp::Draining(_) => {}
                Resp::MayExit(m) => return Ok(m),
                Resp::Rejected(r) => {
                    return Err(ClientError::Rejected {
                        code: r.code,
                        message: r.message,
                    });
                }
                Resp::Registered(_) => {}
            }
        }
    }

    /// Waits for something the instance must act on: the stream ending, or an operator's
    /// drain finishing (MayExit, returned).
    pub async fn watch(&mut self) -> Result<MayExit, ClientError> {
        loop {
            if let Resp::MayExit(m) = self.next().await? {
                return Ok(m);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ClientError;

    #[test]
    fn refusals_are_final_and_unavailability_is_not() {
        let rejected = |code: &str| ClientError::Rejected {
            code: code.to_string(),
            message: String::new(),
        };
        let status = |code| ClientError::Status(tonic::Status::new(code, "x"));
        for (error, fin) in [
            (rejected("INVALID_ARGUMENT"), true),
            (rejected("PERMISSION_DENIED"), true),
            (rejected("UNAVAILABLE"), false),
            (status(tonic::Code::PermissionDenied), true),
            (status(tonic::Code::Unauthenticated), true),
            (status(tonic::Code::Unavailable), false),
            (status(tonic::Code::Internal), false),
            (ClientError::Closed, false),
            (ClientError::Address("x".into()), false),
        ] {
            assert_eq!(error.is_final(), fin, "{error}");
        }
    }
}
