//! The admin port under a flood of idle and half-sent connections (issue 27.6): they are
//! closed after the idle and header timeouts, and past the connection cap the last slots still
//! serve /healthz and /readyz.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::configs;
use crate::support::conn::{closed_after, status_on};
use crate::support::flotilla::Flotilla;
use crate::support::free_addr;

#[tokio::test]
async fn idle_and_half_sent_connections_are_closed() {
    let f = Flotilla::start_args(
        &configs::web(free_addr(), "127.0.0.1:1"),
        &["--admin-idle-timeout", "2s", "--admin-header-timeout", "1s"],
    )
    .await;
    f.wait_ready().await;
    let mut ends = Vec::new();
    for i in 0..20 {
        let mut c = TcpStream::connect(f.admin).await.expect("connect");
        if i % 2 == 1 {
            // Half a request: the line and one header, never the blank line.
            c.write_all(b"GET /metrics HTTP/1.1\r\nhost: 127.0.0.1\r\n")
                .await
                .expect("write");
        }
        ends.push(tokio::spawn(closed_after(c, Duration::from_secs(10))));
    }
    for end in ends {
        let took = end
            .await
            .expect("join")
            .expect("every idle or half-sent connection is closed");
        assert!(took <= Duration::from_secs(4), "closed after {took:?}");
    }
    // A keep-alive connection between requests is idle too (waiting for the next request's
    // head, it is closed after the header timeout).
    let mut c = TcpStream::connect(f.admin).await.expect("connect");
    assert_eq!(status_on(&mut c, "/healthz").await, 200);
    let took = closed_after(c, Duration::from_secs(10))
        .await
        .expect("an idle keep-alive connection is closed");
    assert!(took <= Duration::from_secs(4), "closed after {took:?}");
}

#[tokio::test]
async fn past_the_cap_the_last_slots_serve_only_the_probes() {
    let max = 40;
    let probe_slots = flotilla::admin::PROBE_SLOTS;
    let f = Flotilla::start_args(
        &configs::web(free_addr(), "127.0.0.1:1"),
        &["--admin-max-connections", &max.to_string()],
    )
    .await;
    f.wait_ready().await;
    // Fill every ordinary slot with idle connections.
    let mut idle = Vec::new();
    for _ in 0..max - probe_slots {
        idle.push(TcpStream::connect(f.admin).await.expect("connect"));
    }
    // Let the server accept them all before the next ones are counted.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut probes = Vec::new();
    for _ in 0..probe_slots {
        let mut c = TcpStream::connect(f.admin).await.expect("connect");
        assert_eq!(
            status_on(&mut c, "/healthz").await,
            200,
            "a probe on a reserved slot"
        );
        assert_eq!(status_on(&mut c, "/readyz").await, 200);
        probes.push(c);
    }
    let mut c = TcpStream::connect(f.admin).await.expect("connect");
    let took = closed_after(c, Duration::from_secs(5))
        .await
        .expect("a connection past the cap is closed at once");
    assert!(took < Duration::from_secs(1), "{took:?}");
    // Freeing one reserved slot: it serves probes, not the API.
    probes.pop();
    drop(idle.pop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    c = TcpStream::connect(f.admin).await.expect("connect");
    assert_eq!(status_on(&mut c, "/api/v1/state").await, 503);
}
