//! The probes: HTTP through one shared client, TCP connect (optionally send/expect), and
//! gRPC `grpc.health.v1.Health/Check`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::config::model::{GrpcProbe, HttpProbe, Probe, ProbeTls, TcpProbe};

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
    #[error("TLS settings: {0}")]
    Tls(String),
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
    /// The cluster's TLS settings could not make a client (reported on every probe).
    Broken(String),
}

impl Prober {
    /// A prober for `addr`; plain HTTP probes share `http` (one connection pool for all
    /// endpoints), HTTP and gRPC probes of a TLS cluster (`tls`) get a client of their own.
    pub fn new(
        addr: SocketAddr,
        probe: &Probe,
        tls: Option<&ProbeTls>,
        http: &reqwest::Client,
    ) -> Prober {
        let made = match (probe, tls) {
            (Probe::Http(p), None) => Ok(Prober::Http {
                client: http.clone(),
                url: format!("http://{addr}{}", p.path),
                probe: p.clone(),
            }),
            (Probe::Http(p), Some(t)) => https_client(addr, t).map(|(client, base)| Prober::Http {
                client,
                url: format!("{base}{}", p.path),
                probe: p.clone(),
            }),
            (Probe::Tcp(p), _) => Ok(Prober::Tcp {
                addr,
                probe: p.clone(),
            }),
            (Probe::Grpc(p), tls) => grpc_channel(addr, p, tls).map(|channel| Prober::Grpc {
                client: HealthClient::new(channel),
                service: p.service.clone(),
            }),
        };
        made.unwrap_or_else(Prober::Broken)
    }

    /// Runs one probe; the caller bounds it with the configured timeout.
    pub async fn probe(&mut self) -> Result<(), ProbeError> {
        match self {
            Prober::Http { client, url, probe } => http(client, url, probe).await,
            Prober::Tcp { addr, probe } => tcp(*addr, probe).await,
            Prober::Grpc { client, service } => grpc(client, service).await,
            Prober::Broken(why) => Err(ProbeError::Tls(why.clone())),
        }
    }
}

/// An HTTPS client that reaches `addr` under the cluster's SNI (or its IP address without
/// one), and the URL base to probe it at.
fn https_client(addr: SocketAddr, tls: &ProbeTls) -> Result<(reqwest::Client, String), String> {
    // The probes speak HTTP/1.1 (the client is built without HTTP/2).
    let config = super::tls::client_config(tls, "http/1.1")?;
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .use_preconfigured_tls(config);
    let base = match &tls.sni {
        Some(sni) => {
            builder = builder.resolve(sni, addr);
            format!("https://{sni}:{}", addr.port())
        }
        None => format!("https://{addr}"),
    };
    let client = builder.build().map_err(|e| error_chain(&e))?;
    Ok((client, base))
}

fn grpc_channel(
    addr: SocketAddr,
    probe: &GrpcProbe,
    tls: Option<&ProbeTls>,
) -> Result<Channel, String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
        .expect("a socket address is a valid URI")
        .tcp_nodelay(true);
    if let Some(authority) = &probe.authority
        && let Ok(uri) = format!("{scheme}://{authority}").parse()
    {
        endpoint = endpoint.origin(uri);
    }
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(grpc_tls(tls, addr))
            .map_err(|e| error_chain(&e))?;
    }
    // Connects on first use and reconnects after failures; one channel per endpoint.
    Ok(endpoint.connect_lazy())
}

fn grpc_tls(tls: &ProbeTls, addr: SocketAddr) -> tonic::transport::ClientTlsConfig {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let mut config = ClientTlsConfig::new()
        .domain_name(tls.sni.clone().unwrap_or_else(|| addr.ip().to_string()));
    config = match &tls.roots {
        Some(pem) => config.ca_certificate(Certificate::from_pem(pem)),
        None => config.with_native_roots(),
    };
    if let Some((chain, key)) = &tls.client {
        config = config.identity(Identity::from_pem(chain, key.expose()));
    }
    config
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

/// `error: cause: cause…`: transport errors say why only in their causes.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
