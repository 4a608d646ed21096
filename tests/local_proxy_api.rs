//! [`LocalProxy`] in process: registered sessions and their tickets,
//! keep-alive, the connection limit, clients that go away, and graceful
//! shutdown. The clients are curl processes and raw TCP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use h3fleet::cache::{MemoryBackend, SessionCacheBackend};
use h3fleet::proxy::LocalProxy;
use h3fleet::Session;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::serve::Serve;

/// A session trusting `serve`'s certificate, on `backend`.
fn session(serve: &Serve, backend: &Arc<MemoryBackend>) -> Session {
    builder(serve, backend).build().unwrap()
}

fn builder(serve: &Serve, backend: &Arc<MemoryBackend>) -> h3fleet::SessionBuilder {
    let pem = std::fs::read(&serve.cert).unwrap();
    Session::builder()
        .system_roots(false)
        .add_root_certificate_pem(pem)
        .session_cache(Arc::clone(backend) as Arc<dyn SessionCacheBackend>, None)
}

async fn start(serve: &Serve, backend: &Arc<MemoryBackend>) -> LocalProxy {
    LocalProxy::builder()
        .session_builder(builder(serve, backend))
        .start()
        .await
        .unwrap()
}

/// `curl -s -i` through `proxy` for `http://localhost:PORT{path}` asked as
/// https, with `extra` arguments: (status, head, body).
async fn curl(proxy: &LocalProxy, serve: &Serve, path: &str, extra: &[&str]) -> (u16, String, String) {
    let curl = support::require_binary("curl", "curl");
    let url = format!("http://localhost:{}{path}", serve.addr.port());
    let out = tokio::process::Command::new(curl)
        .args(["-s", "-S", "-i", "-x", &format!("http://{}", proxy.addr())])
        .args(["-H", "X-H3fleet-Scheme: https"])
        .args(extra)
        .arg(&url)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

fn ticket_source(head: &str) -> &str {
    head.lines()
        .find_map(|l| l.strip_prefix("x-h3fleet-ticket-source: "))
        .unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_sessions_keep_their_tickets_apart_and_an_unknown_id_is_refused() {
    let serve = Serve::start();
    let backend = Arc::new(MemoryBackend::new());
    let proxy = start(&serve, &backend).await;
    proxy
        .register_session("tenant-a", session(&serve, &backend))
        .unwrap();
    proxy
        .register_session("tenant-b", session(&serve, &backend))
        .unwrap();
    let again = proxy.register_session("tenant-a", session(&serve, &backend));
    assert!(again.is_err(), "an id registered twice");
    assert_eq!(proxy.sessions(), ["tenant-a", "tenant-b"]);

    let a = curl(&proxy, &serve, "/a", &["-H", "X-H3fleet-Session: tenant-a"]).await;
    assert_eq!((a.0, ticket_source(&a.1)), (200, "none"), "{}", a.1);
    let b = curl(&proxy, &serve, "/b", &["-H", "X-H3fleet-Session: tenant-b"]).await;
    assert_eq!(
        (b.0, ticket_source(&b.1)),
        (200, "none"),
        "tenant-b resumed another's ticket: {}",
        b.1
    );
    let unknown = curl(&proxy, &serve, "/c", &["-H", "X-H3fleet-Session: tenant-c"]).await;
    assert_eq!(unknown.0, 400);
    let error: serde_json::Value = serde_json::from_str(&unknown.2).unwrap();
    assert!(
        error["error"].as_str().unwrap().contains("unknown session"),
        "{error}"
    );
    assert!(proxy.shutdown().await, "shutdown cut something short");

    let keys = backend.list_keys("h3fleet:", 100).await.unwrap();
    assert!(keys.iter().any(|k| k.contains(":sessions:tenant-a:")), "{keys:?}");
    assert!(keys.iter().any(|k| k.contains(":sessions:tenant-b:")), "{keys:?}");

    // A new proxy on the same backend: tenant-a resumes tenant-a's ticket,
    // the default session (no identifier) finds none.
    let proxy = start(&serve, &backend).await;
    proxy
        .register_session("tenant-a", session(&serve, &backend))
        .unwrap();
    let a = curl(&proxy, &serve, "/a", &["-H", "X-H3fleet-Session: tenant-a"]).await;
    assert_eq!(ticket_source(&a.1), "backend", "{}", a.1);
    let default = curl(&proxy, &serve, "/d", &[]).await;
    assert_eq!(ticket_source(&default.1), "none", "{}", default.1);
    let stats = proxy.stats();
    assert_eq!(stats.sessions.get("tenant-a"), Some(&1), "{stats:?}");
    assert_eq!(stats.sessions.get("default"), Some(&1), "{stats:?}");

    assert!(proxy.unregister_session("tenant-a").is_some());
    assert!(!proxy.has_session("tenant-a"));
    let gone = curl(&proxy, &serve, "/a", &["-H", "X-H3fleet-Session: tenant-a"]).await;
    assert_eq!(gone.0, 400);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_connection_carries_a_hundred_requests() {
    let serve = Serve::start();
    let backend = Arc::new(MemoryBackend::new());
    let proxy = start(&serve, &backend).await;
    // curl sends the URLs one after another on one connection to the proxy.
    let urls: Vec<String> = (0..100)
        .map(|i| format!("http://localhost:{}/n/{i}", serve.addr.port()))
        .collect();
    let curl = support::require_binary("curl", "curl");
    let out = tokio::process::Command::new(curl)
        .args([
            "-s",
            "-x",
            &format!("http://{}", proxy.addr()),
            "-H",
            "X-H3fleet-Scheme: https",
        ])
        .args(&urls)
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let body = String::from_utf8(out.stdout).unwrap();
    assert_eq!(body.lines().count(), 100);
    assert!(body.ends_with("GET /n/99\n"), "{body}");
    let stats = proxy.stats();
    assert_eq!(stats.connections, 1, "keep-alive was not kept: {stats:?}");
    assert_eq!(stats.requests, 100);
    assert_eq!(stats.sessions["default"], 100);
    proxy.shutdown().await;
}

/// Sends one request with `Connection: close` and reads the whole answer.
async fn raw_request(addr: std::net::SocketAddr, port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET http://localhost:{port}{path} HTTP/1.1\r\nHost: localhost:{port}\r\nX-H3fleet-Scheme: https\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_wait_for_a_hundred_slots_and_none_hangs() {
    let serve = Serve::start();
    let backend = Arc::new(MemoryBackend::new());
    let proxy = LocalProxy::builder()
        .session_builder(builder(&serve, &backend))
        .max_connections(100)
        .start()
        .await
        .unwrap();
    let (addr, port) = (proxy.addr(), serve.addr.port());
    // Each answer takes 400 ms (five lines 100 ms apart).
    let clients: Vec<_> = (0..200)
        .map(|_| tokio::spawn(raw_request(addr, port, "/drip")))
        .collect();
    let all = tokio::time::timeout(Duration::from_secs(60), futures_util::future::join_all(clients))
        .await
        .expect("a client hung");
    for answer in all {
        let answer = answer.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("drip 4\n"), "{answer}");
    }
    let stats = proxy.stats();
    assert_eq!(stats.connections, 200, "{stats:?}");
    assert!(stats.peak_connections <= 100, "over the limit: {stats:?}");
    assert!(
        stats.peak_connections >= 50,
        "the clients never ran side by side: {stats:?}"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_mid_body_cancels_its_upstream_and_others_go_on() {
    let serve = Serve::start();
    let backend = Arc::new(MemoryBackend::new());
    let proxy = start(&serve, &backend).await;
    let port = serve.addr.port();
    // 10 GB: far more than could be sent in the time allowed below.
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    let request = format!(
        "GET http://localhost:{port}/stream/10000000000 HTTP/1.1\r\nHost: x\r\nX-H3fleet-Scheme: https\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut got = vec![0u8; 1 << 20];
    let mut read = 0;
    while read < got.len() {
        let n = stream.read(&mut got[read..]).await.unwrap();
        assert!(n > 0, "the body ended early");
        read += n;
    }
    assert!(String::from_utf8_lossy(&got[..64]).starts_with("HTTP/1.1 200"));
    drop(stream);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while proxy.stats().active_connections > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the upstream body kept flowing to nobody"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // An upload whose client goes away halfway: the next request is fine.
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    let head = format!(
        "POST http://localhost:{port}/upload HTTP/1.1\r\nHost: x\r\nX-H3fleet-Scheme: https\r\nContent-Length: 1000000\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&[7u8; 10_000]).await.unwrap();
    drop(stream);
    let answer = raw_request(proxy.addr(), port, "/after").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("GET /after\n"), "{answer}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_request_in_flight_and_its_ticket_write_then_refuses_new_clients() {
    let serve = Serve::start();
    let memory = Arc::new(MemoryBackend::new());
    let recording =
        support::recording::RecordingBackend::new(Arc::clone(&memory) as Arc<dyn SessionCacheBackend>);
    let pem = std::fs::read(&serve.cert).unwrap();
    let proxy = LocalProxy::builder()
        .session_builder(
            Session::builder()
                .system_roots(false)
                .add_root_certificate_pem(pem),
        )
        .session_cache(Arc::clone(&recording) as Arc<dyn SessionCacheBackend>, None)
        .start()
        .await
        .unwrap();
    let (addr, port) = (proxy.addr(), serve.addr.port());
    // The backend holds every write until released.
    recording.hold_puts();
    let in_flight = tokio::spawn(raw_request(addr, port, "/drip"));
    while proxy.stats().requests == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let proxy = Arc::new(proxy);
    let stopping = tokio::spawn({
        let proxy = Arc::clone(&proxy);
        async move { proxy.shutdown().await }
    });
    let answer = in_flight.await.unwrap();
    assert!(
        answer.contains("drip 4\n"),
        "the request in flight was cut: {answer}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !stopping.is_finished(),
        "shutdown returned with a ticket write still pending"
    );
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting while shutting down"
    );
    recording.release_puts();
    assert!(stopping.await.unwrap(), "shutdown cut something short");
    let keys = memory.list_keys("h3fleet:", 10).await.unwrap();
    assert!(
        keys.iter().any(|k| k.contains(":sessions:")),
        "the ticket was lost: {keys:?}"
    );
}

#[tokio::test]
async fn settings_that_cannot_work_are_refused_at_start() {
    let open = LocalProxy::builder()
        .listen("0.0.0.0:0".parse().unwrap())
        .start()
        .await;
    assert!(open.unwrap_err().to_string().contains("needs basic_auth"));
    let with_auth = LocalProxy::builder()
        .listen("0.0.0.0:0".parse().unwrap())
        .basic_auth("u", "p")
        .start()
        .await
        .unwrap();
    with_auth.shutdown().await;
    let none = LocalProxy::builder().max_connections(0).start().await;
    assert!(none.is_err());
    let built = Session::builder().build().unwrap();
    let both = LocalProxy::builder()
        .session(built)
        .session_cache(Arc::new(MemoryBackend::new()), None)
        .start()
        .await;
    assert!(both.unwrap_err().to_string().contains("session_builder"));
}
