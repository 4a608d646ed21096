//! ECH end to end on TCP and QUIC against h3fleet's BoringSSL origin: the
//! config comes from the origin's DNS HTTPS record (a real DNS server on
//! loopback), is shared through the backend, and the policies hold.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::Ipv4Addr;
use std::sync::Arc;

use h3fleet::cache::{KeyFormat, MemoryBackend, SessionCacheBackend};
use h3fleet::ech::{EchPolicy, EchSource, EchStatus};
use h3fleet::quic::QuicServerConfig;
use h3fleet::server::{H3Origin, LatencyRelay, TcpLatencyRelay, TcpOrigin};
use h3fleet::tls::{EchKeys, TcpServerConfig};
use h3fleet::{EarlyData, Error, HttpProtocol, Session};
use support::dns::DnsServer;
use support::quic::TestPki;

const ZONE: &str = "fleet.test.";
const NAME: &str = "origin.fleet.test";

struct Setup {
    pki: TestPki,
    keys: Arc<EchKeys>,
    tcp: TcpOrigin,
    _h3: H3Origin,
    port: u16,
    tcp_tls: TcpServerConfig,
    quic_tls: Arc<QuicServerConfig>,
}

fn origin() -> Setup {
    origin_with(TestPki::new())
}

fn origin_with(pki: TestPki) -> Setup {
    let keys = Arc::new(EchKeys::generate("public.fleet.test").unwrap());
    let port = support::free_port(None);
    let addr = ([127, 0, 0, 1], port).into();
    let tcp_tls = TcpServerConfig::builder(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes())
        .ech_keys(Arc::clone(&keys))
        .build()
        .unwrap();
    let tcp = TcpOrigin::bind(addr, tcp_tls.clone()).unwrap();
    let quic = Arc::new(
        QuicServerConfig::builder(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes())
            .ech_keys(Arc::clone(&keys))
            .build()
            .unwrap(),
    );
    let h3 = H3Origin::bind(addr, Arc::clone(&quic) as Arc<dyn quinn::crypto::ServerConfig>).unwrap();
    Setup {
        pki,
        keys,
        tcp,
        _h3: h3,
        port,
        tcp_tls,
        quic_tls: quic,
    }
}

fn session(
    setup: &Setup,
    dns: &DnsServer,
    backend: &Arc<dyn SessionCacheBackend>,
    protocol: HttpProtocol,
    ech: EchPolicy,
) -> Session {
    Session::builder()
        .system_roots(false)
        .add_root_certificate_pem(setup.pki.ca_pem.as_bytes())
        .dns_server(dns.addr())
        .session_cache(Arc::clone(backend), None)
        .protocol(protocol)
        .ech(ech)
        .build()
        .unwrap()
}

/// A DNS server for the zone: the origin's A record and an HTTPS record
/// whose `ech` is `ech`.
async fn dns_publishing(ech: Vec<u8>) -> DnsServer {
    DnsServer::start_with_https(
        ZONE,
        &[(&format!("{NAME}."), Ipv4Addr::LOCALHOST)],
        &[(&format!("{NAME}."), ech)],
    )
    .await
}

async fn config_from_dns_is_shared_through_the_backend(protocol: HttpProtocol) {
    let setup = origin();
    let dns = dns_publishing(setup.keys.config_list().to_vec()).await;
    let backend: Arc<dyn SessionCacheBackend> = Arc::new(MemoryBackend::new());
    let url = format!("https://{NAME}:{}/ech", setup.port);

    let a = session(&setup, &dns, &backend, protocol, EchPolicy::Auto);
    let response = a.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.tls().ech, EchStatus::Accepted, "{:?}", response.tls());
    assert_eq!(response.tls().ech_source, Some(EchSource::Dns));
    assert_eq!(dns.https_queries(), 1);
    a.close().await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let stored = backend
        .get_ech_config(&KeyFormat::default().ech("default", NAME, setup.port))
        .await
        .unwrap();
    assert_eq!(stored.as_deref(), Some(setup.keys.config_list()));

    // Another replica finds it in the backend and asks DNS nothing about it;
    // with replica A's ticket it resumes and its request goes as early data,
    // inside the encrypted ClientHello. It reaches the origin through relays
    // adding 20 ms of RTT (at 127.0.0.2, the same port), so
    // the request is surely written before the handshake completes: on bare
    // loopback the server's answer can win that race, and the client then
    // honestly reports the request as not sent early.
    let relay = LatencyRelay::start_at(
        ([127, 0, 0, 2], setup.port).into(),
        ([127, 0, 0, 1], setup.port).into(),
        std::time::Duration::from_millis(20),
    )
    .await
    .unwrap();
    let _tcp_relay = TcpLatencyRelay::start(
        ([127, 0, 0, 2], setup.port).into(),
        ([127, 0, 0, 1], setup.port).into(),
        std::time::Duration::from_millis(20),
    )
    .await
    .unwrap();
    let b = Session::builder()
        .system_roots(false)
        .add_root_certificate_pem(setup.pki.ca_pem.as_bytes())
        .dns_server(dns.addr())
        .resolve(NAME, setup.port, &[relay.addr().ip()])
        .session_cache(Arc::clone(&backend), None)
        .protocol(protocol)
        .build()
        .unwrap();
    let response = b.get(&url).send().await.unwrap();
    let tls = response.tls().clone();
    assert_eq!(tls.ech, EchStatus::Accepted);
    assert_eq!(tls.ech_source, Some(EchSource::Backend));
    assert_eq!(dns.https_queries(), 1, "replica B looked the config up in DNS");
    assert!(tls.resumed, "{tls:?}");
    assert_eq!(tls.early_data, EarlyData::Accepted, "{tls:?}");
    assert_eq!(response.headers()["x-early-data"], "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_config_from_dns_is_shared_through_the_backend() {
    config_from_dns_is_shared_through_the_backend(HttpProtocol::Http2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_config_from_dns_is_shared_through_the_backend() {
    config_from_dns_is_shared_through_the_backend(HttpProtocol::Http3).await;
}

/// With the default protocol choice the config is chosen once per
/// connection, so each replica reports where it really came from (the race
/// once asked the cache twice and reported `local` both times).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_reports_where_the_ech_config_came_from() {
    config_from_dns_is_shared_through_the_backend(HttpProtocol::Auto).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_without_a_config_fails_clearly_and_auto_sends_grease() {
    let setup = origin();
    let dns = DnsServer::start(ZONE, &[(&format!("{NAME}."), Ipv4Addr::LOCALHOST)]).await;
    let backend: Arc<dyn SessionCacheBackend> = Arc::new(MemoryBackend::new());
    let url = format!("https://{NAME}:{}/", setup.port);
    let required = session(&setup, &dns, &backend, HttpProtocol::Http2, EchPolicy::Require);
    let error = required.get(&url).send().await.unwrap_err();
    assert!(matches!(error, Error::Ech { .. }), "{error}");
    assert!(error.to_string().contains("ECH is required"), "{error}");
    assert_eq!(
        setup.tcp.stats().connections(),
        0,
        "nothing may be sent without ECH"
    );

    let auto = session(&setup, &dns, &backend, HttpProtocol::Http2, EchPolicy::Auto);
    let response = auto.get(&url).send().await.unwrap();
    assert_eq!(response.tls().ech, EchStatus::Grease);
    assert_eq!(response.tls().ech_source, None);

    let off = session(&setup, &dns, &backend, HttpProtocol::Http2, EchPolicy::Off);
    let response = off.get(&url).send().await.unwrap();
    assert_eq!(response.tls().ech, EchStatus::Off);
}

/// A malformed ECHConfigList in DNS is refused (never handed to
/// BoringSSL). This host's only HTTPS record carries `ech`, so by RFC 9848
/// the client does not fall back to a cleartext ClientHello: the request
/// fails clearly and nothing reaches the origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_config_in_dns_is_refused_without_a_cleartext_fallback() {
    let setup = origin();
    let dns = dns_publishing(b"\x00\x05garbage".to_vec()).await;
    let backend: Arc<dyn SessionCacheBackend> = Arc::new(MemoryBackend::new());
    let auto = session(&setup, &dns, &backend, HttpProtocol::Http2, EchPolicy::Auto);
    let error = auto
        .get(format!("https://{NAME}:{}/", setup.port))
        .send()
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Ech { .. }), "{error}");
    assert!(error.to_string().contains("RFC 9848"), "{error}");
    assert_eq!(setup.tcp.stats().connections(), 0);
    // With ECH off the user has chosen cleartext: it goes through.
    let off = session(&setup, &dns, &backend, HttpProtocol::Http2, EchPolicy::Off);
    assert_eq!(
        off.get(format!("https://{NAME}:{}/", setup.port))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// A ticket won over ECH is never offered in a cleartext ClientHello (it
/// would sit next to the real name): a session with ECH off does a full
/// handshake, as the origin confirms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_won_over_ech_is_never_offered_without_ech() {
    let setup = origin();
    let dns = dns_publishing(setup.keys.config_list().to_vec()).await;
    let backend: Arc<dyn SessionCacheBackend> = Arc::new(MemoryBackend::new());
    let url = format!("https://{NAME}:{}/", setup.port);
    let with_ech = session(&setup, &dns, &backend, HttpProtocol::Http2, EchPolicy::Auto);
    let response = with_ech.get(&url).send().await.unwrap();
    assert_eq!(response.tls().ech, EchStatus::Accepted);
    assert!(with_ech.close().await, "no ticket arrived");

    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    setup
        .tcp
        .set_request_log(Some(Arc::new(move |r: &h3fleet::server::RequestRecord| {
            log.lock().unwrap().push(r.resumed);
        })));
    let without = session(&setup, &dns, &backend, HttpProtocol::Http2, EchPolicy::Off);
    let response = without.get(&url).send().await.unwrap();
    assert_eq!(response.tls().ech, EchStatus::Off);
    assert!(!response.tls().resumed);
    assert_eq!(response.tls().ticket_source, None);
    assert_eq!(
        *seen.lock().unwrap(),
        [false],
        "the origin saw a resumption without ECH"
    );
    // With ECH again, the ticket is offered and resumes.
    let again = session(&setup, &dns, &backend, HttpProtocol::Http2, EchPolicy::Auto);
    let response = again.get(&url).send().await.unwrap();
    assert!(response.tls().resumed);
}

/// The origin rotates its ECH keys: the config the fleet cached is
/// rejected, the server's retry configs are used at once, and they replace
/// the cached config locally and in the backend.
async fn rotated_keys_are_learned_from_retry_configs(
    protocol: HttpProtocol,
    backend: Arc<dyn SessionCacheBackend>,
) {
    let setup = origin();
    let dns = dns_publishing(setup.keys.config_list().to_vec()).await;
    let url = format!("https://{NAME}:{}/rotated", setup.port);
    let a = session(&setup, &dns, &backend, protocol, EchPolicy::Auto);
    assert_eq!(a.get(&url).send().await.unwrap().tls().ech, EchStatus::Accepted);
    a.close().await;

    // The origin rotates its keys (the old config is now stale everywhere).
    let rotated = EchKeys::generate("public.fleet.test").unwrap();
    setup.tcp_tls.set_ech_keys(&rotated).unwrap();
    setup.quic_tls.set_ech_keys(&rotated).unwrap();
    let port = setup.port;

    let b = session(&setup, &dns, &backend, protocol, EchPolicy::Require);
    let response = b.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.tls().ech, EchStatus::Accepted, "{:?}", response.tls());
    assert_eq!(response.tls().ech_source, Some(EchSource::Local));
    response.bytes().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let stored = backend
        .get_ech_config(&KeyFormat::default().ech("default", NAME, port))
        .await
        .unwrap();
    assert_eq!(
        stored.as_deref(),
        Some(rotated.config_list()),
        "the backend still has the stale config"
    );
    // The next connection of this replica uses the new config directly.
    let c = session(&setup, &dns, &backend, protocol, EchPolicy::Require);
    let response = c.get(&url).send().await.unwrap();
    assert_eq!(response.tls().ech, EchStatus::Accepted);
    assert_eq!(response.tls().ech_source, Some(EchSource::Backend));
    assert_eq!(dns.https_queries(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_rotated_keys_are_learned_from_retry_configs_through_redis() {
    let redis = support::redis::RedisServer::start();
    let backend = h3fleet::cache::backend_from_uri(&redis.uri()).unwrap();
    rotated_keys_are_learned_from_retry_configs(HttpProtocol::Http2, backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_rotated_keys_are_learned_from_retry_configs() {
    rotated_keys_are_learned_from_retry_configs(HttpProtocol::Http3, Arc::new(MemoryBackend::new())).await;
}

/// After a rejection the server is authenticated as the ECH public name.
/// An origin whose certificate does not cover that name fails the
/// connection as a certificate error, never with the stale config's retry
/// (and never by aborting: retry configs are read only after a confirmed
/// ECH rejection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_certificate_on_the_outer_handshake_is_a_certificate_error() {
    for protocol in [HttpProtocol::Http2, HttpProtocol::Http3] {
        let setup = origin_with(TestPki::with_names(&["origin.fleet.test"]));
        let stale = EchKeys::generate("public.fleet.test").unwrap();
        let dns = dns_publishing(stale.config_list().to_vec()).await;
        let backend: Arc<dyn SessionCacheBackend> = Arc::new(MemoryBackend::new());
        let client = session(&setup, &dns, &backend, protocol, EchPolicy::Auto);
        let error = client
            .get(format!("https://{NAME}:{}/", setup.port))
            .send()
            .await
            .unwrap_err();
        let text = error.to_string().to_ascii_lowercase();
        assert!(text.contains("certificate"), "{protocol:?}: {error}");
        assert_eq!(setup.tcp.stats().requests(), 0);
    }
}

/// A config given to the builder is used as is (no lookup), and a bad one
/// is refused when the session is built.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_given_to_the_builder_needs_no_lookup() {
    let setup = origin();
    let dns = DnsServer::start(ZONE, &[(&format!("{NAME}."), Ipv4Addr::LOCALHOST)]).await;
    let base = || {
        Session::builder()
            .system_roots(false)
            .add_root_certificate_pem(setup.pki.ca_pem.as_bytes())
            .dns_server(dns.addr())
            .http2_only()
    };
    let session = base()
        .ech_config_list(NAME, setup.port, setup.keys.config_list())
        .build()
        .unwrap();
    let response = session
        .get(format!("https://{NAME}:{}/", setup.port))
        .send()
        .await
        .unwrap();
    assert_eq!(response.tls().ech, EchStatus::Accepted);
    assert_eq!(response.tls().ech_source, Some(EchSource::Config));
    assert_eq!(dns.https_queries(), 0);
    let error = base()
        .ech_config_list(NAME, setup.port, &b"\x00\x02\xfe\x0d"[..])
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("ECH config"), "{error}");
}

/// With cache keys, the ECH config in the backend is sealed: a replica with
/// the keys uses it, one without them cannot and asks DNS itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_ech_config_opens_only_with_the_keys() {
    let setup = origin();
    let dns = dns_publishing(setup.keys.config_list().to_vec()).await;
    let backend: Arc<dyn SessionCacheBackend> = Arc::new(MemoryBackend::new());
    let url = format!("https://{NAME}:{}/ech", setup.port);
    let keys = h3fleet::cache::CacheKeys::parse("k1 AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
    let replica = |keys: Option<h3fleet::cache::CacheKeys>| {
        let mut builder = Session::builder()
            .system_roots(false)
            .add_root_certificate_pem(setup.pki.ca_pem.as_bytes())
            .dns_server(dns.addr())
            .session_cache(Arc::clone(&backend), None)
            .http2_only();
        if let Some(keys) = keys {
            builder = builder.cache_keys(keys);
        }
        builder.build().unwrap()
    };
    let a = replica(Some(keys.clone()));
    assert_eq!(
        a.get(&url).send().await.unwrap().tls().ech_source,
        Some(EchSource::Dns)
    );
    assert!(a.close().await);
    let stored = backend
        .get_ech_config(&KeyFormat::default().ech("default", NAME, setup.port))
        .await
        .unwrap()
        .expect("the config was shared");
    assert!(stored.starts_with(b"H3SL"), "stored unsealed");
    let list = setup.keys.config_list();
    assert!(
        !stored.windows(list.len()).any(|w| w == list),
        "the config is readable in the store"
    );

    let b = replica(Some(keys));
    let response = b.get(&url).send().await.unwrap();
    assert_eq!(response.tls().ech_source, Some(EchSource::Backend));
    assert_eq!(response.tls().ech, EchStatus::Accepted);
    assert_eq!(dns.https_queries(), 1);
    let c = replica(None);
    let response = c.get(&url).send().await.unwrap();
    assert_eq!(response.tls().ech_source, Some(EchSource::Dns));
    assert_eq!(dns.https_queries(), 2);
}

/// One spoofed HTTPS answer cannot break a host for the fleet: a config the
/// server cannot decrypt (for a public name it has no certificate for)
/// fails the connection and never reaches the backend, so another replica
/// does its own lookup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_that_fails_is_never_shared_and_is_dropped() {
    for protocol in [HttpProtocol::Http2, HttpProtocol::Http3] {
        let setup = origin();
        let bogus = EchKeys::generate("x.invalid").unwrap();
        let dns = dns_publishing(bogus.config_list().to_vec()).await;
        let backend: Arc<dyn SessionCacheBackend> = Arc::new(MemoryBackend::new());
        let url = format!("https://{NAME}:{}/", setup.port);
        let a = session(&setup, &dns, &backend, protocol, EchPolicy::Auto);
        let error = a.get(&url).send().await.unwrap_err();
        assert!(error.is_tls(), "{protocol:?}: {error}");
        assert!(a.close().await);
        let key = KeyFormat::default().ech("default", NAME, setup.port);
        assert_eq!(
            backend.get_ech_config(&key).await.unwrap(),
            None,
            "{protocol:?}: shared"
        );
        let b = session(&setup, &dns, &backend, protocol, EchPolicy::Auto);
        assert!(b.get(&url).send().await.is_err());
        assert_eq!(dns.https_queries(), 2, "{protocol:?}: B took A's config");
        assert_eq!(setup.tcp.stats().requests(), 0);
    }
}

/// A bad config already in the backend (a replica of an older build wrote
/// it, or an attacker did) is deleted by the first replica it fails for,
/// here and in the backend, and the fleet then takes the origin's real
/// config from DNS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_that_fails_is_evicted_from_the_backend() {
    let setup = origin();
    let dns = dns_publishing(setup.keys.config_list().to_vec()).await;
    let backend: Arc<dyn SessionCacheBackend> = Arc::new(MemoryBackend::new());
    let key = KeyFormat::default().ech("default", NAME, setup.port);
    let bogus = EchKeys::generate("x.invalid").unwrap();
    backend
        .put_ech_config(&key, bogus.config_list(), std::time::Duration::from_secs(3600))
        .await
        .unwrap();
    let url = format!("https://{NAME}:{}/", setup.port);
    let a = session(&setup, &dns, &backend, HttpProtocol::Http2, EchPolicy::Auto);
    assert!(a.get(&url).send().await.unwrap_err().is_tls());
    assert!(a.close().await);
    assert_eq!(
        backend.get_ech_config(&key).await.unwrap(),
        None,
        "the bad config stayed"
    );
    let again = a.get(&url).send().await.unwrap();
    assert_eq!(
        again.tls().ech_source,
        Some(EchSource::Dns),
        "A kept the bad config"
    );
    assert_eq!(again.tls().ech, EchStatus::Accepted);
    assert!(a.close().await);
    let shared = backend.get_ech_config(&key).await.unwrap();
    assert_eq!(
        shared.as_deref(),
        Some(setup.keys.config_list()),
        "the proven config was not shared"
    );
    let b = session(&setup, &dns, &backend, HttpProtocol::Http2, EchPolicy::Auto);
    let response = b.get(&url).send().await.unwrap();
    assert_eq!(response.tls().ech, EchStatus::Accepted);
    assert_eq!(response.tls().ech_source, Some(EchSource::Backend));
}

/// Retry configs reach the backend only after the retry has ECH accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_configs_are_shared_only_once_they_worked() {
    let setup = origin();
    // A stale config for the right public name: the server rejects it and
    // sends its current one as retry config.
    let stale = EchKeys::generate("public.fleet.test").unwrap();
    let dns = dns_publishing(stale.config_list().to_vec()).await;
    let backend: Arc<dyn SessionCacheBackend> = Arc::new(MemoryBackend::new());
    let key = KeyFormat::default().ech("default", NAME, setup.port);
    let a = session(&setup, &dns, &backend, HttpProtocol::Http2, EchPolicy::Auto);
    let response = a
        .get(format!("https://{NAME}:{}/", setup.port))
        .send()
        .await
        .unwrap();
    assert_eq!(response.tls().ech, EchStatus::Accepted);
    assert!(a.close().await);
    let shared = backend.get_ech_config(&key).await.unwrap();
    assert_eq!(
        shared.as_deref(),
        Some(setup.keys.config_list()),
        "the stale config or nothing was shared"
    );
}
