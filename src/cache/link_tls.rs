//! TLS for links to a store that speaks it without a client library of its
//! own (memcached's `-Z`): BoringSSL, the client's TLS engine, verifying the
//! server's certificate and name against the system roots or given PEM
//! roots. (Redis links use redis-rs's own TLS support.)

use std::fmt;
use std::sync::Arc;

use boring::ssl::{SslConnector, SslMethod, SslVersion};
use boring::x509::X509;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A byte stream to a store: plain TCP or TLS over it.
pub(crate) trait Link: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Link for T {}

/// How to secure a link: the TLS client settings, built once.
#[derive(Clone)]
pub(crate) struct LinkTls {
    connector: Arc<SslConnector>,
}

impl fmt::Debug for LinkTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkTls")
    }
}

impl LinkTls {
    /// TLS 1.2 or newer, verifying against `ca_pem` (one or more PEM
    /// certificates) or, without it, the system roots.
    pub(crate) fn new(ca_pem: Option<&[u8]>) -> Result<Self, String> {
        let mut builder = SslConnector::builder(SslMethod::tls()).map_err(|e| e.to_string())?;
        builder
            .set_min_proto_version(Some(SslVersion::TLS1_2))
            .map_err(|e| e.to_string())?;
        match ca_pem {
            Some(pem) => {
                let certs = X509::stack_from_pem(pem).map_err(|e| format!("the CA file: {e}"))?;
                if certs.is_empty() {
                    return Err("the CA file holds no certificate".into());
                }
                for cert in certs {
                    builder
                        .cert_store_mut()
                        .add_cert(cert)
                        .map_err(|e| e.to_string())?;
                }
            }
            None => builder.set_default_verify_paths().map_err(|e| e.to_string())?,
        }
        Ok(Self {
            connector: Arc::new(builder.build()),
        })
    }

    /// The TLS handshake over `tcp` with the server named `host`.
    pub(crate) async fn connect(&self, host: &str, tcp: TcpStream) -> Result<Box<dyn Link>, String> {
        let config = self.connector.configure().map_err(|e| e.to_string())?;
        let stream = tokio_boring::connect(config, host, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {host}: {e}"))?;
        Ok(Box::new(stream))
    }
}
