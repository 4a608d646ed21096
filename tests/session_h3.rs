//! `Session` over HTTP/3 against h3fleet's origin on both TLS stacks
//! (quinn's rustls server and h3fleet's BoringSSL server), through a relay
//! adding 20 ms of RTT so 0-RTT requests really arrive before the
//! handshake completes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use h3fleet::cache::{
    ErrorCallback, KeyFormat, MemoryBackend, Protocol, SessionCacheBackend, TicketSource, TlsSessionState,
};
use h3fleet::server::{H3Origin, LatencyRelay};
use h3fleet::{EarlyData, EarlyDataPolicy, Error, Session, SessionBuilder};
use support::quic::TestPki;

#[derive(Clone, Copy, Debug)]
enum Stack {
    Rustls,
    Boring,
}

struct Origin {
    pki: TestPki,
    origin: H3Origin,
    relay: LatencyRelay,
}

impl Origin {
    async fn start(stack: Stack) -> Self {
        let pki = TestPki::new();
        let origin = bind(&pki, stack, "127.0.0.1:0".parse().unwrap());
        let relay = LatencyRelay::start(origin.local_addr().unwrap(), Duration::from_millis(20))
            .await
            .unwrap();
        Self { pki, origin, relay }
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.relay.addr().port())
    }

    fn session(&self) -> SessionBuilder {
        Session::builder()
            .system_roots(false)
            .add_root_certificate_pem(self.pki.ca_pem.as_bytes())
            .resolve(
                "localhost",
                self.relay.addr().port(),
                &["127.0.0.1".parse().unwrap()],
            )
    }

    /// A replica on `backend`.
    fn replica(&self, backend: &Arc<dyn SessionCacheBackend>) -> Session {
        self.session()
            .session_cache(Arc::clone(backend), None)
            .build()
            .unwrap()
    }

    fn cache_key(&self) -> String {
        KeyFormat::default().session(
            None,
            "default",
            Protocol::H3,
            "localhost",
            self.relay.addr().port(),
        )
    }
}

fn bind(pki: &TestPki, stack: Stack, addr: SocketAddr) -> H3Origin {
    let tls: Arc<dyn quinn::crypto::ServerConfig> = match stack {
        Stack::Rustls => pki.rustls_crypto(),
        Stack::Boring => Arc::new(pki.boring_server()),
    };
    H3Origin::bind(addr, tls).unwrap()
}

fn shared() -> Arc<dyn SessionCacheBackend> {
    Arc::new(MemoryBackend::new())
}

/// Records the operation labels the error callback receives.
fn recorder() -> (ErrorCallback, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    (
        Arc::new(move |op: &str, _key: &str, _e: &_| sink.lock().unwrap().push(op.to_owned())),
        seen,
    )
}

async fn get(session: &Session, url: &str) -> (h3fleet::Response, String) {
    let response = session.get(url).send().await.unwrap();
    let early = header(&response, "x-early-data");
    (response, early)
}

fn header(response: &h3fleet::Response, name: &str) -> String {
    response.headers()[name].to_str().unwrap().to_owned()
}

/// Replica 1 wins a ticket; replica 2 (another session, same backend)
/// resumes it and sends its GET in 0-RTT.
async fn second_replica_resumes_from_the_backend_with_0rtt(stack: Stack) {
    let origin = Origin::start(stack).await;
    let backend = shared();
    let first = origin.replica(&backend);
    let (response, early) = get(&first, &origin.url("/a")).await;
    let tls = response.tls().clone();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "h3fleet origin: GET /a\n");
    assert_eq!(
        (tls.ticket_source, tls.resumed, early.as_str()),
        (None, false, "0")
    );
    assert!(first.close().await, "tickets and writes should finish in time");

    let second = origin.session().session_cache(backend, None).build().unwrap();
    let (response, early) = get(&second, &origin.url("/b")).await;
    let tls = response.tls();
    assert_eq!(tls.ticket_source, Some(TicketSource::Backend));
    assert!(tls.resumed);
    assert_eq!(tls.early_data, EarlyData::Accepted);
    assert_eq!(early, "1", "the origin did not see the request as early data");
    assert_eq!(origin.origin.stats().early_requests(), 1);
}

#[tokio::test]
async fn second_replica_resumes_from_the_backend_with_0rtt_on_rustls() {
    second_replica_resumes_from_the_backend_with_0rtt(Stack::Rustls).await;
}

#[tokio::test]
async fn second_replica_resumes_from_the_backend_with_0rtt_on_boringssl() {
    second_replica_resumes_from_the_backend_with_0rtt(Stack::Boring).await;
}

/// A session with a ticket for the origin (won by a first session).
async fn warmed(origin: &Origin, backend: &Arc<dyn SessionCacheBackend>) {
    let first = origin
        .session()
        .session_cache(Arc::clone(backend), None)
        .build()
        .unwrap();
    get(&first, &origin.url("/warm")).await;
    first.close().await;
}

#[tokio::test]
async fn post_on_a_resumed_connection_is_never_early_data() {
    let origin = Origin::start(Stack::Rustls).await;
    let backend = shared();
    warmed(&origin, &backend).await;
    let session = origin.session().session_cache(backend, None).build().unwrap();
    let response = session
        .post(origin.url("/submit"))
        .body("form=1")
        .send()
        .await
        .unwrap();
    assert!(response.tls().resumed);
    assert_eq!(response.tls().early_data, EarlyData::NotAttempted);
    assert_eq!(header(&response, "x-early-data"), "0");
    assert_eq!(response.text().await.unwrap(), "form=1");
}

#[tokio::test]
async fn policy_never_keeps_a_get_out_of_early_data() {
    let origin = Origin::start(Stack::Rustls).await;
    let backend = shared();
    warmed(&origin, &backend).await;
    let session = origin
        .session()
        .session_cache(backend, None)
        .early_data(EarlyDataPolicy::Never)
        .build()
        .unwrap();
    let (response, early) = get(&session, &origin.url("/")).await;
    assert!(response.tls().resumed);
    assert_eq!(
        (response.tls().early_data, early.as_str()),
        (EarlyData::NotAttempted, "0")
    );
}

#[tokio::test]
async fn rejected_0rtt_is_sent_again_once_and_the_connection_closes_cleanly() {
    let mut origin = Origin::start(Stack::Rustls).await;
    let backend = shared();
    warmed(&origin, &backend).await;
    // Restart the origin on the same port with a new ticket store, as a
    // server that lost its ticket keys.
    let addr = origin.origin.local_addr().unwrap();
    let placeholder = bind(&origin.pki, Stack::Rustls, "127.0.0.1:0".parse().unwrap());
    drop(std::mem::replace(&mut origin.origin, placeholder));
    let mut rebound = None;
    for _ in 0..50 {
        let tls = origin.pki.rustls_crypto();
        if let Ok(o) = H3Origin::bind(addr, tls) {
            rebound = Some(o);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    origin.origin = rebound.expect("the origin's port came free");

    let (errors, seen) = recorder();
    let session = origin
        .session()
        .session_cache(Arc::clone(&backend), Some(errors))
        .build()
        .unwrap();
    let (response, early) = get(&session, &origin.url("/again")).await;
    let tls = response.tls().clone();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "h3fleet origin: GET /again\n");
    assert_eq!(tls.ticket_source, Some(TicketSource::Backend));
    assert!(!tls.resumed);
    assert_eq!(tls.early_data, EarlyData::Rejected);
    assert_eq!(early, "0");
    assert_eq!(origin.origin.stats().requests(), 1, "served exactly once");
    session.close().await;
    for _ in 0..100 {
        if origin.origin.stats().clean_closes() + origin.origin.stats().error_closes() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        (
            origin.origin.stats().clean_closes(),
            origin.origin.stats().error_closes()
        ),
        (1, 0),
        "the connection should end with H3_NO_ERROR"
    );
    assert!(seen.lock().unwrap().is_empty(), "{:?}", seen.lock().unwrap());
}

#[tokio::test]
async fn too_early_answer_is_sent_again_after_the_handshake() {
    let origin = Origin::start(Stack::Rustls).await;
    let backend = shared();
    warmed(&origin, &backend).await;
    let session = origin.session().session_cache(backend, None).build().unwrap();
    let (response, early) = get(&session, &origin.url("/too-early")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(early, "0");
    assert!(response.tls().retried_too_early);
    assert_eq!(response.tls().early_data, EarlyData::Accepted);
    assert_eq!(origin.origin.stats().requests(), 3, "warm-up, early (425), retry");
}

#[tokio::test]
async fn requests_to_one_origin_share_one_connection() {
    let origin = Origin::start(Stack::Boring).await;
    let session = origin.session().build().unwrap();
    let (first, _) = get(&session, &origin.url("/1")).await;
    assert!(!first.tls().connection_reused);
    first.bytes().await.unwrap();
    let (second, _) = get(&session, &origin.url("/2")).await;
    assert!(second.tls().connection_reused);
    assert_eq!(second.text().await.unwrap(), "h3fleet origin: GET /2\n");
    assert_eq!(origin.origin.stats().connections(), 1);
}

#[tokio::test]
async fn dead_backend_still_serves_with_full_handshakes_and_reports_get() {
    let mut redis = support::redis::RedisServer::start();
    let backend = h3fleet::cache::backend_from_uri(&redis.uri()).unwrap();
    let origin = Origin::start(Stack::Rustls).await;
    warmed(&origin, &backend).await;
    redis.kill();
    let (errors, seen) = recorder();
    let session = origin
        .session()
        .session_cache(backend, Some(errors))
        .build()
        .unwrap();
    let (response, _) = get(&session, &origin.url("/")).await;
    assert_eq!(response.status(), 200);
    assert!(!response.tls().resumed);
    assert_eq!(response.tls().ticket_source, None);
    assert!(
        seen.lock().unwrap().iter().any(|op| op == "get"),
        "{:?}",
        seen.lock().unwrap()
    );
}

#[tokio::test]
async fn corrupt_backend_entry_is_a_full_handshake_reported_as_decode() {
    let origin = Origin::start(Stack::Rustls).await;
    let backend = shared();
    let garbage = TlsSessionState {
        ticket: "AAAA".to_owned(),
        state: "bm90IGFuIGVudmVsb3Bl".to_owned(),
        created_at: chrono::Utc::now(),
    };
    backend
        .put(&origin.cache_key(), &garbage, Duration::from_secs(600))
        .await
        .unwrap();
    let (errors, seen) = recorder();
    let session = origin
        .session()
        .session_cache(backend, Some(errors))
        .build()
        .unwrap();
    let (response, _) = get(&session, &origin.url("/")).await;
    assert_eq!(response.status(), 200);
    assert!(!response.tls().resumed);
    assert_eq!(seen.lock().unwrap().as_slice(), ["decode"]);
}

#[tokio::test]
async fn alice_and_bob_never_resume_each_others_tickets() {
    let origin = Origin::start(Stack::Rustls).await;
    let backend = shared();
    let for_id = |id: &str| {
        origin
            .session()
            .session_cache(Arc::clone(&backend), None)
            .session_identifier(id)
            .build()
            .unwrap()
    };
    let alice = for_id("alice");
    get(&alice, &origin.url("/")).await;
    alice.close().await;
    let bob = for_id("bob");
    let (response, _) = get(&bob, &origin.url("/")).await;
    assert_eq!(
        (response.tls().ticket_source, response.tls().resumed),
        (None, false)
    );
    let alice_again = for_id("alice");
    let (response, _) = get(&alice_again, &origin.url("/")).await;
    assert_eq!(response.tls().ticket_source, Some(TicketSource::Backend));
    assert!(response.tls().resumed);
}

#[tokio::test]
async fn wrong_urls_are_clear_errors() {
    let session = Session::builder().build().unwrap();
    for url in ["not a url", "https://"] {
        let err = session.get(url).send().await.unwrap_err();
        assert!(matches!(err, Error::Url { .. }), "{url}: {err}");
    }
    let err = session.get("ftp://localhost/").send().await.unwrap_err();
    assert!(matches!(err, Error::Scheme { .. }) && err.is_url(), "{err}");
    let err = session
        .get("https://localhost/")
        .header("bad header", "x")
        .send()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Header(_)), "{err}");
}

#[tokio::test]
async fn untrusted_certificate_fails_the_connection() {
    let origin = Origin::start(Stack::Rustls).await;
    let session = Session::builder()
        .system_roots(false)
        .resolve(
            "localhost",
            origin.relay.addr().port(),
            &["127.0.0.1".parse().unwrap()],
        )
        .build()
        .unwrap();
    let err = session.get(origin.url("/")).send().await.unwrap_err();
    assert!(matches!(err, Error::Connection { .. }), "{err}");
}

#[test]
fn unknown_preset_names_the_known_ones() {
    let err = Session::builder().preset("chrome-131").build().unwrap_err();
    assert!(err.to_string().contains("known presets: default"), "{err}");
}

/// The server closes the pooled connection while a GET is on its way (the
/// close needs 100 ms to reach the client, so the client sends the GET on
/// it): the GET is sent again on a new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_on_a_pooled_connection_the_server_closed_is_sent_again_on_a_new_one() {
    let pki = TestPki::new();
    let origin = bind(&pki, Stack::Rustls, "127.0.0.1:0".parse().unwrap());
    let relay = LatencyRelay::start(origin.local_addr().unwrap(), Duration::from_millis(200))
        .await
        .unwrap();
    let port = relay.addr().port();
    let session = Session::builder()
        .system_roots(false)
        .add_root_certificate_pem(pki.ca_pem.as_bytes())
        .resolve("localhost", port, &["127.0.0.1".parse().unwrap()])
        .build()
        .unwrap();
    let url = format!("https://localhost:{port}/");
    session.get(&url).send().await.unwrap().bytes().await.unwrap();
    origin.close_connections();
    let response = session.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(!response.tls().connection_reused);
    assert_eq!(response.text().await.unwrap(), "h3fleet origin: GET /\n");
    assert_eq!(origin.stats().connections(), 2);
    assert_eq!(origin.stats().requests(), 2);
}

#[tokio::test]
async fn names_resolve_through_the_chosen_dns_server() {
    let origin = Origin::start(Stack::Rustls).await;
    let dns = support::dns::DnsServer::start(
        "fleet.test.",
        &[("origin.fleet.test.", std::net::Ipv4Addr::LOCALHOST)],
    )
    .await;
    let session = Session::builder()
        .system_roots(false)
        .add_root_certificate_pem(origin.pki.ca_pem.as_bytes())
        .dns_server(dns.addr())
        .build()
        .unwrap();
    let port = origin.relay.addr().port();
    let response = session
        .get(format!("https://origin.fleet.test:{port}/dns"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "h3fleet origin: GET /dns\n");
    let err = session
        .get(format!("https://missing.fleet.test:{port}/"))
        .send()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Dns(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_requests_share_one_connection() {
    let origin = Origin::start(Stack::Rustls).await;
    let session = origin.session().build().unwrap();
    let requests: Vec<_> = (0..8)
        .map(|i| {
            let (session, url) = (session.clone(), origin.url(&format!("/{i}")));
            tokio::spawn(async move { session.get(&url).send().await.unwrap().text().await.unwrap() })
        })
        .collect();
    for (i, request) in requests.into_iter().enumerate() {
        assert_eq!(request.await.unwrap(), format!("h3fleet origin: GET /{i}\n"));
    }
    assert_eq!(origin.origin.stats().connections(), 1);
}

#[tokio::test]
async fn body_arrives_in_pieces_and_the_time_limit_covers_it() {
    let origin = Origin::start(Stack::Rustls).await;
    let session = origin.session().build().unwrap();
    let mut response = session.get(origin.url("/drip")).send().await.unwrap();
    let mut pieces = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        pieces.push(chunk);
    }
    assert!(pieces.len() >= 2, "{pieces:?}");
    assert_eq!(pieces.concat(), b"drip 0\ndrip 1\ndrip 2\ndrip 3\ndrip 4\n");

    // The head comes at once; the last piece 400 ms later, past the limit.
    let response = session
        .get(origin.url("/drip"))
        .timeout(Duration::from_millis(250))
        .send()
        .await
        .unwrap();
    let err = response.bytes().await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
}

#[tokio::test]
async fn time_limit_shorter_than_the_round_trip_is_a_timeout_error() {
    let origin = Origin::start(Stack::Rustls).await;
    let session = origin
        .session()
        .timeout(Duration::from_millis(5))
        .build()
        .unwrap();
    let err = session.get(origin.url("/")).send().await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
}

/// The identifier changes while a connection is being set up: the ticket
/// that connection wins is stored under the identifier it was opened for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticket_goes_to_the_identifier_its_connection_was_opened_for() {
    let pki = TestPki::new();
    let origin = bind(&pki, Stack::Rustls, "127.0.0.1:0".parse().unwrap());
    let relay = LatencyRelay::start(origin.local_addr().unwrap(), Duration::from_millis(200))
        .await
        .unwrap();
    let port = relay.addr().port();
    let backend = shared();
    let session = Session::builder()
        .system_roots(false)
        .add_root_certificate_pem(pki.ca_pem.as_bytes())
        .resolve("localhost", port, &["127.0.0.1".parse().unwrap()])
        .session_cache(Arc::clone(&backend), None)
        .session_identifier("alice")
        .build()
        .unwrap();
    let request = tokio::spawn({
        let (session, url) = (session.clone(), format!("https://localhost:{port}/"));
        async move { session.get(&url).send().await.unwrap().bytes().await.unwrap() }
    });
    // Half-way through the first round trip: the ticket is still 300 ms away.
    tokio::time::sleep(Duration::from_millis(100)).await;
    session.set_session_identifier("bob");
    request.await.unwrap();
    session.close().await;
    let key = |id| KeyFormat::default().session(Some(id), "default", Protocol::H3, "localhost", port);
    assert!(backend.get(&key("alice")).await.unwrap().is_some());
    assert!(backend.get(&key("bob")).await.unwrap().is_none());
}

#[tokio::test]
async fn connection_idle_longer_than_the_idle_timeout_is_not_reused() {
    let origin = Origin::start(Stack::Rustls).await;
    let session = origin
        .session()
        .idle_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    get(&session, &origin.url("/")).await.0.bytes().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (response, _) = get(&session, &origin.url("/")).await;
    assert!(!response.tls().connection_reused);
    assert_eq!(origin.origin.stats().connections(), 2);
}

/// A request waiting for the connection another request is opening gets it
/// once the handshake is done, not after the other request's (slow) answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_request_uses_the_new_connection_before_the_first_answer() {
    let origin = Origin::start(Stack::Rustls).await;
    let session = origin.session().build().unwrap();
    let started = std::time::Instant::now();
    let slow = tokio::spawn({
        let (session, url) = (session.clone(), origin.url("/slow"));
        async move {
            session.get(&url).send().await.unwrap().bytes().await.unwrap();
            started.elapsed()
        }
    });
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (fast, _) = get(&session, &origin.url("/fast")).await;
    fast.bytes().await.unwrap();
    let fast_done = started.elapsed();
    let slow_done = slow.await.unwrap();
    assert!(
        fast_done + Duration::from_millis(150) < slow_done,
        "{fast_done:?} vs {slow_done:?}"
    );
    assert_eq!(origin.origin.stats().connections(), 1);
}

/// `TlsInfo::early_data == Accepted` means the request itself went in
/// 0-RTT: through 20 ms of RTT, the client's report and the origin's
/// `x-early-data` agree on every one of seven resumed replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_early_data_report_agrees_with_the_origin() {
    let origin = Origin::start(Stack::Boring).await;
    let backend = shared();
    let first = origin.replica(&backend);
    let (response, _) = get(&first, &origin.url("/")).await;
    assert_eq!(response.status(), 200);
    assert!(first.close().await);
    for replica in 0..7 {
        let session = origin.replica(&backend);
        let (response, early) = get(&session, &origin.url("/")).await;
        let tls = response.tls().clone();
        assert!(tls.resumed, "replica {replica}: {tls:?}");
        let client_says = tls.early_data == EarlyData::Accepted;
        assert_eq!(
            client_says,
            early == "1",
            "replica {replica}: {tls:?}, origin {early}"
        );
        assert!(
            client_says,
            "replica {replica}: through a relay the request goes early"
        );
        session.close().await;
    }
}
