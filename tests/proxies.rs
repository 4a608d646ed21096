//! Egress through real proxies started here: Dante (SOCKS5) and tinyproxy
//! (HTTP CONNECT), to h3fleet's origin on BoringSSL. Tickets stay with the
//! exit that won them; `socks5h://` makes no lookup of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

use h3fleet::cache::{backend_from_uri, SessionCacheBackend, TicketSource};
use h3fleet::server::TcpOrigin;
use h3fleet::tls::TcpServerConfig;
use h3fleet::{HttpProtocol, Proxy, Session, SessionBuilder};
use support::dns::DnsServer;
use support::proxies::{ProxyProcess, DANTE_EXIT, TINYPROXY_EXIT};
use support::quic::TestPki;

fn origin(pki: &TestPki) -> TcpOrigin {
    let tls = TcpServerConfig::builder(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes())
        .build()
        .unwrap();
    TcpOrigin::bind("127.0.0.1:0".parse().unwrap(), tls).unwrap()
}

/// Where each request the origin answers came from, in order.
fn peers_of(set_log: impl FnOnce(h3fleet::server::RequestLog)) -> Arc<Mutex<Vec<IpAddr>>> {
    let peers = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&peers);
    set_log(Arc::new(move |r: &h3fleet::server::RequestRecord| {
        seen.lock().unwrap().push(r.peer.unwrap().ip());
    }));
    peers
}

fn builder(pki: &TestPki) -> SessionBuilder {
    Session::builder()
        .system_roots(false)
        .add_root_certificate_pem(pki.ca_pem.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_and_h1_go_through_socks5_socks5h_and_http_connect() {
    let pki = TestPki::new();
    let origin = origin(&pki);
    let url = format!("https://localhost:{}/echo", origin.local_addr().port());
    let peers = peers_of(|log| origin.set_request_log(Some(log)));
    let dante = ProxyProcess::dante(None);
    let tiny = ProxyProcess::tinyproxy(None);
    let proxies = [
        format!("socks5://127.0.0.1:{}", dante.port),
        format!("socks5h://127.0.0.1:{}", dante.port),
        format!("http://127.0.0.1:{}", tiny.port),
    ];
    for proxy in &proxies {
        for (protocol, version) in [
            (HttpProtocol::Http2, http::Version::HTTP_2),
            (HttpProtocol::Http1, http::Version::HTTP_11),
            // Auto through a proxy: TCP only, no QUIC attempt.
            (HttpProtocol::Auto, http::Version::HTTP_2),
        ] {
            let session = builder(&pki)
                .proxy(Proxy::all(proxy).unwrap())
                .protocol(protocol)
                .build()
                .unwrap();
            let response = session.get(&url).send().await.unwrap();
            assert_eq!(response.version(), version, "{proxy} {protocol:?}");
            // The connection's far end is the proxy.
            assert!(response
                .remote_addr()
                .is_some_and(|a| a.port() != origin.local_addr().port()));
            response.bytes().await.unwrap();
        }
    }
    // An HTTP proxy carries TCP only.
    let http_proxy = Proxy::all(&proxies[2]).unwrap();
    let h3 = builder(&pki)
        .proxy(http_proxy)
        .protocol(HttpProtocol::Http3)
        .build()
        .unwrap();
    let refused = h3.get(&url).send().await.unwrap_err();
    assert!(
        refused.is_proxy() && refused.to_string().contains("TCP only"),
        "{refused}"
    );
    assert_eq!(origin.stats().requests(), 9);
    assert_eq!(origin.stats().connections(), 9, "each through its own tunnel");
    // The origin saw each request come from the proxy's exit address.
    let exits: Vec<IpAddr> = [[DANTE_EXIT; 3], [DANTE_EXIT; 3], [TINYPROXY_EXIT; 3]]
        .concat()
        .into_iter()
        .map(IpAddr::V4)
        .collect();
    assert_eq!(*peers.lock().unwrap(), exits);
}

/// A session through `proxy` (or direct) on the shared `backend`, all
/// under one identifier.
async fn fetch(
    pki: &TestPki,
    backend: &Arc<dyn SessionCacheBackend>,
    proxy: Option<&str>,
    url: &str,
) -> Option<TicketSource> {
    let mut b = builder(pki)
        .protocol(HttpProtocol::Http2)
        .session_cache(Arc::clone(backend), None)
        .session_identifier("fleet");
    if let Some(proxy) = proxy {
        b = b.proxy(Proxy::all(proxy).unwrap());
    }
    let session = b.build().unwrap();
    let response = session.get(url).send().await.unwrap();
    let source = response.tls().ticket_source;
    assert_eq!(response.tls().resumed, source.is_some());
    response.bytes().await.unwrap();
    session.close().await;
    source
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_stay_with_the_exit_that_won_them() {
    let pki = TestPki::new();
    let origin = origin(&pki);
    let url = format!("https://localhost:{}/", origin.local_addr().port());
    let dante = ProxyProcess::dante(None);
    let tiny = ProxyProcess::tinyproxy(None);
    let socks = format!("socks5h://127.0.0.1:{}", dante.port);
    let http = format!("http://127.0.0.1:{}", tiny.port);
    let backend: Arc<dyn SessionCacheBackend> = backend_from_uri("memory:").unwrap();
    assert_eq!(fetch(&pki, &backend, Some(&socks), &url).await, None);
    // Another replica through the same exit resumes the first one's ticket.
    assert_eq!(
        fetch(&pki, &backend, Some(&socks), &url).await,
        Some(TicketSource::Backend)
    );
    // Directly, or through another exit, it is not offered: same identifier.
    assert_eq!(fetch(&pki, &backend, None, &url).await, None);
    assert_eq!(fetch(&pki, &backend, Some(&http), &url).await, None);
    // Each then has a ticket of its own: three keys.
    assert_eq!(backend.list_keys("", 100).await.unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks5h_leaves_every_lookup_to_the_proxy() {
    let pki = TestPki::new();
    let origin = origin(&pki);
    let port = origin.local_addr().port();
    let url = format!("https://origin.fleet.test:{port}/");
    // The name is known to the test DNS server and to the proxy only.
    let dns = DnsServer::start("fleet.test.", &[("origin.fleet.test.", Ipv4Addr::LOCALHOST)]).await;
    let dante = ProxyProcess::dante(Some("127.0.0.1 localhost\n127.0.0.1 origin.fleet.test\n"));
    let session = |proxy: &str| {
        builder(&pki)
            .dns_server(dns.addr())
            .proxy(Proxy::all(&format!("{proxy}://127.0.0.1:{}", dante.port)).unwrap())
            .build()
            .unwrap()
    };
    let response = session("socks5h").get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(dns.queries(), 0, "no A, AAAA or HTTPS query for the target");
    // The control: through socks5:// the name is resolved here.
    let response = session("socks5").get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(dns.queries() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_is_down_or_refuses_the_password_fails_clearly() {
    let pki = TestPki::new();
    let origin = origin(&pki);
    let url = format!("https://localhost:{}/", origin.local_addr().port());
    let nobody = support::free_port(None);
    let down = builder(&pki)
        .proxy(Proxy::all(&format!("socks5://127.0.0.1:{nobody}")).unwrap())
        .build()
        .unwrap();
    let e = down.get(&url).send().await.unwrap_err();
    assert!(
        e.is_proxy() && e.to_string().contains("cannot connect to the proxy"),
        "{e}"
    );

    let tiny = ProxyProcess::tinyproxy(Some(("fleet", "s3cret")));
    let with = |password: &str| {
        let proxy = format!("http://fleet:{password}@127.0.0.1:{}", tiny.port);
        builder(&pki).proxy(Proxy::http(&proxy).unwrap()).build().unwrap()
    };
    let e = with("wrong").get(&url).send().await.unwrap_err();
    // tinyproxy answers a refused CONNECT password 401 (RFC 9110 says 407).
    assert!(e.is_proxy() && matches!(e.proxy_reply(), Some(401 | 407)), "{e}");
    assert!(!format!("{e} {e:?}").contains("wrong"), "{e:?}");
    let response = with("s3cret").get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_goes_through_x_skips_it_for_noproxy_and_exits_with_curls_codes() {
    let pki = TestPki::new();
    let origin = origin(&pki);
    let port = origin.local_addr().port();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let dante = ProxyProcess::dante(None);
    let tiny = ProxyProcess::tinyproxy(Some(("fleet", "s3cret")));
    let get = |extra: Vec<String>| {
        let ca = ca.clone();
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_h3fleet"))
                .args([
                    "get",
                    &format!("https://localhost:{port}/"),
                    "--cache",
                    "none",
                    "-sS",
                    "-o",
                    "/dev/null",
                ])
                .arg("--cacert")
                .arg(&ca)
                .args(["-w", "%{http_code} %{remote_port}"])
                .args(extra)
                .output()
                .await
                .unwrap()
        }
    };
    let out = get(vec!["-x".into(), format!("socks5h://127.0.0.1:{}", dante.port)]).await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("200 {}", dante.port)
    );
    let dead = format!("socks5://127.0.0.1:{}", support::free_port(None));
    let out = get(vec!["-x".into(), dead.clone()]).await;
    assert_eq!(out.status.code(), Some(7), "could not connect to the proxy");
    let out = get(vec![
        "-x".into(),
        dead,
        "--noproxy".into(),
        "example.com,localhost".into(),
    ])
    .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("200 {port}"));
    // Without -x, the environment's proxy and no-proxy list, as curl.
    let via_env = |no_proxy: &'static str| {
        let ca = ca.clone();
        let all_proxy = format!("socks5h://127.0.0.1:{}", dante.port);
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_h3fleet"))
                .args([
                    "get",
                    &format!("https://localhost:{port}/"),
                    "--cache",
                    "none",
                    "-s",
                    "-o",
                    "/dev/null",
                ])
                .arg("--cacert")
                .arg(&ca)
                .args(["-w", "%{remote_port}"])
                .env("ALL_PROXY", all_proxy)
                .env("NO_PROXY", no_proxy)
                .output()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        String::from_utf8_lossy(&via_env("").await.stdout),
        dante.port.to_string()
    );
    assert_eq!(
        String::from_utf8_lossy(&via_env("other.example, LOCALHOST").await.stdout),
        port.to_string()
    );
    let out = get(vec![
        "--proxy".into(),
        format!("http://fleet:nope@127.0.0.1:{}", tiny.port),
    ])
    .await;
    assert_eq!(out.status.code(), Some(56), "the tunnel was refused");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("nope"));
    // An https:// proxy: verified with --cacert's roots; one from another CA
    // is curl's 60.
    let front = ProxyProcess::stunnel(tiny.port, &pki.cert_pem, &pki.key_pem);
    let out = get(vec![
        "-x".into(),
        format!("https://fleet:s3cret@localhost:{}", front.port),
    ])
    .await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("200 {}", front.port)
    );
    let stranger = TestPki::new();
    let untrusted = ProxyProcess::stunnel(tiny.port, &stranger.cert_pem, &stranger.key_pem);
    let out = get(vec!["-x".into(), format!("https://localhost:{}", untrusted.port)]).await;
    assert_eq!(
        out.status.code(),
        Some(60),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_goes_through_the_socks5_udp_relay() {
    let pki = TestPki::new();
    let h3 = h3fleet::server::H3Origin::bind("127.0.0.1:0".parse().unwrap(), pki.rustls_crypto()).unwrap();
    let url = format!("https://localhost:{}/echo", h3.local_addr().unwrap().port());
    let peers = peers_of(|log| h3.set_request_log(Some(log)));
    let dante = ProxyProcess::dante(None);
    for scheme in ["socks5", "socks5h"] {
        let proxy = Proxy::all(&format!("{scheme}://127.0.0.1:{}", dante.port)).unwrap();
        let session = builder(&pki)
            .proxy(proxy)
            .protocol(HttpProtocol::Http3)
            .build()
            .unwrap();
        for _ in 0..2 {
            let response = session.post(&url).body("through the relay").send().await;
            let response = response.unwrap_or_else(|e| panic!("{e}\n{}", dante.log()));
            assert_eq!(response.version(), http::Version::HTTP_3, "{scheme}");
            // The far end reported is the proxy's relay.
            let far = response.remote_addr().unwrap();
            assert!(
                far.ip().is_loopback() && far.port() != h3.local_addr().unwrap().port(),
                "{far}"
            );
            let echo: serde_json::Value = response.json().await.unwrap();
            assert_eq!(echo["body"], "through the relay");
        }
    }
    assert_eq!(h3.stats().requests(), 4, "each request once");
    assert_eq!(
        *peers.lock().unwrap(),
        [IpAddr::V4(DANTE_EXIT); 4],
        "datagrams from the relay"
    );
    assert_eq!(h3.stats().connections(), 2, "one QUIC connection per session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socks5_proxy_without_udp_sends_auto_to_tcp_at_once() {
    let serve = support::serve::Serve::start();
    let url = format!("https://localhost:{}/", serve.addr.port());
    let cert = std::fs::read(&serve.cert).unwrap();
    let dante = ProxyProcess::dante_without_udp();
    let session = |protocol| {
        Session::builder()
            .system_roots(false)
            .add_root_certificate_pem(cert.clone())
            .proxy(Proxy::all(&format!("socks5h://127.0.0.1:{}", dante.port)).unwrap())
            .protocol(protocol)
            .build()
            .unwrap()
    };
    let started = std::time::Instant::now();
    let response = session(HttpProtocol::Auto).get(&url).send().await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    // Not the QUIC head start, let alone a QUIC timeout: the refusal is known at once.
    assert!(
        started.elapsed() < std::time::Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    let refused = session(HttpProtocol::Http3).get(&url).send().await.unwrap_err();
    assert!(refused.is_proxy() && refused.proxy_reply().is_some(), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_through_one_exit_share_0rtt_and_others_do_not() {
    let serve = support::serve::Serve::start();
    let port = serve.addr.port();
    let dante = ProxyProcess::dante(None);
    let dir = tempfile::tempdir().unwrap();
    let cache = format!("sqlite:{}", dir.path().join("fleet.db").display());
    let get = |proxy: Option<String>| {
        let (cache, cert) = (cache.clone(), serve.cert.clone());
        async move {
            let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_h3fleet"));
            command
                .args([
                    "get",
                    &format!("https://localhost:{port}/"),
                    "--cache",
                    &cache,
                    "--cacert",
                    &cert,
                ])
                .args([
                    "--resolve",
                    &format!("localhost:{port}:127.0.0.1"),
                    "--id",
                    "fleet",
                ])
                .args(["-s", "-o", "/dev/null", "-w", "%{json}"]);
            if let Some(proxy) = proxy {
                command.args(["-x", &proxy]);
            }
            let out = command.output().await.unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
        }
    };
    let exit = format!("socks5h://127.0.0.1:{}", dante.port);
    let first = get(Some(exit.clone())).await;
    assert_eq!(first["ticket_source"], "none");
    // Replica 2, another process through the same exit: 0-RTT on replica 1's ticket.
    let second = get(Some(exit)).await;
    assert_eq!(
        (second["ticket_source"].as_str(), second["early_data"].as_str()),
        (Some("backend"), Some("accepted")),
        "{second}"
    );
    // Replica 3, same identifier, directly: the exit's ticket is not offered.
    let third = get(None).await;
    assert_eq!(third["ticket_source"], "none", "{third}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_and_h1_go_through_an_https_proxy_inside_its_tls() {
    let pki = TestPki::new();
    let origin = origin(&pki);
    let peers = peers_of(|log| origin.set_request_log(Some(log)));
    let url = format!("https://localhost:{}/", origin.local_addr().port());
    let tiny = ProxyProcess::tinyproxy(Some(("fleet", "s3cret")));
    // TLS in front of tinyproxy, with a certificate for `localhost` from the
    // session's CA.
    let front = ProxyProcess::stunnel(tiny.port, &pki.cert_pem, &pki.key_pem);
    let through = |pki: &TestPki, password: &str, protocol| {
        let proxy = format!("https://fleet:{password}@localhost:{}", front.port);
        builder(pki)
            .proxy(Proxy::http(&proxy).unwrap())
            .protocol(protocol)
            .build()
            .unwrap()
    };
    for (protocol, version) in [
        (HttpProtocol::Http2, http::Version::HTTP_2),
        (HttpProtocol::Http1, http::Version::HTTP_11),
        (HttpProtocol::Auto, http::Version::HTTP_2),
    ] {
        let response = through(&pki, "s3cret", protocol).get(&url).send().await;
        let response = response.unwrap_or_else(|e| panic!("{e}\n{}\n{}", front.log(), tiny.log()));
        assert_eq!(response.version(), version);
        assert_eq!(response.remote_addr().unwrap().port(), front.port);
        assert!(
            response.tls().alpn.is_some(),
            "the origin's TLS, inside the proxy's"
        );
        response.bytes().await.unwrap();
    }
    assert_eq!(*peers.lock().unwrap(), [IpAddr::V4(TINYPROXY_EXIT); 3]);
    // The password went inside the proxy's TLS: a wrong one is refused.
    let refused = through(&pki, "wrong", HttpProtocol::Http2)
        .get(&url)
        .send()
        .await
        .unwrap_err();
    assert!(
        refused.is_proxy() && matches!(refused.proxy_reply(), Some(401 | 407)),
        "{refused}"
    );
    // A proxy whose certificate the session's roots do not trust.
    let stranger = TestPki::new();
    let untrusted = ProxyProcess::stunnel(tiny.port, &stranger.cert_pem, &stranger.key_pem);
    let proxy = format!("https://fleet:s3cret@localhost:{}", untrusted.port);
    let session = builder(&pki).proxy(Proxy::all(&proxy).unwrap()).build().unwrap();
    let e = session.get(&url).send().await.unwrap_err();
    assert!(
        e.is_proxy() && e.to_string().contains("TLS with the proxy"),
        "{e}"
    );
    assert!(!format!("{e} {e:?}").contains("s3cret"), "{e:?}");
    assert_eq!(
        origin.stats().requests(),
        3,
        "nothing reached the origin past an untrusted proxy"
    );
}

/// crypt(3) SHA-512 of `secret` (salt `h3fleet`): Dante checks the SOCKS5
/// password against the system's accounts.
const SECRET_HASH: &str =
    "$6$h3fleet$0DFFVcDzNBGUlt9nBFlnkP60JuWeBO4bVZ/VPcBZEh5/Z4xPCYOTrWPnkqyZGiRlaKzmlOgCYHwB10ojDsVSS1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks5_with_a_password_carries_h3_h2_and_h1_and_refuses_a_wrong_one() {
    let pki = TestPki::new();
    let tcp = origin(&pki);
    let port = tcp.local_addr().port();
    let h3 = h3fleet::server::H3Origin::bind(([127, 0, 0, 1], port).into(), pki.rustls_crypto()).unwrap();
    let url = format!("https://localhost:{port}/");
    let dante = ProxyProcess::dante_with_account("fleet", SECRET_HASH);
    let through = |credentials: &str, protocol| {
        let proxy = format!("socks5h://{credentials}127.0.0.1:{}", dante.port);
        builder(&pki)
            .proxy(Proxy::socks5(&proxy).unwrap())
            .protocol(protocol)
            .build()
            .unwrap()
    };
    for (protocol, version) in [
        (HttpProtocol::Http3, http::Version::HTTP_3),
        (HttpProtocol::Http2, http::Version::HTTP_2),
        (HttpProtocol::Http1, http::Version::HTTP_11),
    ] {
        let response = through("fleet:secret@", protocol).get(&url).send().await;
        let response = response.unwrap_or_else(|e| panic!("{e}\n{}", dante.log()));
        assert_eq!(response.version(), version);
        response.bytes().await.unwrap();
    }
    assert_eq!((h3.stats().requests(), tcp.stats().requests()), (1, 2));
    for credentials in ["fleet:wrong@", ""] {
        for protocol in [HttpProtocol::Http2, HttpProtocol::Http3] {
            let e = through(credentials, protocol).get(&url).send().await.unwrap_err();
            assert!(e.is_proxy(), "{credentials:?} {protocol:?}: {e}");
            assert!(!format!("{e} {e:?}").contains("wrong"), "{e:?}");
        }
    }
    assert_eq!((h3.stats().requests(), tcp.stats().requests()), (1, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks5h_offers_ech_with_a_config_from_the_backend_and_asks_dns_nothing() {
    use h3fleet::ech::{EchPolicy, EchSource, EchStatus};
    let pki = TestPki::new();
    let keys = Arc::new(h3fleet::tls::EchKeys::generate("public.fleet.test").unwrap());
    let port = support::free_port(None);
    let tls = TcpServerConfig::builder(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes())
        .ech_keys(Arc::clone(&keys))
        .build()
        .unwrap();
    let tcp = TcpOrigin::bind(([127, 0, 0, 1], port).into(), tls).unwrap();
    let quic = h3fleet::quic::QuicServerConfig::builder(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes())
        .ech_keys(Arc::clone(&keys))
        .build()
        .unwrap();
    let h3 = h3fleet::server::H3Origin::bind(([127, 0, 0, 1], port).into(), Arc::new(quic)).unwrap();
    let name = "origin.fleet.test";
    let dns = DnsServer::start_with_https(
        "fleet.test.",
        &[(&format!("{name}."), Ipv4Addr::LOCALHOST)],
        &[(&format!("{name}."), keys.config_list().to_vec())],
    )
    .await;
    let dante = ProxyProcess::dante(Some("127.0.0.1 localhost\n127.0.0.1 origin.fleet.test\n"));
    let backend: Arc<dyn SessionCacheBackend> = backend_from_uri("memory:").unwrap();
    let session = |proxy: Option<&str>, protocol, ech| {
        let mut b = builder(&pki)
            .dns_server(dns.addr())
            .session_cache(Arc::clone(&backend), None)
            .protocol(protocol)
            .ech(ech);
        if let Some(proxy) = proxy {
            b = b.proxy(Proxy::all(proxy).unwrap());
        }
        b.build().unwrap()
    };
    let url = format!("https://{name}:{port}/");
    // A direct replica learns the config from DNS and shares it.
    let direct = session(None, HttpProtocol::Http2, EchPolicy::Auto);
    let response = direct.get(&url).send().await.unwrap();
    assert_eq!(response.tls().ech_source, Some(EchSource::Dns));
    direct.close().await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let asked = dns.queries();
    // Replicas behind the name-resolving exit, over TCP and over the UDP
    // relay: ECH required, the config from the backend, no DNS query.
    let exit = format!("socks5h://127.0.0.1:{}", dante.port);
    for protocol in [HttpProtocol::Http2, HttpProtocol::Http3] {
        let behind = session(Some(&exit), protocol, EchPolicy::Require);
        let response = behind.get(&url).send().await.unwrap();
        let report = response.tls().clone();
        assert_eq!(report.ech, EchStatus::Accepted, "{protocol:?} {report:?}");
        assert_eq!(report.ech_source, Some(EchSource::Backend), "{protocol:?}");
        assert_eq!(dns.queries(), asked, "{protocol:?}: a lookup of the target");
    }
    assert_eq!((tcp.stats().requests(), h3.stats().requests()), (2, 1));
}
