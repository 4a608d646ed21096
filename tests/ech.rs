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
use h3fleet::server::{H3Origin, TcpOrigin};
use h3fleet::tls::{EchKeys, TcpServerConfig};
use h3fleet::{Error, HttpProtocol, Session};
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
}

fn origin() -> Setup {
    let pki = TestPki::new();
    let keys = Arc::new(EchKeys::generate("public.fleet.test").unwrap());
    let port = support::free_port(None);
    let addr = ([127, 0, 0, 1], port).into();
    let tcp_tls = TcpServerConfig::builder(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes())
        .ech_keys(Arc::clone(&keys))
        .build()
        .unwrap();
    let tcp = TcpOrigin::bind(addr, tcp_tls).unwrap();
    let quic = QuicServerConfig::builder(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes())
        .ech_keys(Arc::clone(&keys))
        .build()
        .unwrap();
    let h3 = H3Origin::bind(addr, Arc::new(quic)).unwrap();
    Setup {
        pki,
        keys,
        tcp,
        _h3: h3,
        port,
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

async fn config_from_dns_is_shared_through_the_backend(protocol: HttpProtocol) {
    let setup = origin();
    let dns = DnsServer::start_with_https(
        ZONE,
        &[(&format!("{NAME}."), Ipv4Addr::LOCALHOST)],
        &[(&format!("{NAME}."), setup.keys.config_list().to_vec())],
    )
    .await;
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

    // Another replica finds it in the backend and asks DNS nothing about it.
    let b = session(&setup, &dns, &backend, protocol, EchPolicy::Auto);
    let response = b.get(&url).send().await.unwrap();
    assert_eq!(response.tls().ech, EchStatus::Accepted);
    assert_eq!(response.tls().ech_source, Some(EchSource::Backend));
    assert_eq!(dns.https_queries(), 1, "replica B looked the config up in DNS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_config_from_dns_is_shared_through_the_backend() {
    config_from_dns_is_shared_through_the_backend(HttpProtocol::Http2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_config_from_dns_is_shared_through_the_backend() {
    config_from_dns_is_shared_through_the_backend(HttpProtocol::Http3).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_config_in_dns_is_refused_and_the_request_goes_on() {
    let setup = origin();
    let dns = DnsServer::start_with_https(
        ZONE,
        &[(&format!("{NAME}."), Ipv4Addr::LOCALHOST)],
        &[(&format!("{NAME}."), b"\x00\x05garbage".to_vec())],
    )
    .await;
    let backend: Arc<dyn SessionCacheBackend> = Arc::new(MemoryBackend::new());
    let auto = session(&setup, &dns, &backend, HttpProtocol::Http2, EchPolicy::Auto);
    let response = auto
        .get(&format!("https://{NAME}:{}/", setup.port))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.tls().ech, EchStatus::Grease);
}
