//! Links to the store that an eavesdropper cannot read: `rediss://` against
//! a real `redis-server` with a TLS port and a test CA, Redis ACL users.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use h3fleet::cache::{backend_from_uri, ErrorCallback, TicketSource, TlsSessionState};
use h3fleet::server::H3Origin;
use h3fleet::Session;
use support::quic::TestPki;
use support::redis::RedisServer;

fn probe() -> TlsSessionState {
    TlsSessionState {
        ticket: "dGlja2V0".into(),
        state: "c3RhdGU=".into(),
        created_at: Utc::now(),
    }
}

/// A redis-server with TLS, and the path of a file holding `pki`'s CA.
fn tls_redis(pki: &TestPki) -> (RedisServer, u16, tempfile::TempDir, String) {
    let (redis, tls_port) = RedisServer::start_tls(pki, &[]);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let ca = ca.to_str().unwrap().to_owned();
    (redis, tls_port, dir, ca)
}

#[tokio::test]
async fn rediss_verifies_the_server_against_the_given_ca() {
    let pki = TestPki::new();
    let (_redis, port, _dir, ca) = tls_redis(&pki);
    let backend = backend_from_uri(&format!("rediss://127.0.0.1:{port}/0?ca={ca}")).unwrap();
    let value = probe();
    backend.put("k", &value, Duration::from_secs(60)).await.unwrap();
    assert_eq!(backend.get("k").await.unwrap(), Some(value));
    backend
        .put_ech_config("e", b"config", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        backend.get_ech_config("e").await.unwrap().as_deref(),
        Some(&b"config"[..])
    );
}

#[tokio::test]
async fn rediss_with_another_ca_fails_with_a_certificate_error() {
    let (pki, other) = (TestPki::new(), TestPki::new());
    let (_redis, port, _dir, _) = tls_redis(&pki);
    let (_unused, _, _dir2, other_ca) = tls_redis(&other);
    let backend = backend_from_uri(&format!("rediss://127.0.0.1:{port}/?ca={other_ca}")).unwrap();
    let err = backend.get("k").await.unwrap_err();
    let chain = format!("{err} {:?}", std::error::Error::source(&err));
    assert!(chain.to_lowercase().contains("certificate"), "{chain}");
    // The system roots do not know the test CA either.
    let system = backend_from_uri(&format!("rediss://127.0.0.1:{port}/")).unwrap();
    assert!(system.get("k").await.is_err());
}

#[tokio::test]
async fn a_missing_ca_file_is_a_clear_uri_error() {
    let err = backend_from_uri("rediss://127.0.0.1:1/?ca=/nonexistent/ca.pem").unwrap_err();
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}

/// Replicas share tickets over `rediss://`; with a wrong CA the backend is
/// unreachable, reported, and the request still succeeds with a full
/// handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_share_tickets_over_tls_and_survive_a_wrong_ca() {
    let pki = TestPki::new();
    let (_redis, port, _dir, ca) = tls_redis(&pki);
    let origin = H3Origin::bind("127.0.0.1:0".parse().unwrap(), pki.rustls_crypto()).unwrap();
    let origin_port = origin.local_addr().unwrap().port();
    let url = format!("https://localhost:{origin_port}/");
    let replica = |uri: String, on_error: Option<ErrorCallback>| {
        Session::builder()
            .system_roots(false)
            .add_root_certificate_pem(pki.ca_pem.as_bytes())
            .resolve("localhost", origin_port, &["127.0.0.1".parse().unwrap()])
            .session_cache(backend_from_uri(&uri).unwrap(), on_error)
            .http3_only()
            .build()
            .unwrap()
    };
    let good = format!("rediss://127.0.0.1:{port}/?ca={ca}");
    let first = replica(good.clone(), None);
    first.get(&url).send().await.unwrap().bytes().await.unwrap();
    assert!(first.close().await);
    let second = replica(good, None);
    let response = second.get(&url).send().await.unwrap();
    assert_eq!(response.tls().ticket_source, Some(TicketSource::Backend));
    assert!(response.tls().resumed);

    let other = TestPki::new();
    let (_unused, _, _dir2, other_ca) = tls_redis(&other);
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = Arc::clone(&seen);
    let on_error: ErrorCallback =
        Arc::new(move |op: &str, _: &str, _: &_| sink.lock().unwrap().push(op.into()));
    let wrong = replica(
        format!("rediss://127.0.0.1:{port}/?ca={other_ca}"),
        Some(on_error),
    );
    let response = wrong.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(!response.tls().resumed);
    assert!(seen.lock().unwrap().iter().any(|op| op == "get"), "{seen:?}");
}

#[tokio::test]
async fn a_redis_acl_user_authenticates_and_a_wrong_password_is_refused() {
    let redis = RedisServer::start_with(&["--user", "fleet", "on", ">fleet-pw", "~h3fleet:*", "+@all"]);
    let good = backend_from_uri(&format!("redis://fleet:fleet-pw@127.0.0.1:{}/", redis.port())).unwrap();
    let value = probe();
    good.put("h3fleet:k", &value, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(good.get("h3fleet:k").await.unwrap(), Some(value));
    // The ACL confines the user to the h3fleet keys.
    assert!(good
        .put("other:k", &probe(), Duration::from_secs(60))
        .await
        .is_err());
    let bad = backend_from_uri(&format!("redis://fleet:not-it@127.0.0.1:{}/", redis.port())).unwrap();
    let err = bad.get("h3fleet:k").await.unwrap_err();
    assert!(!format!("{err} {err:?}").contains("not-it"), "{err:?}");
}

#[tokio::test]
async fn a_redis_cluster_over_tls_verifies_every_node() {
    let pki = TestPki::new();
    let (_cluster, tls_ports) = support::redis::RedisCluster::start_tls(&pki);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let hosts: Vec<String> = tls_ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let uri = format!("rediss+cluster://{}?ca={}", hosts.join(","), ca.display());
    let backend = backend_from_uri(&uri).unwrap();
    assert_eq!(backend.name(), "redis-cluster");
    // Keys spread over the three masters' slots.
    for i in 0..20 {
        let key = format!("h3fleet:k{i}");
        let value = probe();
        backend.put(&key, &value, Duration::from_secs(60)).await.unwrap();
        assert_eq!(backend.get(&key).await.unwrap(), Some(value));
    }
    let other = TestPki::new();
    let wrong_ca = dir.path().join("other.pem");
    std::fs::write(&wrong_ca, &other.ca_pem).unwrap();
    let wrong = format!("rediss+cluster://{}?ca={}", hosts.join(","), wrong_ca.display());
    assert!(backend_from_uri(&wrong).unwrap().get("h3fleet:k0").await.is_err());
}

#[tokio::test]
async fn memcacheds_verifies_the_server_and_plain_memcached_cannot_talk_to_it() {
    let pki = TestPki::new();
    let memcached = support::memcached::MemcachedServer::start_tls(&pki);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let backend = backend_from_uri(&format!("{}?ca={}", memcached.tls_uri(), ca.display())).unwrap();
    let value = probe();
    backend
        .put("h3fleet:k", &value, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(backend.get("h3fleet:k").await.unwrap(), Some(value));
    backend
        .put_ech_config("h3fleet:e", b"config", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        backend.get_ech_config("h3fleet:e").await.unwrap().as_deref(),
        Some(&b"config"[..])
    );
    // Another CA, or the system roots: the handshake fails.
    let other = dir.path().join("other.pem");
    std::fs::write(&other, TestPki::new().ca_pem).unwrap();
    let wrong = backend_from_uri(&format!("{}?ca={}", memcached.tls_uri(), other.display())).unwrap();
    let err = wrong.get("h3fleet:k").await.unwrap_err();
    assert!(err.to_string().contains("TLS handshake"), "{err}");
    assert!(backend_from_uri(&memcached.tls_uri())
        .unwrap()
        .get("h3fleet:k")
        .await
        .is_err());
    // A cleartext client gets nothing from a TLS-only server.
    let plain = tokio::time::timeout(
        Duration::from_secs(5),
        backend_from_uri(&memcached.uri()).unwrap().get("h3fleet:k"),
    )
    .await;
    assert!(!matches!(plain, Ok(Ok(Some(_)))));
}
