//! `flotilla register … -- COMMAND`: runs an instance and keeps it registered while it runs.
//!
//! The endpoint is registered once the instance accepts connections on its address, and
//! re-registered if the stream to flotilla breaks (flotilla restarted). On SIGTERM or SIGINT the
//! drain handshake runs first, and only then does the instance get the signal, so that no
//! Envoy has a request in flight to it when it stops. An operator's drain (admin API) ends the
//! same way: once drained, the instance gets SIGTERM.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing::{info, warn};

use super::client::{Client, ClientError};
use super::proto::{Endpoint, MayExit};

/// How long to wait between attempts to reach flotilla.
const RETRY: Duration = Duration::from_secs(1);

pub struct RegisterOptions {
    /// flotilla's xDS address.
    pub registry: String,
    pub endpoint: Endpoint,
    /// Longest wait for requests in flight to finish before the instance is signalled.
    pub drain_deadline: Duration,
    /// Longest wait for the instance to accept connections before registering anyway.
    pub ready_timeout: Duration,
    /// The instance: program and arguments.
    pub command: Vec<String>,
    /// TLS (mTLS) to flotilla's xDS port, when it serves TLS.
    pub tls: Option<crate::tls::ClientTls>,
    /// The admin token, for a plaintext xDS port beyond loopback.
    pub token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("cannot start `{program}`: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no command given")]
    NoCommand,
    #[error("signals: {0}")]
    Signal(#[source] std::io::Error),
    #[error("waiting for the instance: {0}")]
    Wait(#[source] std::io::Error),
    #[error("{0}")]
    Rejected(ClientError),
}

/// Runs the instance; returns its exit code (128 + signal when a signal ended it).
pub async fn run(opts: RegisterOptions) -> Result<i32, CommandError> {
    let (program, args) = opts.command.split_first().ok_or(CommandError::NoCommand)?;
    let mut term = signal(SignalKind::terminate()).map_err(CommandError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(CommandError::Signal)?;
    let mut child =
        Command::new(program)
            .args(args)
            .spawn()
            .map_err(|source| CommandError::Spawn {
                program: program.clone(),
                source,
            })?;
    let address = opts.endpoint.address.clone();
    tokio::select! {
        status = child.wait() => return exit_code(status),
        sig = next_signal(&mut term, &mut int) => return forward(&mut child, sig).await,
        () = accepting(&address, opts.ready_timeout) => {}
    }
    let mut client: Option<Client> = None;
    loop {
        let Some(c) = client.as_mut() else {
            tokio::select! {
                status = child.wait() => return exit_code(status),
                sig = next_signal(&mut term, &mut int) => return forward(&mut child, sig).await,
                connected = register(&opts) => match connected {
                    Ok(c) => client = Some(c),
                    // Wrong arguments and credentials stay wrong; "no config loaded yet"
                    // and an unreachable flotilla do not.
                    Err(e) if e.is_final() => {
                        let _ = forward(&mut child, rustix::process::Signal::TERM).await;
                        return Err(CommandError::Rejected(e));
                    }
                    Err(e) => {
                        warn!(error = %e, "cannot register; retrying");
                        tokio::time::sleep(RETRY).await;
                    }
                },
            }
            continue;
        };
        let sig = tokio::select! {
            status = child.wait() => return exit_code(status),
            sig = next_signal(&mut term, &mut int) => sig,
            watched = c.watch() => match watched {
                Ok(may_exit) => {
                    log_drain(Ok(may_exit));
                    return forward(&mut child, rustix::process::Signal::TERM).await;
                }
                Err(e) => {
                    warn!(error = %e, "registration stream lost; registering again");
                    client = None;
                    continue;
                }
            },
        };
        let answer = tokio::time::timeout(
            opts.drain_deadline + RETRY * 5,
            c.leave(opts.drain_deadline),
        )
        .await;
        log_drain(answer.unwrap_or(Err(ClientError::Closed)));
        return forward(&mut child, sig).await;
    }
}

async fn register(opts: &RegisterOptions) -> Result<Client, ClientError> {
    let mut client =
        Client::connect_authorized(&opts.registry, opts.tls.as_ref(), opts.token.as_deref())
            .await?;
    client.register(opts.endpoint.clone()).await?;
    info!(cluster = %opts.endpoint.cluster, address = %opts.endpoint.address, "registered");
    Ok(client)
}

fn log_drain(answer: Result<MayExit, ClientError>) {
    match answer {
        Ok(m) if m.deadline_passed => {
            warn!(
                in_flight = m.in_flight,
                "drain deadline passed; stopping the instance"
            )
        }
        Ok(_) => info!("drained: no requests in flight; stopping the instance"),
        Err(e) => warn!(error = %e, "drain handshake failed; stopping the instance"),
    }
}

/// Returns once `address` accepts TCP connections, or after `timeout`.
async fn accepting(address: &str, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if TcpStream::connect(address).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    warn!(
        address,
        "the instance does not accept connections yet; registering anyway"
    );
}

async fn next_signal(term: &mut Signal, int: &mut Signal) -> rustix::process::Signal {
    tokio::select! {
        _ = term.recv() => rustix::process::Signal::TERM,
        _ = int.recv() => rustix::process::Signal::INT,
    }
}

/// Sends `sig` to the instance and waits for it to exit.
async fn forward(child: &mut Child, sig: rustix::process::Signal) -> Result<i32, CommandError> {
    if let Some(pid) = child
        .id()
        .and_then(|id| rustix::process::Pid::from_raw(id as i32))
    {
        let _ = rustix::process::kill_process(pid, sig);
    }
    exit_code(child.wait().await)
}

fn exit_code(status: std::io::Result<ExitStatus>) -> Result<i32, CommandError> {
    let status = status.map_err(CommandError::Wait)?;
    Ok(status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1))
}
