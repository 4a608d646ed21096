//! How a session opens connections, seen from the far end on loopback: a
//! dead first address does not hold a request up, over TCP (Happy
//! Eyeballs) or QUIC, the local address it binds, and TCP keepalive on its
//! sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use h3fleet::server::TcpOrigin;
use h3fleet::tls::TcpServerConfig;
use h3fleet::{HttpProtocol, Session, SessionBuilder};
use support::quic::TestPki;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

fn tcp_origin(pki: &TestPki) -> TcpOrigin {
    let tls = TcpServerConfig::builder(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes())
        .build()
        .unwrap();
    TcpOrigin::bind("127.0.0.1:0".parse().unwrap(), tls).unwrap()
}

fn client(pki: &TestPki, port: u16, addrs: &[IpAddr]) -> SessionBuilder {
    Session::builder()
        .system_roots(false)
        .add_root_certificate_pem(pki.ca_pem.as_bytes())
        .resolve("localhost", port, addrs)
        .protocol(HttpProtocol::Http2)
}

/// A listener whose accept queue is full and never drained: the kernel
/// drops further SYNs, so connecting to it hangs as to a black-holed
/// address. Keep the returned value alive.
async fn black_hole(at: SocketAddr) -> (TcpListener, Vec<TcpStream>) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(at).unwrap();
    let listener = socket.listen(0).unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let connecting = TcpStream::connect(at);
        if let Ok(Ok(tcp)) = tokio::time::timeout(Duration::from_millis(200), connecting).await {
            fillers.push(tcp);
        }
    }
    let hangs = tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(at)).await;
    assert!(hangs.is_err(), "the black hole at {at} answered");
    (listener, fillers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_first_address_does_not_hold_up_the_request() {
    let pki = TestPki::new();
    let origin = tcp_origin(&pki);
    let port = origin.local_addr().port();
    let dead = SocketAddr::from(([127, 0, 0, 2], port));
    let _hole = black_hole(dead).await;
    // Tried one after the other, the dead address would use up the whole
    // connect timeout and the request would fail.
    let session = client(&pki, port, &[dead.ip(), IpAddr::from([127, 0, 0, 1])])
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let response = session
        .get(format!("https://localhost:{port}/"))
        .send()
        .await
        .expect("the second address answers within the connect timeout");
    assert!(response.status().is_success());
    assert_eq!(response.remote_addr().unwrap().ip(), IpAddr::from([127, 0, 0, 1]));
    assert_eq!(origin.stats().requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_tries_the_next_address_when_the_first_does_not_answer() {
    let pki = TestPki::new();
    let origin =
        h3fleet::server::H3Origin::bind("127.0.0.1:0".parse().unwrap(), pki.rustls_crypto()).unwrap();
    let port = origin.local_addr().unwrap().port();
    // A bound UDP socket nobody reads: datagrams vanish, no ICMP comes back.
    let _silent = std::net::UdpSocket::bind(("127.0.0.2", port)).unwrap();
    let session = client(
        &pki,
        port,
        &[IpAddr::from([127, 0, 0, 2]), IpAddr::from([127, 0, 0, 1])],
    )
    .protocol(HttpProtocol::Http3)
    .connect_timeout(Duration::from_secs(3))
    .build()
    .unwrap();
    // Not replay-safe: it must reach the origin once, from the winner only.
    let response = session
        .post(format!("https://localhost:{port}/echo"))
        .body("once")
        .send()
        .await
        .expect("the second address answers within the connect timeout");
    assert_eq!(response.version(), http::Version::HTTP_3);
    assert_eq!(response.remote_addr().unwrap().ip(), IpAddr::from([127, 0, 0, 1]));
    response.bytes().await.unwrap();
    assert_eq!(origin.stats().requests(), 1);
}

/// Starts a request from `session` to a plain listener (it never answers
/// TLS), and returns the accepted socket's peer and the accepted socket,
/// with the request still waiting: both ends stay open while they live.
async fn first_connection(
    session: Session,
    listener: &TcpListener,
) -> (SocketAddr, TcpStream, tokio::task::JoinHandle<()>) {
    let port = listener.local_addr().unwrap().port();
    let waiting = tokio::spawn(async move {
        let _ = session.get(format!("https://localhost:{port}/")).send().await;
    });
    let (tcp, peer) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .expect("the session connects")
        .unwrap();
    (peer, tcp, waiting)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_come_from_the_bound_local_address() {
    let pki = TestPki::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let session = client(&pki, port, &[IpAddr::from([127, 0, 0, 1])])
        .local_address(IpAddr::from([127, 0, 0, 3]))
        .build()
        .unwrap();
    let (peer, _tcp, waiting) = first_connection(session, &listener).await;
    waiting.abort();
    assert_eq!(peer.ip(), IpAddr::from([127, 0, 0, 3]));
}

/// The timer the kernel runs on the socket bound to `local`, from
/// `/proc/net/tcp` (`tr`: 0 none, 1 retransmit, 2 keepalive, ...).
fn kernel_timer(local: SocketAddr) -> Option<String> {
    let SocketAddr::V4(v4) = local else { return None };
    let want = format!("{:08X}:{:04X}", u32::from_le_bytes(v4.ip().octets()), v4.port());
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&want.as_str()))
            .then(|| {
                fields
                    .get(5)
                    .map(|t| t.split(':').next().unwrap_or("").to_owned())
            })
            .flatten()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_keepalive_arms_the_kernels_keepalive_timer_only_when_asked() {
    let pki = TestPki::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    for (keepalive, expected) in [(Some(Duration::from_secs(30)), "02"), (None, "00")] {
        let session = client(&pki, port, &[IpAddr::from([127, 0, 0, 1])])
            .tcp_keepalive(keepalive)
            .build()
            .unwrap();
        let (peer, _tcp, waiting) = first_connection(session, &listener).await;
        // The client sets its options just after connecting, and may have a
        // retransmission timer running until its first bytes are acked:
        // give the expected timer a moment to show.
        let mut timer = kernel_timer(peer);
        for _ in 0..40 {
            if timer.as_deref() == Some(expected) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            timer = kernel_timer(peer);
        }
        waiting.abort();
        assert_eq!(timer.as_deref(), Some(expected), "keepalive {keepalive:?}");
    }
}
