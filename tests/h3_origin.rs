//! h3fleet's HTTP/3 origin, driven by real HTTP/3 clients (h3 over quinn,
//! with h3fleet's BoringSSL layer or with rustls).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use h3fleet::server::H3Origin;
use h3fleet::server::LatencyRelay;
use support::quic::{client_endpoint, ticket_collector, TestPki};

struct Answer {
    status: http::StatusCode,
    early: String,
    body: Bytes,
}

/// One request on a new h3 client over `conn`. With `zero_rtt`, the driver
/// is not polled until the server has accepted the early data (see
/// shared/notes/zero-rtt.md).
async fn request(
    conn: quinn::Connection,
    zero_rtt: Option<quinn::ZeroRttAccepted>,
    method: http::Method,
    body: &'static [u8],
) -> Answer {
    let (mut driver, mut send) = h3::client::new(h3_quinn::Connection::new(conn)).await.unwrap();
    let req = http::Request::builder()
        .method(method)
        .uri("https://localhost/hello")
        .body(())
        .unwrap();
    let mut stream = send.send_request(req).await.unwrap();
    if !body.is_empty() {
        stream.send_data(Bytes::from_static(body)).await.unwrap();
    }
    stream.finish().await.unwrap();
    if let Some(accepted) = zero_rtt {
        assert!(accepted.await, "0-RTT rejected");
    }
    tokio::spawn(async move { std::future::poll_fn(|cx| driver.poll_close(cx)).await });
    let response = stream.recv_response().await.unwrap();
    let mut received = Vec::new();
    while let Some(mut chunk) = stream.recv_data().await.unwrap() {
        received.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
    }
    Answer {
        status: response.status(),
        early: response
            .headers()
            .get("x-early-data")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned(),
        body: received.into(),
    }
}

fn origin(pki: &TestPki) -> H3Origin {
    H3Origin::bind("127.0.0.1:0".parse().unwrap(), Arc::new(pki.boring_server())).unwrap()
}

async fn connect(pki: &TestPki, addr: std::net::SocketAddr) -> quinn::Connection {
    connect_with(pki.boring_client(), addr).await
}

async fn connect_with(tls: h3fleet::quic::QuicClientConfig, addr: std::net::SocketAddr) -> quinn::Connection {
    let tls = quinn::ClientConfig::new(Arc::new(tls));
    client_endpoint()
        .connect_with(tls, addr, "localhost")
        .unwrap()
        .await
        .unwrap()
}

#[tokio::test]
async fn get_is_answered_and_not_marked_early() {
    let pki = TestPki::new();
    let origin = origin(&pki);
    let answer = request(
        connect(&pki, origin.local_addr().unwrap()).await,
        None,
        http::Method::GET,
        b"",
    )
    .await;
    assert_eq!(answer.status, http::StatusCode::OK);
    assert_eq!(answer.early, "0");
    assert_eq!(&answer.body[..], b"h3fleet origin: GET /hello\n");
    assert_eq!(
        (origin.stats().requests(), origin.stats().early_requests()),
        (1, 0)
    );
}

#[tokio::test]
async fn post_body_is_echoed() {
    let pki = TestPki::new();
    let origin = origin(&pki);
    let conn = connect(&pki, origin.local_addr().unwrap()).await;
    let answer = request(conn, None, http::Method::POST, b"payload").await;
    assert_eq!(&answer.body[..], b"payload");
}

#[tokio::test]
async fn rustls_h3_client_is_served() {
    let pki = TestPki::new();
    let origin = origin(&pki);
    let conn = client_endpoint()
        .connect_with(pki.rustls_client(), origin.local_addr().unwrap(), "localhost")
        .unwrap()
        .await
        .unwrap();
    let answer = request(conn, None, http::Method::GET, b"").await;
    assert_eq!(answer.status, http::StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_sent_as_0rtt_is_answered_and_marked_early() {
    let pki = TestPki::new();
    let origin = origin(&pki);
    // A 20 ms RTT keeps the client's Finished well behind its 0-RTT request.
    let relay = LatencyRelay::start(origin.local_addr().unwrap(), Duration::from_millis(20))
        .await
        .unwrap();
    let (sink, tickets) = ticket_collector();
    let first = client_endpoint()
        .connect_with(
            quinn::ClientConfig::new(Arc::new(pki.boring_client().on_ticket(sink))),
            relay.addr(),
            "localhost",
        )
        .unwrap()
        .await
        .unwrap();
    assert_eq!(request(first, None, http::Method::GET, b"").await.early, "0");
    let ticket = tickets.lock().unwrap().first().cloned().expect("a ticket");
    let tls = quinn::ClientConfig::new(Arc::new(pki.boring_client().with_session(Some(ticket))));
    let connecting = client_endpoint()
        .connect_with(tls, relay.addr(), "localhost")
        .unwrap();
    let (conn, accepted) = connecting
        .into_0rtt()
        .unwrap_or_else(|_| panic!("0-RTT not offered"));
    let answer = request(conn, Some(accepted), http::Method::GET, b"").await;
    assert_eq!(answer.status, http::StatusCode::OK);
    assert_eq!(answer.early, "1", "the request did not arrive as early data");
    assert_eq!(origin.stats().early_requests(), 1);
    assert_eq!(origin.stats().connections(), 2);
}

/// A ClientHello carrying a ticket spans two datagrams. The origin must not
/// start HTTP/3 (which opens streams) before it has read the second part,
/// the one with the client's transport parameters: quinn would never wake it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_hello_split_across_delayed_datagrams_is_answered() {
    let pki = TestPki::new();
    let origin = origin(&pki);
    let (sink, tickets) = ticket_collector();
    let first = connect_with(pki.boring_client().on_ticket(sink), origin.local_addr().unwrap()).await;
    request(first, None, http::Method::GET, b"").await;
    let ticket = tickets.lock().unwrap().first().cloned().expect("a ticket");
    let relay = LatencyRelay::start_holding_second(
        origin.local_addr().unwrap(),
        Duration::from_millis(2),
        Duration::from_millis(300),
    )
    .await
    .unwrap();
    let tls = quinn::ClientConfig::new(Arc::new(pki.boring_client().with_session(Some(ticket))));
    let (conn, accepted) = client_endpoint()
        .connect_with(tls, relay.addr(), "localhost")
        .unwrap()
        .into_0rtt()
        .unwrap_or_else(|_| panic!("0-RTT not offered"));
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        request(conn, Some(accepted), http::Method::GET, b""),
    )
    .await
    .expect("the origin never answered");
    assert_eq!(answer.status, http::StatusCode::OK);
}
