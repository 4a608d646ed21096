//! HTTP/2 and HTTP/1.1 origins on an independent TLS stack: hyper with
//! tokio-rustls (stateful session tickets, so clients can resume).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

use super::quic::TestPki;

/// Which TLS versions and ALPN protocols the origin accepts.
#[derive(Clone, Copy, Debug)]
pub enum Flavor {
    /// TLS 1.3, ALPN `h2` and `http/1.1`.
    Modern,
    /// TLS 1.2 only, ALPN `h2` and `http/1.1`.
    Tls12Only,
}

/// Answers every request with `tcp origin: {version} {method} {path}`
/// (and, when it asks for client certificates, ` client-cert: yes|no`).
pub struct TcpOrigin {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpOrigin {
    pub async fn start(pki: &TestPki, flavor: Flavor) -> Self {
        Self::start_asking(pki, flavor, None).await
    }

    /// The same, asking every client for a certificate issued by
    /// `client_ca` (PEM), and accepting those that send none.
    pub async fn start_asking(pki: &TestPki, flavor: Flavor, client_ca: Option<&str>) -> Self {
        let chain = vec![CertificateDer::from_pem_slice(pki.cert_pem.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(pki.key_pem.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = match flavor {
            Flavor::Modern => &[&rustls::version::TLS13],
            Flavor::Tls12Only => &[&rustls::version::TLS12],
        };
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(versions)
            .unwrap();
        let asks = client_ca.is_some();
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots
                    .add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
                    .unwrap();
                let verifier =
                    rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                        .allow_unauthenticated()
                        .build()
                        .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut tls = builder.with_single_cert(chain, key).unwrap();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&connections);
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                    // After a resumption rustls restores the certificate the
                    // session was won with.
                    let client = match (asks, tls.get_ref().1.peer_certificates()) {
                        (false, _) => "",
                        (true, Some(_)) => " client-cert: yes",
                        (true, None) => " client-cert: no",
                    };
                    let service =
                        service_fn(move |request: hyper::Request<hyper::body::Incoming>| async move {
                            let text = format!(
                                "tcp origin: {:?} {} {}{client}\n",
                                request.version(),
                                request.method(),
                                request.uri().path()
                            );
                            Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::from(text))))
                        });
                    let io = TokioIo::new(tls);
                    let _ = if h2 {
                        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(io, service)
                            .await
                    } else {
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, service)
                            .await
                    };
                });
            }
        });
        Self {
            addr,
            connections,
            task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for TcpOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}
