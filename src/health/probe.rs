//! The probes: HTTP through one shared client, TCP connect (optionally send/expect), and
//! gRPC `grpc.health.v1.Health/Check`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::config::model::{GrpcProbe, HttpProbe, Probe, TcpProbe};

/// At most this much of a response body is read to look for `body_contains`.
const BODY_LIMIT: usize = 64 * 1024;

/// Why a probe failed, as operators read it in the admin API and logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("connect: {0}")]
    Connect(String),
    #[error("status {0} is not expected")]
    Status(u16),
    #[error("body does not contain {0:?}")]
    Body(String),
    #[error("expected {0:?} from the TCP peer")]
    Expect(String),
    #[error("gRPC health: {0}")]
    Grpc(String),
}

/// One endpoint's prober: what to send and how to judge the answer.
pub enum Prober {
    Http {
        client: reqwest::Client,
        url: String,
        probe: HttpProbe,
    },
    Tcp {
        addr: SocketAddr,
        probe: TcpProbe,
    },
    Grpc {
        client: HealthClient<Channel>,
        service: String,
    },
}

impl Prober {
    /// A prober for `addr`; HTTP probes share `http` (one connection pool for all endpoints).
    pub fn new(addr: SocketAddr, probe: &Probe, http: &reqwest::Client) -> Prober {
        match probe {
            Probe::Http(p) => Prober::Http {
                client: http.clone(),
                url: format!("http://{addr}{}", p.path),
                probe: p.clone(),
            },
            Probe::Tcp(p) => Prober::Tcp {
                addr,
                probe: p.clone(),
            },
            Probe::Grpc(p) => Prober::Grpc {
                client: HealthClient::new(grpc_channel(addr, p)),
                service: p.service.clone(),
            },
        }
    }

    /// Runs one probe; the caller bounds it with the configured timeout.
    pub async fn probe(&mut self) -> Result<(), ProbeError> {
        match self {
            Prober::Http { client, url, probe } => http(client, url, probe).await,
            Prober::Tcp { addr, probe } => tcp(*addr, probe).await,
            Prober::Grpc { client, service } => grpc(client, service).await,
        }
    }
}

fn grpc_channel(addr: SocketAddr, probe: &GrpcProbe) -> Channel {
    let mut endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .expect("a socket address is a valid URI")
        .tcp_nodelay(true);
    if let Some(authority) = &probe.authority
        && let Ok(uri) = format!("http://{authority}").parse()
    {
        endpoint = endpoint.origin(uri);
    }
    // Connects on first use and reconnects after failures; one channel per endpoint.
    endpoint.connect_lazy()
}

async fn http(client: &reqwest::Client, url: &str, probe: &HttpProbe) -> Result<(), ProbeError> {
    let mut req = client.get(url);
    if let Some(host) = &probe.host {
        req = req.header(reqwest::header::HOST, host);
    }
    for (k, v) in &probe.headers {
        req = req.header(k, v);
    }
    let mut resp = req
        .send()
        .await
        .map_err(|e| ProbeError::Connect(error_chain(&e)))?;
    let status = resp.status().as_u16();
    if !probe
        .expected_statuses
        .iter()
        .any(|(lo, hi)| (*lo..=*hi).contains(&status))
    {
        return Err(ProbeError::Status(status));
    }
    if let Some(needle) = &probe.body_contains {
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| ProbeError::Connect(error_chain(&e)))?
        {
            body.extend_from_slice(&chunk);
            if body.len() >= BODY_LIMIT {
                break;
            }
        }
        if !String::from_utf8_lossy(&body).contains(needle.as_str()) {
            return Err(ProbeError::Body(needle.clone()));
        }
    }
    Ok(())
}

async fn tcp(addr: SocketAddr, probe: &TcpProbe) -> Result<(), ProbeError> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| ProbeError::Connect(e.to_string()))?;
    if let Some(send) = &probe.send {
        stream
            .write_all(send.as_bytes())
            .await
            .map_err(|e| ProbeError::Connect(e.to_string()))?;
    }
    if let Some(expect) = &probe.expect {
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let n = stream
                .read(&mut buf)
                .await
                .map_err(|e| ProbeError::Connect(e.to_string()))?;
            if n == 0 || seen.len() > 4096 {
                return Err(ProbeError::Expect(expect.clone()));
            }
            seen.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&seen).contains(expect.as_str()) {
                break;
            }
        }
    }
    let _ = stream.shutdown().await;
    Ok(())
}

async fn grpc(client: &mut HealthClient<Channel>, service: &str) -> Result<(), ProbeError> {
    let response = client
        .check(HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .map_err(|s| ProbeError::Grpc(format!("{:?}: {}", s.code(), s.message())))?;
    match response.into_inner().status() {
        ServingStatus::Serving => Ok(()),
        other => Err(ProbeError::Grpc(other.as_str_name().to_string())),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
