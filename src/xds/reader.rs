//! Requests of one stream, read from the HTTP/2 body and decoded message by message.
//!
//! tonic's `Streaming` keeps its read buffer at the capacity of the largest request it ever
//! held; a SotW EDS request names every cluster (tens of kilobytes at a thousand clusters), so
//! ten thousand idle streams would keep hundreds of megabytes of empty buffers. This reader
//! lets go of its buffer whenever it is drained, and borrows nothing else from tonic but the
//! body type.

use std::marker::PhantomData;
use std::pin::Pin;

use bytes::{Buf, BufMut, BytesMut};
use http_body::Body as _;
use prost::Message;
use tonic::Status;
use tonic::body::Body;

use super::budget::Charge;

/// gRPC's message prefix: compressed flag and length.
const PREFIX: usize = 5;

/// A check of a stream's first message (the one that says which Envoy it is).
type FirstCheck<M> = Box<dyn FnOnce(&M) -> Result<(), Status> + Send>;

/// The request messages of one stream, of type `M`.
pub(crate) struct Requests<M> {
    body: Body,
    buf: BytesMut,
    /// What `buf` holds, charged against the connection's and the server's budgets.
    charge: Charge,
    max: usize,
    ended: bool,
    check_first: Option<FirstCheck<M>>,
    _message: PhantomData<fn() -> M>,
}

impl<M: Message + Default> Requests<M> {
    /// Reads `body`; a message longer than `max` bytes ends the stream with an error.
    pub(crate) fn new(body: Body, max: usize) -> Requests<M> {
        Requests {
            body,
            buf: BytesMut::new(),
            charge: Charge::default(),
            max,
            ended: false,
            check_first: None,
            _message: PhantomData,
        }
    }

    /// Charges what the stream buffers against `charge`'s budgets (`budget`): a message
    /// that does not fit ends the stream.
    pub(crate) fn charged(mut self, charge: Charge) -> Requests<M> {
        self.charge = charge;
        self
    }

    /// Ends the stream with `check`'s error if the first message fails it.
    pub(crate) fn check_first(
        mut self,
        check: impl FnOnce(&M) -> Result<(), Status> + Send + 'static,
    ) -> Requests<M> {
        self.check_first = Some(Box::new(check));
        self
    }

    /// The next message; `None` once the client has closed its side.
    pub(crate) async fn message(&mut self) -> Result<Option<M>, Status> {
        loop {
            if let Some(message) = self.decode()? {
                if let Some(check) = self.check_first.take() {
                    check(&message)?;
                }
                return Ok(Some(message));
            }
            if self.ended {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(Status::internal(
                        "the request stream ended inside a message",
                    ))
                };
            }
            let frame = std::future::poll_fn(|cx| Pin::new(&mut self.body).poll_frame(cx)).await;
            match frame {
                None => self.ended = true,
                Some(Err(status)) => return Err(status),
                Some(Ok(frame)) => {
                    // Trailers from a client carry nothing flotilla uses.
                    if let Ok(data) = frame.into_data() {
                        self.charge.reserve(self.buf.len() + data.len())?;
                        self.buf.put(data);
                        self.charge.holds(self.buf.capacity());
                    }
                }
            }
        }
    }

    /// Decodes one message if the buffer holds a whole one.
    fn decode(&mut self) -> Result<Option<M>, Status> {
        if self.buf.len() < PREFIX {
            return Ok(None);
        }
        let compressed = self.buf[0];
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if compressed != 0 {
            return Err(Status::unimplemented(
                "compressed requests are not supported",
            ));
        }
        if len > self.max {
            return Err(Status::resource_exhausted(format!(
                "request of {len} bytes is larger than the {} bytes allowed",
                self.max
            )));
        }
        if self.buf.len() < PREFIX + len {
            // The prefix announces the size: room for it is made (and charged) at once, so a
            // client that starts large messages and never finishes them meets the budget.
            self.charge.reserve(PREFIX + len)?;
            self.buf.reserve(PREFIX + len - self.buf.len());
            self.charge.holds(self.buf.capacity());
            return Ok(None);
        }
        self.buf.advance(PREFIX);
        let message = M::decode(&self.buf[..len])
            .map_err(|e| Status::internal(format!("cannot decode the request: {e}")))?;
        self.buf.advance(len);
        if self.buf.is_empty() {
            // Nothing of a next message is here: the allocation goes too. Its remaining
            // capacity says nothing of its size (advancing past a message shrinks it to what
            // is left after it), so a buffer sized for a request naming a thousand clusters
            // would otherwise stay with an idle stream for good. Requests are rare next to
            // responses: allocating anew for the next one costs nothing measurable.
            self.buf = BytesMut::new();
        }
        self.charge.holds(self.buf.capacity());
        Ok(Some(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
    use http_body_util::StreamBody;

    fn framed(m: &DiscoveryRequest) -> Vec<u8> {
        let body = m.encode_to_vec();
        let mut out = vec![0];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    fn body_of(chunks: Vec<Vec<u8>>) -> Body {
        let frames = chunks
            .into_iter()
            .map(|c| Ok::<_, Status>(http_body::Frame::data(Bytes::from(c))));
        Body::new(StreamBody::new(tokio_stream::iter(frames)))
    }

    fn request(names: usize) -> DiscoveryRequest {
        DiscoveryRequest {
            type_url: "type/x".into(),
            resource_names: (0..names).map(|i| format!("cluster-{i:05}")).collect(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn messages_split_and_joined_across_frames_come_out_whole() {
        let (a, b) = (request(3), request(2000));
        let mut bytes = framed(&a);
        bytes.extend(framed(&b));
        // Frames of 7 bytes: every message and prefix is cut somewhere.
        let chunks = bytes.chunks(7).map(<[u8]>::to_vec).collect();
        let mut requests = Requests::<DiscoveryRequest>::new(body_of(chunks), 1 << 20);
        assert_eq!(requests.message().await.unwrap(), Some(a));
        assert_eq!(requests.message().await.unwrap(), Some(b));
        // The 30 kB buffer of the large message was let go.
        assert_eq!(requests.buf.capacity(), 0);
        assert_eq!(requests.message().await.unwrap(), None);
    }

    #[tokio::test]
    async fn oversized_compressed_truncated_and_garbage_requests_are_errors() {
        let big = framed(&request(100));
        let mut r = Requests::<DiscoveryRequest>::new(body_of(vec![big.clone()]), 100);
        assert_eq!(
            r.message().await.unwrap_err().code(),
            tonic::Code::ResourceExhausted
        );

        let mut compressed = big.clone();
        compressed[0] = 1;
        let mut r = Requests::<DiscoveryRequest>::new(body_of(vec![compressed]), 1 << 20);
        assert_eq!(
            r.message().await.unwrap_err().code(),
            tonic::Code::Unimplemented
        );

        let mut r = Requests::<DiscoveryRequest>::new(
            body_of(vec![big[..big.len() - 1].to_vec()]),
            1 << 20,
        );
        assert_eq!(r.message().await.unwrap_err().code(), tonic::Code::Internal);

        let garbage = vec![0, 0, 0, 0, 3, 0xff, 0xff, 0xff];
        let mut r = Requests::<DiscoveryRequest>::new(body_of(vec![garbage]), 1 << 20);
        assert_eq!(r.message().await.unwrap_err().code(), tonic::Code::Internal);
    }

    /// Issue 27: unfinished 4 MB messages on 128 streams of one connection held 540 MB. A
    /// stream's reader charges what it buffers; one that does not fit ends, and what a stream
    /// held is given back when it ends.
    #[tokio::test]
    async fn unfinished_messages_are_bounded_per_connection_and_given_back() {
        use super::super::budget::Budget;
        let connection = Budget::new(10 << 20, "per connection", None);
        let server = Budget::new(100 << 20, "in total", None);
        // A prefix announcing 4 MiB, then a little of it.
        let mut unfinished = vec![0];
        unfinished.extend_from_slice(&(4u32 << 20).to_be_bytes());
        unfinished.extend_from_slice(&[0; 1000]);
        let mut streams = Vec::new();
        let mut senders = Vec::new();
        let mut refused = 0;
        for _ in 0..4 {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, Status>>(4);
            tx.send(Ok(http_body::Frame::data(Bytes::from(unfinished.clone()))))
                .await
                .unwrap();
            senders.push(tx); // the client keeps the stream open
            let body = Body::new(StreamBody::new(
                tokio_stream::wrappers::ReceiverStream::new(rx),
            ));
            let mut r = Requests::<DiscoveryRequest>::new(body, 5 << 20)
                .charged(Charge::new(vec![connection.clone(), server.clone()]));
            let poll =
                tokio::time::timeout(std::time::Duration::from_millis(50), r.message()).await;
            match poll {
                Err(_) => streams.push(r), // waiting for the rest, holding its room
                Ok(Err(status)) => {
                    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
                    refused += 1;
                }
                Ok(Ok(m)) => panic!("nothing whole was sent: {m:?}"),
            }
        }
        assert_eq!((streams.len(), refused), (2, 2));
        assert!(connection.used() <= 10 << 20, "{}", connection.used());
        assert_eq!(connection.used(), server.used());
        drop(streams);
        assert_eq!((connection.used(), server.used()), (0, 0));
    }
}
