//! `HttpProtocol::Auto`: HTTP/3 where the origin speaks it, TCP where it
//! does not, learned from `Alt-Svc` and from racing QUIC (with a head
//! start) against TCP, with a fallback to TCP inside one request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use h3fleet::server::{H3Origin, RequestRecord, TcpOrigin};
use h3fleet::tls::TcpServerConfig;
use h3fleet::Session;
use support::quic::TestPki;

/// An origin whose TCP and UDP sides can be started and stopped apart, on
/// one port, both logging into one list.
struct Origin {
    pki: TestPki,
    port: u16,
    tcp: Option<TcpOrigin>,
    h3: Option<H3Origin>,
    seen: Arc<Mutex<Vec<RequestRecord>>>,
}

impl Origin {
    fn new() -> Self {
        Self {
            pki: TestPki::new(),
            port: support::free_port(None),
            tcp: None,
            h3: None,
            seen: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    fn log(&self) -> h3fleet::server::RequestLog {
        let seen = Arc::clone(&self.seen);
        Arc::new(move |r: &RequestRecord| seen.lock().unwrap().push(r.clone()))
    }

    fn start_tcp(&mut self, alt_svc: bool) {
        let tls = TcpServerConfig::builder(self.pki.cert_pem.as_bytes(), self.pki.key_pem.as_bytes())
            .build()
            .unwrap();
        let tcp = TcpOrigin::bind(self.addr(), tls).unwrap();
        tcp.set_alt_svc(alt_svc.then_some(self.port));
        tcp.set_request_log(Some(self.log()));
        self.tcp = Some(tcp);
    }

    fn start_h3(&mut self) {
        let h3 = H3Origin::bind(self.addr(), self.pki.rustls_crypto()).unwrap();
        h3.set_request_log(Some(self.log()));
        self.h3 = Some(h3);
    }

    fn session(&self) -> Session {
        Session::builder()
            .system_roots(false)
            .add_root_certificate_pem(self.pki.ca_pem.as_bytes())
            .resolve("localhost", self.port, &["127.0.0.1".parse().unwrap()])
            .build()
            .unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    fn seen(&self) -> Vec<(&'static str, String)> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|r| (r.protocol, r.path.clone()))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_that_speaks_only_tcp_is_reached_over_h2() {
    let mut origin = Origin::new();
    origin.start_tcp(false);
    let session = origin.session();
    let first = session.get(origin.url("/one")).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.protocol(), http::Version::HTTP_2);
    assert_eq!(first.text().await.unwrap(), "h3fleet origin: GET /one\n");
    // Remembered: the next request uses the open HTTP/2 connection.
    let second = session.get(origin.url("/two")).send().await.unwrap();
    assert_eq!(second.protocol(), http::Version::HTTP_2);
    assert!(second.tls().connection_reused);
    assert_eq!(origin.tcp.as_ref().unwrap().stats().connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_that_speaks_both_is_reached_over_h3() {
    let mut origin = Origin::new();
    origin.start_tcp(true);
    origin.start_h3();
    let session = origin.session();
    let response = session.get(origin.url("/both")).send().await.unwrap();
    assert_eq!(response.protocol(), http::Version::HTTP_3);
    response.bytes().await.unwrap();
    // A request that is not replay-safe goes on the winner only, once.
    let post = session
        .post(origin.url("/post"))
        .body("once")
        .send()
        .await
        .unwrap();
    assert_eq!(post.text().await.unwrap(), "once");
    assert_eq!(
        origin.seen(),
        [("h3", "/both".to_owned()), ("h3", "/post".to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alt_svc_moves_the_next_request_to_h3() {
    let mut origin = Origin::new();
    // TCP only for now, but advertising HTTP/3 on the same port.
    origin.start_tcp(true);
    let session = origin.session();
    let first = session.get(origin.url("/before")).send().await.unwrap();
    assert_eq!(first.protocol(), http::Version::HTTP_2);
    assert_eq!(
        first.headers()["alt-svc"],
        format!("h3=\":{}\"; ma=86400", origin.port)
    );
    first.bytes().await.unwrap();
    origin.start_h3();
    let second = session.get(origin.url("/after")).send().await.unwrap();
    assert_eq!(second.protocol(), http::Version::HTTP_3, "{:?}", second.tls());
    second.bytes().await.unwrap();
    assert_eq!(
        origin.seen(),
        [("h2", "/before".to_owned()), ("h3", "/after".to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_that_stops_answering_falls_back_to_tcp_within_one_request() {
    let mut origin = Origin::new();
    origin.start_tcp(true);
    origin.start_h3();
    let session = origin.session();
    let first = session.get(origin.url("/h3")).send().await.unwrap();
    assert_eq!(first.protocol(), http::Version::HTTP_3);
    first.bytes().await.unwrap();
    // UDP is gone (nothing listens there any more); TCP still works.
    origin.h3.take().unwrap().close();
    for path in ["/fallback", "/POST"] {
        let request = if path == "/POST" {
            session.post(origin.url(path)).body("x")
        } else {
            session.get(origin.url(path))
        };
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.protocol(), http::Version::HTTP_2, "{path}");
        response.bytes().await.unwrap();
    }
    assert_eq!(
        origin.seen(),
        [
            ("h3", "/h3".to_owned()),
            ("h2", "/fallback".to_owned()),
            ("h2", "/POST".to_owned())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_http3_does_not_fall_back() {
    let mut origin = Origin::new();
    origin.start_tcp(false);
    let session = Session::builder()
        .system_roots(false)
        .add_root_certificate_pem(origin.pki.ca_pem.as_bytes())
        .resolve("localhost", origin.port, &["127.0.0.1".parse().unwrap()])
        .http3_only()
        .connect_timeout(std::time::Duration::from_millis(600))
        .build()
        .unwrap();
    let error = session.get(origin.url("/")).send().await.unwrap_err();
    assert!(error.is_timeout(), "{error}");
    assert!(origin.seen().is_empty());
}

/// An origin whose DNS HTTPS record lists only `h2` is not tried over QUIC
/// at all: with a 5 s head start for QUIC, the request still completes at
/// once over TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_record_without_h3_skips_quic() {
    let mut origin = Origin::new();
    origin.start_tcp(false);
    let name = "origin.fleet.test";
    let dns = support::dns::DnsServer::start_with_records(
        "fleet.test.",
        &[(&format!("{name}."), std::net::Ipv4Addr::LOCALHOST)],
        &[(&format!("{name}."), &["h2"][..], None)],
    )
    .await;
    let session = Session::builder()
        .system_roots(false)
        .add_root_certificate_pem(origin.pki.ca_pem.as_bytes())
        .dns_server(dns.addr())
        .http3_head_start(std::time::Duration::from_secs(5))
        .build()
        .unwrap();
    let request = session
        .get(format!("https://{name}:{}/tcp-only", origin.port))
        .send();
    let response = tokio::time::timeout(std::time::Duration::from_secs(3), request)
        .await
        .expect("QUIC was tried despite the HTTPS record")
        .unwrap();
    assert_eq!(response.protocol(), http::Version::HTTP_2);
    assert_eq!(dns.https_queries(), 1);
}

/// `connect_timeout` bounds connecting only: a first answer slower than it
/// (`/slow` waits 300 ms) still arrives, on HTTP/3 and on HTTP/2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_first_answer_is_not_a_connect_timeout() {
    let mut origin = Origin::new();
    origin.start_tcp(false);
    origin.start_h3();
    for protocol in [h3fleet::HttpProtocol::Http3, h3fleet::HttpProtocol::Http2] {
        let session = Session::builder()
            .system_roots(false)
            .add_root_certificate_pem(origin.pki.ca_pem.as_bytes())
            .resolve("localhost", origin.port, &["127.0.0.1".parse().unwrap()])
            .protocol(protocol)
            .connect_timeout(std::time::Duration::from_millis(150))
            .build()
            .unwrap();
        let response = session.get(origin.url("/slow")).send().await;
        let response = response.unwrap_or_else(|e| panic!("{protocol:?}: {e}"));
        assert_eq!(response.status(), 200);
        session.close().await;
    }
}

/// An origin where nothing listens on TCP and UDP is silent (quinn never
/// hears ICMP port-unreachable): the TCP refusal ends the attempt, not the
/// connect timeout, so the error is TCP's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_fails_with_the_tcp_error_not_the_connect_timeout() {
    let origin = Origin::new();
    let session = Session::builder()
        .system_roots(false)
        .resolve("localhost", origin.port, &["127.0.0.1".parse().unwrap()])
        .connect_timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let sent = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        session.get(origin.url("/")).send(),
    );
    let err = sent.await.expect("still waiting on QUIC").unwrap_err();
    assert!(matches!(err, h3fleet::Error::Tcp { .. }), "{err}");
    assert!(err.is_connect() && !err.is_timeout(), "{err}");
    eprintln!("closed port answered in {:?}", started.elapsed());
}

/// Time limits too large to add to the current time mean "no limit"; they
/// never panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_time_limits_never_panic() {
    let mut origin = Origin::new();
    origin.start_tcp(false);
    origin.start_h3();
    let session = Session::builder()
        .system_roots(false)
        .add_root_certificate_pem(origin.pki.ca_pem.as_bytes())
        .resolve("localhost", origin.port, &["127.0.0.1".parse().unwrap()])
        .timeout(std::time::Duration::MAX)
        .close_timeout(std::time::Duration::MAX)
        .connect_timeout(std::time::Duration::MAX)
        .build()
        .unwrap();
    let response = session.get(origin.url("/")).send().await.unwrap();
    assert!(!response.bytes().await.unwrap().is_empty());
    let response = session
        .get(origin.url("/"))
        .timeout(std::time::Duration::MAX)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(session.close().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requests_version_chooses_its_protocol_and_its_connections() {
    let mut origin = Origin::new();
    origin.start_tcp(true);
    origin.start_h3();
    let session = origin.session();
    let send = |path: &'static str, version| {
        let request = session.get(origin.url(path)).version(version);
        async move {
            let response = request.send().await.unwrap();
            let got = (response.version(), response.tls().connection_reused);
            response.bytes().await.unwrap();
            got
        }
    };
    // HTTP/1.1 although the server prefers h2: ALPN offered http/1.1 only.
    assert_eq!(
        send("/v11", http::Version::HTTP_11).await,
        (http::Version::HTTP_11, false)
    );
    // Not carried by the HTTP/1.1 connection, then carried by its own.
    assert_eq!(
        send("/v2", http::Version::HTTP_2).await,
        (http::Version::HTTP_2, false)
    );
    assert_eq!(
        send("/v2-again", http::Version::HTTP_2).await,
        (http::Version::HTTP_2, true)
    );
    assert_eq!(
        send("/v3", http::Version::HTTP_3).await,
        (http::Version::HTTP_3, false)
    );
    assert_eq!(
        origin.seen(),
        [
            ("http/1.1", "/v11".to_owned()),
            ("h2", "/v2".to_owned()),
            ("h2", "/v2-again".to_owned()),
            ("h3", "/v3".to_owned()),
        ]
    );
    let old = session
        .get(origin.url("/"))
        .version(http::Version::HTTP_10)
        .send()
        .await;
    assert!(old.is_err_and(|e| e.is_builder()));
    let h2c = session
        .get("http://127.0.0.1:9/")
        .version(http::Version::HTTP_2)
        .send()
        .await;
    assert!(h2c.is_err_and(|e| e.is_builder()));
}
