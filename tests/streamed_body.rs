//! Streamed request bodies (`Body::wrap_stream`, `get -T`): 50 MiB
//! uploads on HTTP/3, HTTP/2 and plain HTTP/1.1 (chunked) arrive whole,
//! in bounded memory; a stream never goes as early data; a redirect that
//! keeps the body resends a short stream and stops at a long one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use futures_util::stream;
use h3fleet::server::{H3Origin, TcpOrigin};
use h3fleet::tls::TcpServerConfig;
use h3fleet::{Body, EarlyData, HttpProtocol, Session};
use serde_json::Value;
use support::quic::TestPki;

const PIECE: usize = 64 * 1024;
const PIECES: usize = 800; // 50 MiB

/// Piece `i` of the test upload (its bytes depend on `i`, so order counts).
fn piece(i: usize) -> Vec<u8> {
    vec![(i % 251) as u8; PIECE]
}

fn upload(pieces: usize) -> Body {
    Body::wrap_stream(stream::iter(
        (0..pieces).map(|i| Ok::<_, std::io::Error>(piece(i))),
    ))
}

fn sha256_of_upload(pieces: usize) -> String {
    let mut hash = boring::sha::Sha256::new();
    for i in 0..pieces {
        hash.update(&piece(i));
    }
    hash.finish().iter().map(|b| format!("{b:02x}")).collect()
}

struct Origins {
    pki: TestPki,
    h3: H3Origin,
    tcp: TcpOrigin,
    plain: TcpOrigin,
}

impl Origins {
    fn start() -> Self {
        let pki = TestPki::new();
        let h3 = H3Origin::bind("127.0.0.1:0".parse().unwrap(), pki.rustls_crypto()).unwrap();
        let tls = TcpServerConfig::builder(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes())
            .build()
            .unwrap();
        let tcp = TcpOrigin::bind("127.0.0.1:0".parse().unwrap(), tls).unwrap();
        let plain = TcpOrigin::bind_plain("127.0.0.1:0".parse().unwrap()).unwrap();
        Self { pki, h3, tcp, plain }
    }

    fn session(&self, protocol: HttpProtocol) -> Session {
        Session::builder()
            .system_roots(false)
            .add_root_certificate_pem(self.pki.ca_pem.as_bytes())
            .protocol(protocol)
            // Every request on a connection of its own, resuming the last one's session.
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    }

    fn h3_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.h3.local_addr().unwrap().port())
    }

    fn h2_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.tcp.local_addr().port())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_mib_stream_arrives_whole_over_h3_h2_and_plain_http1() {
    let origins = Origins::start();
    let plain = format!("http://127.0.0.1:{}/upload", origins.plain.local_addr().port());
    let expected = sha256_of_upload(PIECES);
    for (protocol, url, wire) in [
        (
            HttpProtocol::Http3,
            origins.h3_url("/upload"),
            http::Version::HTTP_3,
        ),
        (
            HttpProtocol::Http2,
            origins.h2_url("/upload"),
            http::Version::HTTP_2,
        ),
        (HttpProtocol::Http1, plain, http::Version::HTTP_11),
    ] {
        let session = origins.session(protocol);
        let response = session.put(&url).body(upload(PIECES)).send().await.unwrap();
        let version = response.version();
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["bytes"], (PIECE * PIECES) as u64, "{protocol:?}");
        assert_eq!(answer["sha256"], expected.as_str(), "{protocol:?}");
        assert_eq!((answer["method"].as_str(), version), (Some("PUT"), wire));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_waits_for_the_handshake_even_when_opted_in_to_early_data() {
    let origins = Origins::start();
    let session = origins.session(HttpProtocol::Http2);
    let url = origins.h2_url("/echo");
    // The first connection wins a ticket; the second sends whole bytes early.
    session.get(&url).send().await.unwrap().bytes().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let whole = session
        .put(&url)
        .early_data(true)
        .body("whole")
        .send()
        .await
        .unwrap();
    assert_eq!(
        whole.tls().early_data,
        EarlyData::Accepted,
        "control: the ticket allows early data"
    );
    assert_eq!(whole.headers()["x-early-data"], "1");
    whole.bytes().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let pieces = stream::iter(["stre", "amed"].map(Ok::<_, std::io::Error>));
    let streamed = session
        .put(&url)
        .early_data(true)
        .body(Body::wrap_stream(pieces))
        .send()
        .await
        .unwrap();
    assert!(streamed.tls().resumed);
    assert_eq!(streamed.tls().early_data, EarlyData::NotAttempted);
    assert_eq!(streamed.headers()["x-early-data"], "0");
    let echo: Value = streamed.json().await.unwrap();
    assert_eq!(echo["body"], "streamed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_307_resends_a_short_stream_and_stops_at_a_long_one() {
    let origins = Origins::start();
    for protocol in [HttpProtocol::Http3, HttpProtocol::Http2] {
        let session = origins.session(protocol);
        let url = match protocol {
            HttpProtocol::Http3 => origins.h3_url("/redirect-to?url=/echo&status=307"),
            _ => origins.h2_url("/redirect-to?url=/echo&status=307"),
        };
        let short = stream::iter(["hel", "lo"].map(Ok::<_, std::io::Error>));
        let response = session
            .post(&url)
            .body(Body::wrap_stream(short))
            .send()
            .await
            .unwrap();
        assert_eq!(response.redirects().len(), 1, "{protocol:?}");
        let echo: Value = response.json().await.unwrap();
        assert_eq!(
            (echo["method"].as_str(), echo["body"].as_str()),
            (Some("POST"), Some("hello"))
        );
        // Past the replay limit nothing is kept: the 307 is the answer.
        let long = upload(h3fleet::REPLAY_LIMIT / PIECE + 2);
        let response = session.post(&url).body(long).send().await.unwrap();
        assert_eq!((response.status().as_u16(), response.redirects().len()), (307, 0));
    }
}

/// The peak resident memory (`VmHWM`, KiB) of a running process.
fn peak_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_uploads_a_50_mib_file_with_t_in_bounded_memory() {
    let origins = Origins::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.bin");
    let mut bytes = Vec::with_capacity(PIECE * PIECES);
    for i in 0..PIECES {
        bytes.extend(piece(i));
    }
    std::fs::write(&file, &bytes).unwrap();
    drop(bytes);
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &origins.pki.ca_pem).unwrap();
    let port = origins.tcp.local_addr().port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_h3fleet"))
        .args([
            "get",
            &format!("https://localhost:{port}/upload"),
            "--http2",
            "--cache",
            "none",
            "-s",
        ])
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1"), "--cacert"])
        .arg(&ca)
        .arg("-T")
        .arg(&file)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let mut peak = 0;
    let out = loop {
        if let Some(kib) = peak_kib(pid) {
            peak = peak.max(kib);
        }
        match tokio::time::timeout(Duration::from_millis(10), child.wait()).await {
            Ok(status) => break status.unwrap(),
            Err(_) => continue,
        }
    };
    assert!(out.success());
    let mut text = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut child.stdout.take().unwrap(), &mut text)
        .await
        .unwrap();
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (answer["method"].as_str(), answer["bytes"].as_u64()),
        (Some("PUT"), Some((PIECE * PIECES) as u64))
    );
    assert_eq!(answer["sha256"], sha256_of_upload(PIECES).as_str());
    // Read whole, the file alone would take 50 MiB.
    assert!(peak > 0 && peak < 45 * 1024, "peak resident memory {peak} KiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_origin_streams_n_bytes_for_stream_n() {
    use futures_util::StreamExt;
    let origins = Origins::start();
    let n = 3 * 1024 * 1024 + 17;
    for (protocol, url) in [
        (HttpProtocol::Http3, origins.h3_url(&format!("/stream/{n}"))),
        (HttpProtocol::Http2, origins.h2_url(&format!("/stream/{n}"))),
    ] {
        let response = origins.session(protocol).get(&url).send().await.unwrap();
        assert_eq!(response.content_length(), Some(n as u64));
        let mut body = std::pin::pin!(response.bytes_stream());
        let (mut total, mut pieces) = (0, 0);
        while let Some(piece) = body.next().await {
            total += piece.unwrap().len();
            pieces += 1;
        }
        assert_eq!(total, n, "{protocol:?}");
        assert!(pieces > 1, "streamed in pieces");
    }
}
