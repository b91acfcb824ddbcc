//! What the xds fuzz target drives (`crate::fuzzing::xds_stream`): the request reader, the
//! request decoders and the stream's protocol core they feed, without a network.

use std::collections::VecDeque;
use std::pin::{Pin, pin};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http_body::Frame;
use tonic::Status;
use tonic::body::Body;

use super::delta::Delta;
use std::time::Instant;

use super::protocol::Protocol;
use super::reader::Requests;
use super::sotw::Sotw;
use super::stream_core::{Core, Kind};
use crate::cache::{Inputs, ResourceType, Snapshot, SnapshotCache};
use crate::translate::Transport;

/// The largest request the fuzzer's reader accepts (the server's limit is 16 MiB; a smaller
/// one keeps the fuzzer's allocations small and still tests the check).
const MAX: usize = 64 * 1024;
/// Requests handled per input at most.
const REQUESTS: usize = 32;

/// `data[0]` picks the protocol (bit 0) and how the rest is cut into body frames (bits 1..);
/// the rest is the request stream as it comes off HTTP/2: gRPC length-prefixed messages.
pub fn stream(data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let chunk = 1 + usize::from(control >> 1) * 7;
    let frames = rest.chunks(chunk).map(Bytes::copy_from_slice).collect();
    let body = Body::new(Frames(frames));
    if control & 1 == 0 {
        serve::<Sotw>(Requests::new(body, MAX), Transport::Ads);
    } else {
        serve::<Delta>(Requests::new(body, MAX), Transport::Delta);
    }
}

/// Drives the stream's protocol core as the stream loop does: each request in, then every
/// response it lets out (at most one in flight per type, so a bounded number).
fn serve<P: Protocol>(mut requests: Requests<P::Req>, transport: Transport) {
    let mut core = Core::new(P::MODE, Kind::ADS, snapshot(transport), Instant::now());
    for _ in 0..REQUESTS {
        let Ok(Some(req)) = ready(requests.message()) else {
            return;
        };
        if core.request(P::request(req)).is_err() {
            return; // the stream would end here
        }
        let mut sent = 0;
        while core.next().is_some() {
            sent += 1;
            assert!(
                sent <= ResourceType::COUNT,
                "more than one response per type"
            );
        }
    }
}

/// A request body already received whole, in frames.
struct Frames(VecDeque<Bytes>);

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

/// The reader over an in-memory body never waits.
fn ready<T>(future: impl Future<Output = T>) -> T {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a reader over an in-memory body waited"),
    }
}

/// The quickstart's resources, the same for every input.
fn snapshot(transport: Transport) -> Arc<Snapshot> {
    static CACHE: OnceLock<SnapshotCache> = OnceLock::new();
    let cache = CACHE.get_or_init(|| {
        let cache = SnapshotCache::new();
        let config = crate::config::parse_str("quickstart.yaml", crate::quickstart::CONFIG)
            .expect("the quickstart config is valid");
        cache.update(Inputs {
            config: Arc::new(config),
            overlay: Arc::default(),
        });
        cache
    });
    cache
        .current(None, transport, crate::cache::ClientKind::Other)
        .expect("a snapshot for every transport")
}
