//! QUIC peers for interop tests: a test PKI, and echo servers on quinn with
//! rustls (the independent TLS stack) or with h3fleet's BoringSSL layer.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use h3fleet::cache::CachedSession;
use h3fleet::quic::{QuicClientConfig, QuicServerConfig};
use h3fleet::tls::TicketSink;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// A CA and a leaf certificate for `localhost`, `127.0.0.1`,
/// `origin.fleet.test` (a name only the test DNS server knows) and
/// `public.fleet.test` (the ECH public name of the test origins).
pub struct TestPki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestPki {
    pub fn new() -> Self {
        Self::with_names(&["localhost", "127.0.0.1", "origin.fleet.test", "public.fleet.test"])
    }

    /// The same with a leaf certificate for `names` only.
    pub fn with_names(names: &[&str]) -> Self {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // Distinct names: a leaf whose issuer equals its subject looks self-signed.
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "h3fleet test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let mut leaf_params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
        Self {
            ca_pem: ca.pem(),
            cert_pem: leaf.pem(),
            key_pem: leaf_key.serialize_pem(),
        }
    }

    /// Our BoringSSL server configuration for this certificate.
    pub fn boring_server(&self) -> QuicServerConfig {
        QuicServerConfig::builder(self.cert_pem.as_bytes(), self.key_pem.as_bytes())
            .build()
            .unwrap()
    }

    /// quinn's standard rustls server configuration, with 0-RTT enabled
    /// (the library's, also used by `h3fleet serve`).
    pub fn rustls_server(&self) -> quinn::ServerConfig {
        quinn::ServerConfig::with_crypto(self.rustls_crypto())
    }

    /// The same, as the crypto layer an `H3Origin` takes.
    pub fn rustls_crypto(&self) -> Arc<dyn quinn::crypto::ServerConfig> {
        h3fleet::server::rustls_quic_config(self.cert_pem.as_bytes(), self.key_pem.as_bytes()).unwrap()
    }

    /// quinn's standard rustls client configuration trusting this CA.
    pub fn rustls_client(&self) -> quinn::ClientConfig {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::CertificateDer;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"h3".to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
        quinn::ClientConfig::new(Arc::new(crypto))
    }

    /// Our BoringSSL client configuration trusting only this CA.
    pub fn boring_client(&self) -> QuicClientConfig {
        QuicClientConfig::builder()
            .system_roots(false)
            .add_root_certificates_pem(self.ca_pem.as_bytes())
            .build()
            .unwrap()
    }
}

/// Collects every ticket a connection receives.
pub fn ticket_collector() -> (TicketSink, Arc<Mutex<Vec<CachedSession>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    (
        Arc::new(move |t: CachedSession, _| sink.lock().unwrap().push(t)),
        seen,
    )
}

/// A QUIC echo server: every bidirectional stream gets back what it sent.
/// Incoming connections are taken with `into_0rtt`, so 0-RTT streams are
/// served before the handshake completes.
pub struct EchoServer {
    endpoint: quinn::Endpoint,
    task: tokio::task::JoinHandle<()>,
}

impl EchoServer {
    pub fn start(config: quinn::ServerConfig) -> Self {
        let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
        let accepting = endpoint.clone();
        let task = tokio::spawn(async move {
            while let Some(incoming) = accepting.accept().await {
                tokio::spawn(async move {
                    let Ok(connecting) = incoming.accept() else { return };
                    let conn = match connecting.into_0rtt() {
                        Ok((conn, _)) => conn,
                        Err(connecting) => match connecting.await {
                            Ok(conn) => conn,
                            Err(_) => return,
                        },
                    };
                    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                        tokio::spawn(async move {
                            if let Ok(data) = recv.read_to_end(1 << 20).await {
                                let _ = send.write_all(&data).await;
                                let _ = send.finish();
                                let _ = send.stopped().await;
                            }
                        });
                    }
                });
            }
        });
        Self { endpoint, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.endpoint.local_addr().unwrap()
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.endpoint.close(0u32.into(), b"test over");
        self.task.abort();
    }
}

/// A client endpoint on a free loopback port.
pub fn client_endpoint() -> quinn::Endpoint {
    quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap()
}

/// Sends `data` on a new bidirectional stream and returns the echo.
pub async fn echo(conn: &quinn::Connection, data: &[u8]) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(data).await?;
    send.finish()?;
    Ok(recv.read_to_end(1 << 20).await?)
}
