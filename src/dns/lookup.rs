//! The resolver seam: one name in, an [`Answer`] or a [`LookupError`] out. The server uses
//! hickory-resolver; unit tests use a table ([`FakeLookup`]).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Instant;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;

use super::Answer;

/// Why a lookup gave no addresses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// The name does not exist (NXDOMAIN), or has no address records: a definite answer.
    #[error("no such name (NXDOMAIN or no A/AAAA records)")]
    NoSuchName,
    /// No answer could be had (timeout, refused, server failure, malformed reply): it may
    /// work next time.
    #[error("{0}")]
    Failed(String),
}

pub type LookupFuture<'a> = Pin<Box<dyn Future<Output = Result<Answer, LookupError>> + Send + 'a>>;

/// Resolves a name to its addresses.
pub trait Lookup: Send + Sync {
    fn lookup<'a>(&'a self, host: &'a str) -> LookupFuture<'a>;
}

/// hickory-resolver, with the system's configuration or the given servers.
pub struct HickoryLookup {
    resolver: TokioResolver,
}

/// Why a resolver could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the DNS resolver: {0}")]
pub struct ResolverSetupError(String);

impl HickoryLookup {
    /// `servers` empty: the system's resolver configuration (`/etc/resolv.conf`).
    pub fn new(servers: &[SocketAddr]) -> Result<HickoryLookup, ResolverSetupError> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = if servers.is_empty() {
            TokioResolver::builder(provider).map_err(|e| ResolverSetupError(e.to_string()))?
        } else {
            let mut config = ResolverConfig::from_parts(None, Vec::new(), Vec::new());
            for s in servers {
                let mut udp = ConnectionConfig::udp();
                udp.port = s.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = s.port();
                config.add_name_server(NameServerConfig::new(s.ip(), true, vec![udp, tcp]));
            }
            TokioResolver::builder_with_config(config, provider)
        };
        let options = builder.options_mut();
        // flotilla follows each record's TTL itself; a cache would answer from a copy.
        options.cache_size = 0;
        options.timeout = super::LOOKUP_TIMEOUT / 2;
        options.attempts = 1;
        let resolver = builder
            .build()
            .map_err(|e| ResolverSetupError(e.to_string()))?;
        Ok(HickoryLookup { resolver })
    }
}

impl Lookup for HickoryLookup {
    fn lookup<'a>(&'a self, host: &'a str) -> LookupFuture<'a> {
        Box::pin(async move {
            // A trailing dot: the name as written, not tried under resolv.conf's search
            // domains first.
            let fqdn = format!("{host}.");
            match self.resolver.lookup_ip(fqdn.as_str()).await {
                Ok(found) => {
                    let ttl = found
                        .valid_until()
                        .saturating_duration_since(Instant::now())
                        .as_secs();
                    let ttl = u32::try_from(ttl).unwrap_or(u32::MAX);
                    Answer::bounded(found.iter().map(|ip| (ip, ttl)))
                }
                Err(e) if e.is_nx_domain() || e.is_no_records_found() => {
                    Err(LookupError::NoSuchName)
                }
                Err(e) => Err(LookupError::Failed(e.to_string())),
            }
        })
    }
}

/// A table of answers, for unit tests, counting the lookups of each name.
#[derive(Default)]
pub struct FakeLookup {
    pub answers: std::sync::Mutex<std::collections::BTreeMap<String, Result<Answer, LookupError>>>,
    asked: std::sync::Mutex<std::collections::BTreeMap<String, usize>>,
}

impl FakeLookup {
    pub fn set(&self, host: &str, answer: Result<Answer, LookupError>) {
        self.answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(host.to_string(), answer);
    }

    /// How many times `host` was looked up.
    pub fn asked(&self, host: &str) -> usize {
        self.asked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(host)
            .copied()
            .unwrap_or(0)
    }
}

impl Lookup for FakeLookup {
    fn lookup<'a>(&'a self, host: &'a str) -> LookupFuture<'a> {
        *self
            .asked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(host.to_string())
            .or_default() += 1;
        let answer = self
            .answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(host)
            .cloned()
            .unwrap_or(Err(LookupError::NoSuchName));
        Box::pin(async move { answer })
    }
}
