//! The circuit breaker with real backend faults: Redis killed in the middle
//! of a run, and Redis answering slowly through a delaying proxy. Requests
//! never fail and never wait on a dead backend; the breaker opens, probes,
//! and closes when Redis is back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use h3fleet::cache::{backend_from_uri, BreakerConfig, ErrorCallback, Protocol, TicketSource};
use h3fleet::server::H3Origin;
use h3fleet::{Session, SessionBuilder};
use support::quic::TestPki;
use support::redis::RedisServer;

fn origin(pki: &TestPki) -> H3Origin {
    H3Origin::bind("127.0.0.1:0".parse().unwrap(), pki.rustls_crypto()).unwrap()
}

fn builder(pki: &TestPki, origin: &H3Origin, cache_uri: &str, errors: &Arc<AtomicUsize>) -> SessionBuilder {
    let count = Arc::clone(errors);
    let on_error: ErrorCallback = Arc::new(move |_, _, _| {
        count.fetch_add(1, Ordering::SeqCst);
    });
    Session::builder()
        .system_roots(false)
        .add_root_certificate_pem(pki.ca_pem.as_bytes())
        .resolve(
            "localhost",
            origin.local_addr().unwrap().port(),
            &["127.0.0.1".parse().unwrap()],
        )
        .session_cache(backend_from_uri(cache_uri).unwrap(), Some(on_error))
        .http3_only()
        .circuit_breaker(Some(BreakerConfig {
            window: Duration::from_secs(10),
            threshold: 5,
            probe_interval: Duration::from_millis(200),
            probe_timeout: Duration::from_millis(300),
            ..BreakerConfig::default()
        }))
        .backend_get_timeout(Duration::from_millis(300))
}

/// Each request under a new identifier opens its own connection, so each
/// asks the backend for a ticket first.
async fn request(session: &Session, origin: &H3Origin, i: usize) -> h3fleet::Response {
    session.set_session_identifier(format!("replica-{i}"));
    let url = format!("https://localhost:{}/r{i}", origin.local_addr().unwrap().port());
    session.get(&url).send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_during_a_run_fails_no_request_and_is_used_again_when_back() {
    let pki = TestPki::new();
    let origin = origin(&pki);
    let mut redis = RedisServer::start();
    let errors = Arc::new(AtomicUsize::new(0));
    let session = builder(&pki, &origin, &redis.uri(), &errors)
        .idle_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let breaker = Arc::clone(session.circuit_breaker().expect("on by default"));
    let mut failed = 0;
    for i in 0..1000 {
        if i == 300 {
            redis.kill();
        }
        if i == 600 {
            redis.restart();
        }
        let response = request(&session, &origin, i).await;
        if response.status() != 200 {
            failed += 1;
        }
        let _ = response.bytes().await;
        if i == 400 {
            assert!(
                breaker.is_open(),
                "the breaker should be open while Redis is down"
            );
            assert!(!session.cache(Protocol::H3).has_backend());
        }
    }
    assert_eq!(failed, 0);
    assert!(breaker.trips() >= 1);
    let seen = errors.load(Ordering::SeqCst);
    // Each failed call was reported, but the breaker stopped the calls: far
    // fewer errors than the 300 connections made while Redis was down.
    assert!((5..100).contains(&seen), "{seen} errors reported");

    // Redis is back (empty): the breaker has closed, and tickets flow again.
    let deadline = Instant::now() + Duration::from_secs(5);
    while breaker.is_open() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !breaker.is_open(),
        "the breaker did not close within 5 s of Redis returning"
    );
    assert!(session.cache(Protocol::H3).has_backend());
    let response = request(&session, &origin, 5000).await;
    response.bytes().await.unwrap();
    session.close().await;
    let replica = builder(&pki, &origin, &redis.uri(), &errors).build().unwrap();
    let response = request(&replica, &origin, 5000).await;
    assert_eq!(response.tls().ticket_source, Some(TicketSource::Backend));
    assert!(response.tls().resumed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_redis_never_delays_a_request_past_the_get_timeout_and_opens_the_breaker() {
    let pki = TestPki::new();
    let origin = origin(&pki);
    let redis = RedisServer::start();
    let proxy =
        support::SlowProxy::start(([127, 0, 0, 1], redis.port()).into(), Duration::from_secs(2)).await;
    let errors = Arc::new(AtomicUsize::new(0));
    let uri = format!("redis://127.0.0.1:{}/", proxy.port());
    let session = builder(&pki, &origin, &uri, &errors).build().unwrap();
    let breaker = Arc::clone(session.circuit_breaker().unwrap());
    for i in 0..20 {
        let started = Instant::now();
        let response = request(&session, &origin, i).await;
        assert_eq!(response.status(), 200);
        let took = started.elapsed();
        // The 300 ms get timeout plus a loopback handshake and request.
        assert!(took < Duration::from_millis(1500), "request {i} took {took:?}");
    }
    assert!(
        breaker.is_open(),
        "{} errors, breaker closed",
        errors.load(Ordering::SeqCst)
    );
    assert!(errors.load(Ordering::SeqCst) >= 5);
}

/// Corrupt values are the values' fault, not the backend's: they are
/// reported and deleted, but never open the breaker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_entries_are_deleted_without_opening_the_breaker() {
    let pki = TestPki::new();
    let origin = origin(&pki);
    let redis = RedisServer::start();
    let port = origin.local_addr().unwrap().port();
    let keys: Vec<String> = (0..20)
        .map(|i| {
            h3fleet::cache::KeyFormat::default().session(
                Some(&format!("replica-{i}")),
                "default",
                Protocol::H3,
                "localhost",
                port,
            )
        })
        .collect();
    let mut raw = redis.client();
    for key in &keys {
        redis::cmd("SET").arg(key).arg("not json").exec(&mut raw).unwrap();
    }
    let errors = Arc::new(AtomicUsize::new(0));
    let session = builder(&pki, &origin, &redis.uri(), &errors).build().unwrap();
    let breaker = Arc::clone(session.circuit_breaker().unwrap());
    for i in 0..20 {
        assert_eq!(request(&session, &origin, i).await.status(), 200);
    }
    assert!(session.close().await);
    assert_eq!(breaker.trips(), 0, "corrupt values opened the breaker");
    assert!(
        errors.load(Ordering::SeqCst) >= 20,
        "the corrupt values were not reported"
    );
    for key in &keys {
        let left: Option<String> = redis::cmd("GET").arg(key).query(&mut raw).unwrap();
        assert_ne!(left.as_deref(), Some("not json"), "{key} was not deleted");
    }
}

/// A refused connection is an answer: the backend reports it at once
/// instead of sleeping through reconnect back-offs, so the requests that
/// meet a dead Redis before the breaker opens lose almost nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_redis_fails_each_get_at_once_rather_than_after_reconnect_backoffs() {
    let mut redis = RedisServer::start();
    let backend = backend_from_uri(&redis.uri()).unwrap();
    assert!(
        backend.get("h3fleet:warm-up").await.is_ok(),
        "Redis answers before the kill"
    );
    redis.kill();
    let started = Instant::now();
    for _ in 0..5 {
        assert!(
            backend.get("h3fleet:k").await.is_err(),
            "a dead Redis is an error"
        );
    }
    // With two reconnect retries each get took about 490 ms here (2.4 s for
    // five); a refused connect takes well under a millisecond.
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(400),
        "five gets on a dead Redis took {took:?}"
    );
}
