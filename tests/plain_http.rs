//! `http://` URLs: plain HTTP/1.1 against h3fleet's origin
//! (`TcpOrigin::bind_plain`) and against Python's `http.server`, which
//! nobody here wrote; nothing of it reaches a cache; `https_only`; the
//! HTTP/1.1 pool's limit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use h3fleet::cache::{backend_from_uri, SessionCacheBackend};
use h3fleet::server::TcpOrigin;
use h3fleet::tls::TcpServerConfig;
use h3fleet::{HttpProtocol, Session};
use http::header;
use serde_json::Value;
use support::quic::TestPki;
use support::require_binary;

/// Python's `http.server` serving a directory with one file, on a free
/// loopback port; killed when dropped.
struct PythonServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

const FILE_BODY: &str = "served by python\n";

impl PythonServer {
    async fn start() -> Self {
        let python = require_binary("python3", "python3");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file.txt"), FILE_BODY).unwrap();
        let port = support::free_port(None);
        // Killed on drop, also when it does not come up.
        let server = Self {
            child: Command::new(python)
                .args([
                    "-m",
                    "http.server",
                    "--bind",
                    "127.0.0.1",
                    &port.to_string(),
                    "--directory",
                ])
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
            port,
            _dir: dir,
        };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("python3 -m http.server did not start on port {port}");
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn plain_origin() -> (TcpOrigin, String) {
    let origin = TcpOrigin::bind_plain("127.0.0.1:0".parse().unwrap()).unwrap();
    let base = format!("http://127.0.0.1:{}", origin.local_addr().port());
    (origin, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_server_is_fetched_over_plain_http1() {
    let python = PythonServer::start().await;
    let session = Session::builder().build().unwrap();
    let response = session.get(python.url("/file.txt")).send().await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_11);
    assert_eq!(response.status(), 200);
    // The request as it went: the session's User-Agent among its headers.
    let sent = response.request();
    assert_eq!(
        (&sent.method, sent.version),
        (&http::Method::GET, http::Version::HTTP_11)
    );
    assert!(sent.headers[header::USER_AGENT]
        .to_str()
        .unwrap()
        .starts_with("h3fleet/"));
    assert!(!response.tls().resumed);
    assert_eq!(response.text().await.unwrap(), FILE_BODY);
    let missing = session.get(python.url("/nothing-here")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.error_for_status().is_err_and(|e| e.is_status()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_requests_share_a_connection_and_write_nothing_to_the_backend() {
    let (plain, base) = plain_origin();
    let pki = TestPki::new();
    let tls = TcpServerConfig::builder(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes())
        .build()
        .unwrap();
    let secure = TcpOrigin::bind("127.0.0.1:0".parse().unwrap(), tls).unwrap();
    let backend: Arc<dyn SessionCacheBackend> = backend_from_uri("memory:").unwrap();
    let session = Session::builder()
        .system_roots(false)
        .add_root_certificate_pem(pki.ca_pem.as_bytes())
        .protocol(HttpProtocol::Http2)
        .session_cache(Arc::clone(&backend), None)
        .build()
        .unwrap();
    for n in 0..3 {
        let response = session.get(format!("{base}/echo")).send().await.unwrap();
        assert_eq!(response.tls().connection_reused, n > 0);
        let echo: Value = response.json().await.unwrap();
        // The default port is left out of Host only when it is the default.
        assert_eq!(echo["headers"]["host"], base.trim_start_matches("http://"));
    }
    assert_eq!(plain.stats().connections(), 1);
    session.close().await;
    assert!(backend.list_keys("", 100).await.unwrap().is_empty());
    // The same session over TLS does write a ticket: the check above can fail.
    let url = format!("https://localhost:{}/", secure.local_addr().port());
    let session = Session::builder()
        .system_roots(false)
        .add_root_certificate_pem(pki.ca_pem.as_bytes())
        .protocol(HttpProtocol::Http2)
        .session_cache(Arc::clone(&backend), None)
        .build()
        .unwrap();
    assert_eq!(session.get(url).send().await.unwrap().status(), 200);
    session.close().await;
    assert!(!backend.list_keys("", 100).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_from_https_to_http_is_followed_without_credentials() {
    let (plain, base) = plain_origin();
    let pki = TestPki::new();
    let tls = TcpServerConfig::builder(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes())
        .build()
        .unwrap();
    let secure = TcpOrigin::bind("127.0.0.1:0".parse().unwrap(), tls).unwrap();
    let session = Session::builder()
        .system_roots(false)
        .add_root_certificate_pem(pki.ca_pem.as_bytes())
        .build()
        .unwrap();
    let to = format!("{base}/echo");
    let start = format!(
        "https://localhost:{}/redirect-to?url={}",
        secure.local_addr().port(),
        url::form_urlencoded::byte_serialize(to.as_bytes()).collect::<String>()
    );
    let response = session.get(&start).bearer_auth("secret").send().await.unwrap();
    assert_eq!(response.url().as_str(), to);
    assert_eq!(response.redirects().len(), 1);
    let echo: Value = response.json().await.unwrap();
    assert!(echo["headers"].get("authorization").is_none(), "{echo}");
    assert_eq!(plain.stats().requests(), 1);

    let strict = Session::builder()
        .system_roots(false)
        .add_root_certificate_pem(pki.ca_pem.as_bytes())
        .https_only(true)
        .build()
        .unwrap();
    let refused = strict.get(&start).send().await.unwrap_err();
    assert!(refused.is_url(), "{refused}");
    let first = strict.get(&to).send().await.unwrap_err();
    assert!(
        first.is_url() && first.to_string().contains("https_only"),
        "{first}"
    );
    assert_eq!(
        plain.stats().requests(),
        1,
        "https_only sent nothing in the clear"
    );
}

/// Runs `n` requests to `/slow` at once (each holds its HTTP/1.1
/// connection for 300 ms, so none can wait for another's).
async fn concurrent(session: &Session, base: &str, n: usize) {
    let sends = (0..n).map(|_| async {
        let response = session.get(format!("{base}/slow")).send().await.unwrap();
        response.bytes().await.unwrap();
    });
    futures_util::future::join_all(sends).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http1_pool_keeps_as_many_connections_as_allowed() {
    let (plain, base) = plain_origin();
    let session = Session::builder().build().unwrap();
    concurrent(&session, &base, 3).await;
    concurrent(&session, &base, 3).await;
    assert_eq!(
        plain.stats().connections(),
        3,
        "the second round reused all three"
    );

    let (plain, base) = plain_origin();
    let session = Session::builder().pool_max_idle_per_host(1).build().unwrap();
    concurrent(&session, &base, 3).await;
    concurrent(&session, &base, 3).await;
    assert_eq!(plain.stats().connections(), 5, "one kept, two opened again");

    let (plain, base) = plain_origin();
    let session = Session::builder().pool_max_idle_per_host(0).build().unwrap();
    for _ in 0..2 {
        let response = session
            .get(format!("{base}/"))
            .header(header::ACCEPT, "*/*")
            .send()
            .await
            .unwrap();
        assert!(!response.tls().connection_reused);
    }
    assert_eq!(plain.stats().connections(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_fetches_an_http_url_with_curls_timings() {
    let python = PythonServer::start().await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_h3fleet"))
        .args(["get", &python.url("/file.txt"), "-s", "-w", "\n%{json}"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, json) = text.split_once('\n').unwrap();
    assert_eq!(format!("{body}\n"), FILE_BODY);
    let json: Value = serde_json::from_str(json).unwrap();
    assert_eq!(json["http_version"], "1.1");
    assert_eq!(json["time_appconnect"], 0.0, "no TLS, so no app connect");
    assert!(json["time_connect"].as_f64().unwrap() > 0.0);
    assert_eq!(json["resumed"], false);
    let refused = tokio::process::Command::new(env!("CARGO_BIN_EXE_h3fleet"))
        .args(["get", "-s", "--proto", "=https", &python.url("/file.txt")])
        .output()
        .await
        .unwrap();
    assert_eq!(
        refused.status.code(),
        Some(1),
        "curl's exit code for an unsupported protocol"
    );
}
