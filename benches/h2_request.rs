//! HTTP/2 on one warm connection, against a hyper + tokio-rustls origin on
//! loopback: `Session` (BoringSSL, hyper) against a plain hyper +
//! tokio-rustls client. Each iteration is one GET, or a batch of 16
//! concurrent GETs (requests per second = 16 / time). The target is
//! `Session` within 1.05× of plain hyper on tokio-boring (the same TLS
//! library); read it in the `warm_h2_current_thread` group.
//!
//! `cargo bench --bench h2_request`
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use support::quic::TestPki;
use support::tcp::{Flavor, TcpOrigin};

type PlainSender = http2::SendRequest<Empty<Bytes>>;

async fn plain_client(pki: &TestPki, origin: &TcpOrigin) -> PlainSender {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(origin.addr()).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// The same plain hyper client on tokio-boring (BoringSSL) instead of
/// tokio-rustls: separates the TLS stack's cost from `Session`'s.
async fn boring_client(pki: &TestPki, origin: &TcpOrigin) -> PlainSender {
    use boring::ssl::{SslConnector, SslMethod};
    use boring::x509::X509;
    let mut builder = SslConnector::builder(SslMethod::tls()).unwrap();
    builder
        .cert_store_mut()
        .add_cert(X509::from_pem(pki.ca_pem.as_bytes()).unwrap())
        .unwrap();
    builder.set_alpn_protos(b"\x02h2").unwrap();
    let config = builder.build().configure().unwrap();
    let tcp = tokio::net::TcpStream::connect(origin.addr()).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let stream = tokio_boring::connect(config, "localhost", tcp).await.unwrap();
    let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

async fn plain_get(mut sender: PlainSender, url: String) -> usize {
    sender.ready().await.unwrap();
    // The same request on the wire as `Session` sends (its one header).
    let request = http::Request::get(url)
        .header("user-agent", concat!("h3fleet/", env!("CARGO_PKG_VERSION")))
        .body(Empty::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    response.into_body().collect().await.unwrap().to_bytes().len()
}

/// The multi-thread runtime is what services use; on a small virtual
/// machine its cross-thread wake-ups dominate and vary from run to run by
/// more than the clients differ. The current-thread runtime puts client
/// and origin on one thread, so what remains is each client's own cost.
fn warm_h2(c: &mut Criterion) {
    warm_h2_on(c, "warm_h2", tokio::runtime::Runtime::new().unwrap());
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    warm_h2_on(c, "warm_h2_current_thread", current);
}

fn warm_h2_on(c: &mut Criterion, name: &str, rt: tokio::runtime::Runtime) {
    let pki = TestPki::new();
    let origin = rt.block_on(TcpOrigin::start(&pki, Flavor::Modern));
    let port = origin.addr().port();
    let url = format!("https://localhost:{port}/warm");
    let session = h3fleet::Session::builder()
        .system_roots(false)
        .add_root_certificate_pem(pki.ca_pem.as_bytes())
        .resolve("localhost", port, &["127.0.0.1".parse().unwrap()])
        .http2_only()
        // The plain clients send no Accept-Encoding: the same bytes on the wire.
        .gzip(false)
        .brotli(false)
        .zstd(false)
        .deflate(false)
        .build()
        .unwrap();
    rt.block_on(async { session.get(&url).send().await.unwrap().bytes().await.unwrap() });
    let plain = rt.block_on(plain_client(&pki, &origin));
    let plain_boring = rt.block_on(boring_client(&pki, &origin));

    let mut group = c.benchmark_group(name);
    group.bench_function("h3fleet_session", |b| {
        b.to_async(&rt).iter(|| async {
            let response = session.get(&url).send().await.unwrap();
            assert!(response.tls().connection_reused);
            response.bytes().await.unwrap().len()
        });
    });
    group.bench_function("plain_hyper_rustls", |b| {
        b.to_async(&rt).iter(|| plain_get(plain.clone(), url.clone()));
    });
    group.bench_function("plain_hyper_boringssl", |b| {
        b.to_async(&rt)
            .iter(|| plain_get(plain_boring.clone(), url.clone()));
    });
    group.bench_function("h3fleet_session_x16", |b| {
        b.to_async(&rt).iter(|| async {
            let batch: Vec<_> = (0..16)
                .map(|_| {
                    let (session, url) = (session.clone(), url.clone());
                    tokio::spawn(
                        async move { session.get(&url).send().await.unwrap().bytes().await.unwrap() },
                    )
                })
                .collect();
            for request in batch {
                request.await.unwrap();
            }
        });
    });
    group.bench_function("plain_hyper_rustls_x16", |b| {
        b.to_async(&rt).iter(|| async {
            let batch: Vec<_> = (0..16)
                .map(|_| tokio::spawn(plain_get(plain.clone(), url.clone())))
                .collect();
            for request in batch {
                request.await.unwrap();
            }
        });
    });
    group.finish();
}

criterion_group!(benches, warm_h2);
criterion_main!(benches);
