//! TLS 1.3 early data over TCP (HTTP/2 and HTTP/1.1) against h3fleet's own
//! BoringSSL origin: accepted, refused and sent again on the same
//! connection, never replayed into another protocol, 425 handled, and never
//! used for a request that is not replay-safe.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use h3fleet::cache::{MemoryBackend, SessionCacheBackend, TicketSource};
use h3fleet::server::{RequestRecord, TcpOrigin};
use h3fleet::tls::TcpServerConfig;
use h3fleet::{EarlyData, Session};
use support::quic::TestPki;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Http {
    Two,
    One,
}

impl Http {
    fn version(self) -> http::Version {
        match self {
            Self::Two => http::Version::HTTP_2,
            Self::One => http::Version::HTTP_11,
        }
    }
}

/// An origin with a request log.
struct Origin {
    tcp: TcpOrigin,
    seen: Arc<Mutex<Vec<RequestRecord>>>,
}

impl Origin {
    /// A new origin on `addr` (port 0: a free one), with new ticket keys.
    fn start(pki: &TestPki, addr: SocketAddr, alpn: &[&str]) -> Self {
        let tls = TcpServerConfig::builder(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes())
            .alpn_protocols(alpn)
            .build()
            .unwrap();
        let tcp = TcpOrigin::bind(addr, tls).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        tcp.set_request_log(Some(Arc::new(move |r: &RequestRecord| {
            log.lock().unwrap().push(r.clone());
        })));
        Self { tcp, seen }
    }

    fn port(&self) -> u16 {
        self.tcp.local_addr().port()
    }

    fn seen(&self) -> Vec<RequestRecord> {
        self.seen.lock().unwrap().clone()
    }
}

fn session(pki: &TestPki, port: u16, backend: &Arc<dyn SessionCacheBackend>, http: Http) -> Session {
    let builder = Session::builder()
        .system_roots(false)
        .add_root_certificate_pem(pki.ca_pem.as_bytes())
        .resolve("localhost", port, &["127.0.0.1".parse().unwrap()])
        .session_cache(Arc::clone(backend), None);
    match http {
        Http::Two => builder.http2_only(),
        Http::One => builder.http1_only(),
    }
    .build()
    .unwrap()
}

/// A first session wins a ticket from `origin` and stores it in `backend`.
async fn win_ticket(pki: &TestPki, origin: &Origin, backend: &Arc<dyn SessionCacheBackend>, http: Http) {
    let first = session(pki, origin.port(), backend, http);
    let response = first
        .get(format!("https://localhost:{}/first", origin.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.tls().early_data, EarlyData::NotAttempted);
    assert_eq!(response.headers()["x-early-data"], "0");
    response.bytes().await.unwrap();
    assert!(first.close().await, "no ticket arrived");
}

async fn resumed_first_request_goes_as_early_data(http: Http) {
    let pki = TestPki::new();
    let origin = Origin::start(&pki, "127.0.0.1:0".parse().unwrap(), &["h2", "http/1.1"]);
    let backend: Arc<dyn SessionCacheBackend> = Arc::new(MemoryBackend::new());
    win_ticket(&pki, &origin, &backend, http).await;

    let second = session(&pki, origin.port(), &backend, http);
    let response = second
        .get(format!("https://localhost:{}/early", origin.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.protocol(), http.version());
    let tls = response.tls().clone();
    assert!(tls.resumed, "{tls:?}");
    assert_eq!(tls.ticket_source, Some(TicketSource::Backend));
    assert_eq!(tls.early_data, EarlyData::Accepted, "{tls:?}");
    assert_eq!(response.headers()["x-early-data"], "1");
    assert_eq!(response.text().await.unwrap(), "h3fleet origin: GET /early\n");
    // A second request on the same connection is not early.
    let again = second
        .get(format!("https://localhost:{}/again", origin.port()))
        .send()
        .await
        .unwrap();
    assert!(again.tls().connection_reused);
    assert_eq!(again.headers()["x-early-data"], "0");
    let seen = origin.seen();
    assert_eq!(
        seen.iter()
            .map(|r| (r.path.as_str(), r.early_data))
            .collect::<Vec<_>>(),
        [("/first", false), ("/early", true), ("/again", false)]
    );
    assert_eq!(origin.tcp.stats().early_requests(), 1);
}

#[tokio::test]
async fn h2_resumed_first_request_goes_as_early_data() {
    resumed_first_request_goes_as_early_data(Http::Two).await;
}

#[tokio::test]
async fn h1_resumed_first_request_goes_as_early_data() {
    resumed_first_request_goes_as_early_data(Http::One).await;
}

async fn refused_early_data_is_sent_again_on_the_same_connection(http: Http) {
    let pki = TestPki::new();
    let origin = Origin::start(&pki, "127.0.0.1:0".parse().unwrap(), &["h2", "http/1.1"]);
    let port = origin.port();
    let backend: Arc<dyn SessionCacheBackend> = Arc::new(MemoryBackend::new());
    win_ticket(&pki, &origin, &backend, http).await;
    // A restarted origin has new ticket keys: the ticket is refused, and with
    // it the early data.
    origin.tcp.shutdown().await;
    let origin = Origin::start(&pki, ([127, 0, 0, 1], port).into(), &["h2", "http/1.1"]);

    let second = session(&pki, port, &backend, http);
    let response = second
        .get(format!("https://localhost:{port}/refused"))
        .send()
        .await
        .unwrap();
    let tls = response.tls().clone();
    assert_eq!(tls.early_data, EarlyData::Rejected, "{tls:?}");
    assert!(!tls.resumed);
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-early-data"], "0");
    assert_eq!(response.text().await.unwrap(), "h3fleet origin: GET /refused\n");
    second.close().await;
    let seen = origin.seen();
    assert_eq!(seen.len(), 1, "the request must arrive exactly once: {seen:?}");
    assert!(!seen[0].early_data);
    let stats = origin.tcp.stats();
    assert_eq!(stats.connections(), 1, "sent again on the same connection");
    assert_eq!(stats.error_closes(), 0);
}

#[tokio::test]
async fn h2_refused_early_data_is_sent_again_on_the_same_connection() {
    refused_early_data_is_sent_again_on_the_same_connection(Http::Two).await;
}

#[tokio::test]
async fn h1_refused_early_data_is_sent_again_on_the_same_connection() {
    refused_early_data_is_sent_again_on_the_same_connection(Http::One).await;
}

#[tokio::test]
async fn early_bytes_for_h2_are_never_replayed_to_an_http1_server() {
    let pki = TestPki::new();
    let origin = Origin::start(&pki, "127.0.0.1:0".parse().unwrap(), &["h2", "http/1.1"]);
    let port = origin.port();
    let backend: Arc<dyn SessionCacheBackend> = Arc::new(MemoryBackend::new());
    win_ticket(&pki, &origin, &backend, Http::Two).await;
    origin.tcp.shutdown().await;
    // The same origin now speaks HTTP/1.1 only: the h2 early bytes (preface,
    // SETTINGS, HEADERS) would be garbage to it.
    let origin = Origin::start(&pki, ([127, 0, 0, 1], port).into(), &["http/1.1"]);

    let second = session(&pki, port, &backend, Http::Two);
    let response = second
        .get(format!("https://localhost:{port}/moved"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.protocol(), http::Version::HTTP_11);
    assert_eq!(response.tls().early_data, EarlyData::Rejected);
    assert_eq!(response.text().await.unwrap(), "h3fleet origin: GET /moved\n");
    second.close().await;
    let seen = origin.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].protocol, "http/1.1");
    assert!(!seen[0].early_data);
    assert_eq!(
        origin.tcp.stats().error_closes(),
        0,
        "the origin received bytes that were not HTTP/1.1"
    );
}

#[tokio::test]
async fn too_early_answer_is_sent_again_after_the_handshake() {
    let pki = TestPki::new();
    let origin = Origin::start(&pki, "127.0.0.1:0".parse().unwrap(), &["h2", "http/1.1"]);
    let backend: Arc<dyn SessionCacheBackend> = Arc::new(MemoryBackend::new());
    for http in [Http::Two, Http::One] {
        win_ticket(&pki, &origin, &backend, http).await;
        let second = session(&pki, origin.port(), &backend, http);
        let response = second
            .get(format!("https://localhost:{}/too-early", origin.port()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{http:?}");
        assert!(response.tls().retried_too_early);
        assert_eq!(response.tls().early_data, EarlyData::Accepted);
        assert_eq!(response.headers()["x-early-data"], "0");
    }
    let statuses: Vec<(bool, u16)> = origin
        .seen()
        .iter()
        .filter(|r| r.path == "/too-early")
        .map(|r| (r.early_data, r.status))
        .collect();
    assert_eq!(statuses, [(true, 425), (false, 200), (true, 425), (false, 200)]);
}

#[tokio::test]
async fn a_request_that_is_not_replay_safe_never_goes_early() {
    let pki = TestPki::new();
    let origin = Origin::start(&pki, "127.0.0.1:0".parse().unwrap(), &["h2", "http/1.1"]);
    let backend: Arc<dyn SessionCacheBackend> = Arc::new(MemoryBackend::new());
    win_ticket(&pki, &origin, &backend, Http::Two).await;
    let second = session(&pki, origin.port(), &backend, Http::Two);
    let response = second
        .post(format!("https://localhost:{}/order", origin.port()))
        .body("one pizza")
        .send()
        .await
        .unwrap();
    assert!(response.tls().resumed);
    assert_eq!(response.tls().early_data, EarlyData::NotAttempted);
    assert_eq!(response.headers()["x-early-data"], "0");
    assert_eq!(response.text().await.unwrap(), "one pizza");
}
