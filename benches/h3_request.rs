//! HTTP/3 requests through `Session`, against h3fleet's origin on quinn's
//! rustls server, on loopback:
//!
//! - `warm`: one GET on an open connection, `Session` against a raw h3-quinn
//!   client (quinn + rustls) doing the same GET on its own open connection.
//!   The target is `Session` within 1.1× of the raw client.
//! - `first_request`: a new `Session` (cold process) whose first GET pays a
//!   full handshake, against one that resumes a ticket from the shared
//!   backend and sends the GET as 0-RTT. Timed from `send` to the whole body.
//!
//! `cargo bench --bench h3_request`
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use criterion::{criterion_group, criterion_main, Criterion};
use h3fleet::cache::{MemoryBackend, SessionCacheBackend};
use h3fleet::server::H3Origin;
use h3fleet::{EarlyData, Session};
use support::quic::{client_endpoint, TestPki};

type RawSend = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;

async fn raw_get(send: &mut RawSend, url: &str) -> usize {
    // The same request on the wire as `Session` sends (its one header).
    let request = http::Request::get(url)
        .header("user-agent", concat!("h3fleet/", env!("CARGO_PKG_VERSION")))
        .body(())
        .unwrap();
    let mut stream = send.send_request(request).await.unwrap();
    stream.finish().await.unwrap();
    let response = stream.recv_response().await.unwrap();
    assert_eq!(response.status(), 200);
    let mut n = 0;
    while let Some(chunk) = stream.recv_data().await.unwrap() {
        n += chunk.remaining();
    }
    n
}

fn session_for(pki: &TestPki, port: u16, backend: Option<Arc<dyn SessionCacheBackend>>) -> Session {
    let mut builder = Session::builder()
        .system_roots(false)
        .add_root_certificate_pem(pki.ca_pem.as_bytes())
        .resolve("localhost", port, &["127.0.0.1".parse().unwrap()])
        // The raw h3-quinn client sends no Accept-Encoding: the same bytes on the wire.
        .gzip(false)
        .brotli(false)
        .zstd(false)
        .deflate(false);
    if let Some(backend) = backend {
        builder = builder.session_cache(backend, None);
    }
    builder.build().unwrap()
}

fn warm(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pki = TestPki::new();
    let origin =
        rt.block_on(async { H3Origin::bind("127.0.0.1:0".parse().unwrap(), pki.rustls_crypto()).unwrap() });
    let port = origin.local_addr().unwrap().port();
    let url = format!("https://localhost:{port}/warm");
    let session = rt.block_on(async { session_for(&pki, port, None) });
    rt.block_on(async { session.get(&url).send().await.unwrap().bytes().await.unwrap() });
    let raw_client = |tls: quinn::ClientConfig| {
        rt.block_on(async {
            let conn = client_endpoint()
                .connect_with(tls, origin.local_addr().unwrap(), "localhost")
                .unwrap()
                .await
                .unwrap();
            let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn.clone()))
                .await
                .unwrap();
            tokio::spawn(async move { std::future::poll_fn(|cx| driver.poll_close(cx)).await });
            (send, conn)
        })
    };
    let mut group = c.benchmark_group("warm");
    group.bench_function("h3fleet_session", |b| {
        b.to_async(&rt).iter(|| async {
            let response = session.get(&url).send().await.unwrap();
            assert!(response.tls().connection_reused);
            response.bytes().await.unwrap().len()
        });
    });
    // Each raw connection is opened just before its run: an idle one would
    // reach the 30 s QUIC idle timeout during the others' runs.
    let (raw, _raw_conn) = raw_client(pki.rustls_client());
    group.bench_function("raw_h3_quinn", |b| {
        b.to_async(&rt).iter(|| {
            let (mut send, url) = (raw.clone(), &url);
            async move { raw_get(&mut send, url).await }
        });
    });
    // The same raw client on h3fleet's BoringSSL crypto layer: separates the
    // cost of `Session` from that of the TLS stack's packet protection.
    let (raw_boring, _raw_boring_conn) = raw_client(quinn::ClientConfig::new(Arc::new(pki.boring_client())));
    group.bench_function("raw_h3_quinn_boringssl", |b| {
        b.to_async(&rt).iter(|| {
            let (mut send, url) = (raw_boring.clone(), &url);
            async move { raw_get(&mut send, url).await }
        });
    });
    group.finish();
}

fn first_request(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pki = TestPki::new();
    let origin =
        rt.block_on(async { H3Origin::bind("127.0.0.1:0".parse().unwrap(), pki.rustls_crypto()).unwrap() });
    let port = origin.local_addr().unwrap().port();
    let url = format!("https://localhost:{port}/first");
    let backend: Arc<dyn SessionCacheBackend> = Arc::new(MemoryBackend::new());
    let mut group = c.benchmark_group("first_request");
    // Each iteration also closes its session (untimed, up to ~50 ms).
    group
        .sample_size(10)
        .sampling_mode(criterion::SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(500));
    // How many resumed first requests actually left as early data: on a
    // loaded machine the server's handshake answer can come back before the
    // request is handed to QUIC, and the request then goes at 1-RTT on the
    // resumed connection (reported `NotAttempted`, never `Rejected`).
    let early_count = std::sync::atomic::AtomicU64::new(0);
    let resumed_count = std::sync::atomic::AtomicU64::new(0);
    let run = |backend: Option<Arc<dyn SessionCacheBackend>>, iters: u64| {
        let (pki, url) = (&pki, url.clone());
        let (early_count, resumed_count) = (&early_count, &resumed_count);
        async move {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let resuming = backend.is_some();
                let session = session_for(pki, port, backend.clone());
                let started = Instant::now();
                let response = session.get(&url).send().await.unwrap();
                let tls = response.tls().clone();
                response.bytes().await.unwrap();
                total += started.elapsed();
                if resuming {
                    assert!(tls.resumed, "{tls:?}");
                    assert_ne!(tls.early_data, EarlyData::Rejected, "{tls:?}");
                    resumed_count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if tls.early_data == EarlyData::Accepted {
                        early_count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                } else {
                    assert!(!tls.resumed, "{tls:?}");
                    assert_eq!(tls.early_data, EarlyData::NotAttempted, "{tls:?}");
                }
                // The next session needs this one's new ticket (rustls's are
                // single-use): close waits for it and for the backend write.
                assert!(session.close().await);
            }
            total
        }
    };
    group.bench_function("full_handshake", |b| {
        b.to_async(&rt).iter_custom(|iters| run(None, iters));
    });
    // Seeds the backend with a first ticket (this one is a full handshake).
    rt.block_on(async {
        let session = session_for(&pki, port, Some(Arc::clone(&backend)));
        session.get(&url).send().await.unwrap().bytes().await.unwrap();
        assert!(session.close().await);
    });
    group.bench_function("resumed_0rtt", |b| {
        b.to_async(&rt)
            .iter_custom(|iters| run(Some(Arc::clone(&backend)), iters));
    });
    group.finish();
    let (early, resumed) = (early_count.into_inner(), resumed_count.into_inner());
    eprintln!("first_request/resumed_0rtt: {early} of {resumed} resumed first requests left as early data");
}

criterion_group!(benches, warm, first_request);
criterion_main!(benches);
