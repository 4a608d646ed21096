//! `Session` over TLS over TCP (BoringSSL) with HTTP/2 and HTTP/1.1,
//! against hyper + tokio-rustls origins: an interop test between two TLS
//! stacks, with tickets shared through the backend per protocol.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use h3fleet::cache::{KeyFormat, MemoryBackend, Protocol, SessionCacheBackend, TicketSource};
use h3fleet::{Session, SessionBuilder};
use support::quic::TestPki;
use support::tcp::{Flavor, TcpOrigin};

fn builder(pki: &TestPki, origin: &TcpOrigin) -> SessionBuilder {
    Session::builder()
        .system_roots(false)
        .add_root_certificate_pem(pki.ca_pem.as_bytes())
        .resolve("localhost", origin.addr().port(), &["127.0.0.1".parse().unwrap()])
}

fn url(origin: &TcpOrigin, path: &str) -> String {
    format!("https://localhost:{}{path}", origin.addr().port())
}

async fn second_session_resumes(version: http::Version, flavor: Flavor) {
    let pki = TestPki::new();
    let origin = TcpOrigin::start(&pki, flavor).await;
    let backend: Arc<dyn SessionCacheBackend> = Arc::new(MemoryBackend::new());
    let make = || {
        let b = builder(&pki, &origin).session_cache(Arc::clone(&backend), None);
        match version {
            http::Version::HTTP_2 => b.http2_only(),
            _ => b.http1_only(),
        }
        .build()
        .unwrap()
    };
    let first = make();
    let response = first.get(url(&origin, "/a")).send().await.unwrap();
    assert_eq!(response.protocol(), version);
    assert_eq!(response.tls().ticket_source, None);
    assert!(!response.tls().resumed);
    assert_eq!(
        response.text().await.unwrap(),
        format!("tcp origin: {version:?} GET /a\n")
    );
    assert!(first.close().await, "a ticket should have arrived");

    let second = make();
    let response = second.get(url(&origin, "/b")).send().await.unwrap();
    assert_eq!(response.protocol(), version);
    assert_eq!(response.tls().ticket_source, Some(TicketSource::Backend));
    assert!(response.tls().resumed, "{:?}", response.tls());
    assert_eq!(
        response.text().await.unwrap(),
        format!("tcp origin: {version:?} GET /b\n")
    );
}

#[tokio::test]
async fn h2_session_resumes_from_the_backend() {
    second_session_resumes(http::Version::HTTP_2, Flavor::Modern).await;
}

#[tokio::test]
async fn h1_session_resumes_from_the_backend() {
    second_session_resumes(http::Version::HTTP_11, Flavor::Modern).await;
}

#[tokio::test]
async fn tls12_sessions_resume_locally_but_never_reach_the_backend() {
    let pki = TestPki::new();
    let origin = TcpOrigin::start(&pki, Flavor::Tls12Only).await;
    let backend: Arc<dyn SessionCacheBackend> = Arc::new(MemoryBackend::new());
    let make = || {
        builder(&pki, &origin)
            .session_cache(Arc::clone(&backend), None)
            .http2_only()
            .build()
            .unwrap()
    };
    let first = make();
    let response = first.get(url(&origin, "/a")).send().await.unwrap();
    assert!(!response.tls().resumed);
    response.bytes().await.unwrap();
    assert!(first.close().await, "a TLS 1.2 ticket should have arrived");
    // A new connection of the same process resumes from memory...
    let again = first.get(url(&origin, "/b")).send().await.unwrap();
    assert_eq!(again.tls().ticket_source, Some(TicketSource::Local));
    assert!(again.tls().resumed, "{:?}", again.tls());
    again.bytes().await.unwrap();
    first.close().await;
    // ...but a TLS 1.2 master secret is never written to the store.
    let key = KeyFormat::default().session(None, "default", Protocol::H2, "localhost", origin.addr().port());
    assert_eq!(backend.get(&key).await.unwrap(), None);
    let second = make();
    let response = second.get(url(&origin, "/c")).send().await.unwrap();
    assert_eq!(response.tls().ticket_source, None);
    assert!(!response.tls().resumed);
}

#[tokio::test]
async fn tickets_never_cross_protocols() {
    let pki = TestPki::new();
    let origin = TcpOrigin::start(&pki, Flavor::Modern).await;
    let backend: Arc<dyn SessionCacheBackend> = Arc::new(MemoryBackend::new());
    let h2 = builder(&pki, &origin)
        .session_cache(Arc::clone(&backend), None)
        .http2_only()
        .build()
        .unwrap();
    h2.get(url(&origin, "/"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    h2.close().await;
    let key = |p| KeyFormat::default().session(None, "default", p, "localhost", origin.addr().port());
    assert!(backend.get(&key(Protocol::H2)).await.unwrap().is_some());
    assert!(backend.get(&key(Protocol::H1)).await.unwrap().is_none());
    assert!(backend.get(&key(Protocol::H3)).await.unwrap().is_none());
    let h1 = builder(&pki, &origin)
        .session_cache(backend, None)
        .http1_only()
        .build()
        .unwrap();
    let response = h1.get(url(&origin, "/")).send().await.unwrap();
    assert_eq!(
        response.tls().ticket_source,
        None,
        "an h2 ticket was offered on h1"
    );
}

#[tokio::test]
async fn h2_requests_share_one_connection_and_h1_reuses_an_idle_one() {
    let pki = TestPki::new();
    let origin = TcpOrigin::start(&pki, Flavor::Modern).await;
    let h2 = builder(&pki, &origin).http2_only().build().unwrap();
    let requests: Vec<_> = (0..4)
        .map(|i| {
            let (s, u) = (h2.clone(), url(&origin, &format!("/{i}")));
            tokio::spawn(async move { s.get(&u).send().await.unwrap().text().await.unwrap() })
        })
        .collect();
    for r in requests {
        r.await.unwrap();
    }
    assert_eq!(origin.connections(), 1);
    let h1 = builder(&pki, &origin).http1_only().build().unwrap();
    for _ in 0..3 {
        h1.get(url(&origin, "/"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
    }
    assert_eq!(origin.connections(), 2, "h1 should reuse its idle connection");
    // A response not yet read never blocks the next request.
    let held = h1.get(url(&origin, "/held")).send().await.unwrap();
    let next = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        h1.get(url(&origin, "/next")).send(),
    )
    .await
    .expect("the second request waited behind the unread first")
    .unwrap();
    assert_eq!(next.text().await.unwrap(), "tcp origin: HTTP/1.1 GET /next\n");
    assert_eq!(held.text().await.unwrap(), "tcp origin: HTTP/1.1 GET /held\n");
}

#[tokio::test]
async fn post_body_and_headers_reach_an_h1_origin() {
    let pki = TestPki::new();
    let origin = TcpOrigin::start(&pki, Flavor::Modern).await;
    let h1 = builder(&pki, &origin).http1_only().build().unwrap();
    let response = h1
        .post(url(&origin, "/form"))
        .header("content-type", "text/plain")
        .body("x=1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.unwrap(),
        "tcp origin: HTTP/1.1 POST /form\n"
    );
}

#[tokio::test]
async fn a_host_names_session_is_never_offered_to_its_ip_literal() {
    let pki = TestPki::new();
    let origin = TcpOrigin::start(&pki, Flavor::Modern).await;
    let backend: Arc<dyn SessionCacheBackend> = Arc::new(MemoryBackend::new());
    let session = |b: SessionBuilder| {
        b.session_cache(Arc::clone(&backend), None)
            .http2_only()
            .build()
            .unwrap()
    };
    let by_name = session(builder(&pki, &origin));
    by_name
        .get(url(&origin, "/"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    by_name.close().await;
    let by_ip = session(builder(&pki, &origin));
    let response = by_ip
        .get(format!("https://127.0.0.1:{}/", origin.addr().port()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.tls().ticket_source, None);
    assert!(!response.tls().resumed);
}

#[tokio::test]
async fn tcp_tries_the_next_address_when_one_refuses() {
    let pki = TestPki::new();
    let origin = TcpOrigin::start(&pki, Flavor::Modern).await;
    // Nothing listens on 127.0.0.2 (the origin is bound to 127.0.0.1 only).
    let session = Session::builder()
        .system_roots(false)
        .add_root_certificate_pem(pki.ca_pem.as_bytes())
        .resolve(
            "localhost",
            origin.addr().port(),
            &["127.0.0.2".parse().unwrap(), "127.0.0.1".parse().unwrap()],
        )
        .http2_only()
        .build()
        .unwrap();
    let response = session.get(url(&origin, "/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let only_dead = Session::builder()
        .system_roots(false)
        .resolve("localhost", origin.addr().port(), &["127.0.0.2".parse().unwrap()])
        .http2_only()
        .build()
        .unwrap();
    let err = only_dead.get(url(&origin, "/")).send().await.unwrap_err();
    assert!(matches!(err, h3fleet::Error::Tcp { .. }), "{err}");
}
