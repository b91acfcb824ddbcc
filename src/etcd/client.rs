//! The etcd calls flotilla makes: read a prefix, write in one transaction, watch a prefix,
//! and leases (grant, renew once, revoke).

use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use super::proto::etcdserverpb::{
    self as pb, kv_client::KvClient, lease_client::LeaseClient, watch_client::WatchClient,
};
use super::proto::mvccpb::KeyValue;
use super::{StoreMetrics, StoreUrl, prefix_end};

/// How long one call may take before etcd counts as unavailable.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The largest range page or watch response read: a key whose value alone is larger is
/// skipped when listing (pages halve around it) and breaks no watch below this size.
pub(crate) const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd is unavailable: {0}")]
    Unavailable(String),
    /// An answer over the size this client reads (a page holding a huge value).
    #[error("etcd's answer is too large: {0}")]
    TooLarge(String),
}

impl EtcdError {
    /// Keeps the causes a transport error carries (a refused TLS handshake says why only
    /// there: unknown issuer, certificate required).
    fn from_status(status: tonic::Status) -> EtcdError {
        if matches!(
            status.code(),
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
        ) && status.message().contains("too large")
        {
            return EtcdError::TooLarge(status.message().to_string());
        }
        let mut text = format!("{}: {}", status.code(), status.message());
        let mut cause = std::error::Error::source(&status);
        while let Some(c) = cause {
            let c_text = c.to_string();
            if !text.contains(&c_text) {
                text.push_str(": ");
                text.push_str(&c_text);
            }
            cause = c.source();
        }
        EtcdError::Unavailable(text)
    }
}

#[derive(Clone)]
pub struct Client {
    kv: KvClient<Channel>,
    watch: WatchClient<Channel>,
    lease: LeaseClient<Channel>,
    metrics: StoreMetrics,
}

/// One write of a transaction.
pub enum Op {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        lease: i64,
    },
    Delete {
        key: Vec<u8>,
    },
}

/// A watch on a prefix; events arrive from [`Watch::next`]. Dropping it ends the watch.
pub struct Watch {
    // Held so that the request side stays open: etcd ends a watch stream whose client closed.
    _requests: mpsc::Sender<pb::WatchRequest>,
    responses: tonic::Streaming<pb::WatchResponse>,
}

impl Watch {
    /// The next batch of events; `Err` once the stream broke (watch again from the last
    /// revision seen).
    pub async fn next(&mut self) -> Result<pb::WatchResponse, EtcdError> {
        match self.responses.message().await {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(EtcdError::Unavailable("watch stream ended".into())),
            Err(status) => Err(EtcdError::from_status(status)),
        }
    }
}

impl Client {
    /// A client over every member of `url`; connects lazily, so that a replica starts (and
    /// serves its last state) while etcd is down.
    pub fn new(url: &StoreUrl) -> Result<Client, EtcdError> {
        let endpoints = url
            .endpoints
            .iter()
            .map(|e| {
                let scheme = if url.tls.is_some() { "https" } else { "http" };
                let endpoint = Endpoint::from_shared(format!("{scheme}://{e}"))
                    .map_err(|e| EtcdError::Unavailable(format!("bad endpoint: {e}")))?
                    .connect_timeout(CONNECT_TIMEOUT)
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(5))
                    .keep_alive_timeout(Duration::from_secs(3));
                match &url.tls {
                    Some(tls) => endpoint.tls_config(tls.tonic_config()).map_err(|e| {
                        EtcdError::Unavailable(format!(
                            "TLS settings: {}",
                            crate::health::error_chain(&e)
                        ))
                    }),
                    None => Ok(endpoint),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let channel = Channel::balance_list(endpoints.into_iter());
        Ok(Client {
            kv: KvClient::new(channel.clone()).max_decoding_message_size(MAX_RESPONSE_BYTES),
            watch: WatchClient::new(channel.clone()).max_decoding_message_size(MAX_RESPONSE_BYTES),
            lease: LeaseClient::new(channel),
            metrics: StoreMetrics::default(),
        })
    }

    /// Records every transaction's round trip into `metrics` (`flotilla_store_write_seconds`).
    pub fn with_metrics(mut self, metrics: StoreMetrics) -> Client {
        self.metrics = metrics;
        self
    }

    /// Where this client's metrics go.
    pub fn metrics(&self) -> &StoreMetrics {
        &self.metrics
    }

    /// Every key under `prefix`, and the revision they were read at.
    pub async fn get_prefix(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64), EtcdError> {
        let request = pb::RangeRequest {
            key: prefix.as_bytes().to_vec(),
            range_end: prefix_end(prefix.as_bytes()),
            ..Default::default()
        };
        let r = deadline(self.kv.clone().range(request)).await?.into_inner();
        Ok((r.kvs, revision_of(r.header.as_ref())))
    }

    /// One page of keys from `from` (inclusive) to `end`, read at `revision` (0: now): at
    /// most `limit` of them, values left out when `keys_only`. Returns the page, whether
    /// more follow, and the revision read at.
    pub async fn range_page(
        &self,
        from: &[u8],
        end: &[u8],
        revision: i64,
        limit: i64,
        keys_only: bool,
    ) -> Result<(Vec<KeyValue>, bool, i64), EtcdError> {
        let request = pb::RangeRequest {
            key: from.to_vec(),
            range_end: end.to_vec(),
            revision,
            limit,
            keys_only,
            ..Default::default()
        };
        let r = deadline(self.kv.clone().range(request)).await?.into_inner();
        Ok((r.kvs, r.more, revision_of(r.header.as_ref())))
    }

    /// The key `key` alone (empty if absent).
    pub async fn get_key(&self, key: &[u8]) -> Result<(Vec<KeyValue>, i64), EtcdError> {
        let request = pb::RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        };
        let r = deadline(self.kv.clone().range(request)).await?.into_inner();
        Ok((r.kvs, revision_of(r.header.as_ref())))
    }

    /// Applies `ops` atomically; returns the revision written.
    pub async fn txn(&self, ops: Vec<Op>) -> Result<i64, EtcdError> {
        let success = ops
            .into_iter()
            .map(|op| pb::RequestOp {
                request: Some(match op {
                    Op::Put { key, value, lease } => {
                        pb::request_op::Request::RequestPut(pb::PutRequest {
                            key,
                            value,
                            lease,
                            ..Default::default()
                        })
                    }
                    Op::Delete { key } => {
                        pb::request_op::Request::RequestDeleteRange(pb::DeleteRangeRequest {
                            key,
                            ..Default::default()
                        })
                    }
                }),
            })
            .collect();
        let request = pb::TxnRequest {
            success,
            ..Default::default()
        };
        let sent = Instant::now();
        let r = deadline(self.kv.clone().txn(request)).await?.into_inner();
        self.metrics.write(sent.elapsed());
        Ok(revision_of(r.header.as_ref()))
    }

    /// Watches every key under `prefix` from `start_revision` on.
    pub async fn watch_prefix(
        &self,
        prefix: &str,
        start_revision: i64,
    ) -> Result<Watch, EtcdError> {
        let (tx, rx) = mpsc::channel(1);
        let create = pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
                pb::WatchCreateRequest {
                    key: prefix.as_bytes().to_vec(),
                    range_end: prefix_end(prefix.as_bytes()),
                    start_revision,
                    ..Default::default()
                },
            )),
        };
        tx.send(create)
            .await
            .map_err(|_| EtcdError::Unavailable("watch request".into()))?;
        let responses = deadline(self.watch.clone().watch(ReceiverStream::new(rx)))
            .await?
            .into_inner();
        let mut watch = Watch {
            _requests: tx,
            responses,
        };
        // The first response confirms the watch was created.
        let created = tokio::time::timeout(CALL_TIMEOUT, watch.next())
            .await
            .map_err(|_| EtcdError::Unavailable("watch not created in time".into()))??;
        if !created.created || created.canceled {
            return Err(EtcdError::Unavailable(format!(
                "watch refused: {}",
                created.cancel_reason
            )));
        }
        Ok(watch)
    }

    /// A new lease of `ttl` (whole seconds, at least 1).
    pub async fn grant(&self, ttl: Duration) -> Result<i64, EtcdError> {
        let request = pb::LeaseGrantRequest {
            ttl: ttl.as_secs().max(1) as i64,
            id: 0,
        };
        let r = deadline(self.lease.clone().lease_grant(request))
            .await?
            .into_inner();
        if !r.error.is_empty() {
            return Err(EtcdError::Unavailable(r.error));
        }
        Ok(r.id)
    }

    /// Renews lease `id` once; `false` if it no longer exists (it ran out).
    pub async fn keep_alive(&self, id: i64) -> Result<bool, EtcdError> {
        let request = tokio_stream::once(pb::LeaseKeepAliveRequest { id });
        let mut responses = deadline(self.lease.clone().lease_keep_alive(request))
            .await?
            .into_inner();
        let r = tokio::time::timeout(CALL_TIMEOUT, responses.message())
            .await
            .map_err(|_| EtcdError::Unavailable("lease renewal timed out".into()))?
            .map_err(EtcdError::from_status)?
            .ok_or_else(|| EtcdError::Unavailable("lease renewal unanswered".into()))?;
        Ok(r.ttl > 0)
    }

    /// Ends lease `id` now, deleting every key bound to it.
    pub async fn revoke(&self, id: i64) -> Result<(), EtcdError> {
        match deadline(
            self.lease
                .clone()
                .lease_revoke(pb::LeaseRevokeRequest { id }),
        )
        .await
        {
            Ok(_) => Ok(()),
            // Already gone: what revoking wanted.
            Err(EtcdError::Unavailable(m)) if m.contains("requested lease not found") => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn revision_of(header: Option<&pb::ResponseHeader>) -> i64 {
    header.map_or(0, |h| h.revision)
}

async fn deadline<T>(call: impl Future<Output = Result<T, tonic::Status>>) -> Result<T, EtcdError> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(r) => r.map_err(EtcdError::from_status),
        Err(_) => Err(EtcdError::Unavailable(format!(
            "no answer within {CALL_TIMEOUT:?}"
        ))),
    }
}
