//! TLS over TCP on BoringSSL for servers (h3fleet's own origin): tickets,
//! early data, ALPN `h2` and `http/1.1`, and a stream that tells the HTTP
//! server which bytes arrived as early data.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use boring::ssl::{NameType, SslAcceptor, SslMethod, SslVersion};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_boring::SslStream;

use super::{alpn_list, ffi, server, EchKeys, TlsError};

/// A TCP TLS server configuration on BoringSSL.
///
/// ## Behavior
///
/// - TLS 1.2 and 1.3; session tickets on (BoringSSL rotates its ticket keys;
///   a restarted server has new ones and refuses old tickets).
/// - ALPN: the first of the configured protocols the client offers (default
///   `h2`, then `http/1.1`); a client offering none of them is served
///   without ALPN.
/// - Early data accepted by default (up to BoringSSL's 14,336 bytes).
#[derive(Clone)]
pub struct TcpServerConfig {
    acceptor: Arc<SslAcceptor>,
}

impl fmt::Debug for TcpServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpServerConfig").finish_non_exhaustive()
    }
}

/// Builds a [`TcpServerConfig`].
#[must_use]
pub struct TcpServerConfigBuilder {
    cert_chain_pem: Vec<u8>,
    key_pem: Vec<u8>,
    alpn: Vec<Vec<u8>>,
    early_data: bool,
    ech: Option<Arc<EchKeys>>,
}

impl fmt::Debug for TcpServerConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpServerConfigBuilder")
            .field("early_data", &self.early_data)
            .field("ech", &self.ech.is_some())
            .finish_non_exhaustive()
    }
}

impl TcpServerConfig {
    /// A builder for the chain `cert_chain_pem` (leaf first) and `key_pem`.
    pub fn builder(
        cert_chain_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> TcpServerConfigBuilder {
        TcpServerConfigBuilder {
            cert_chain_pem: cert_chain_pem.into(),
            key_pem: key_pem.into(),
            alpn: alpn_list([b"h2".as_slice(), b"http/1.1"]),
            early_data: true,
            ech: None,
        }
    }

    /// Runs the server side of the handshake on `stream`. With early data
    /// accepted this returns before the client's Finished, and the first
    /// reads return the early data.
    ///
    /// # Errors
    ///
    /// The handshake failed.
    pub async fn accept<S>(&self, stream: S) -> Result<ServerTlsStream<S>, TlsError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let tls = tokio_boring::accept(&self.acceptor, stream)
            .await
            .map_err(|e| TlsError::new(format!("TLS handshake failed: {e}")))?;
        let facts = Arc::new(ServerTls {
            resumed: tls.ssl().session_reused(),
            alpn: tls.ssl().selected_alpn_protocol().map(<[u8]>::to_vec),
            ech_accepted: tls.ssl().ech_accepted(),
            server_name: tls.ssl().servername(NameType::HOST_NAME).map(str::to_owned),
            in_early_data: AtomicBool::new(ffi::in_early_data(tls.ssl())),
            early_bytes: AtomicU64::new(0),
        });
        Ok(ServerTlsStream { inner: tls, facts })
    }
}

impl TcpServerConfig {
    /// Replaces the ECH keys of this configuration and of every connection
    /// accepted from now on (key rotation): clients with an old config are
    /// rejected and sent the new one as retry configs.
    ///
    /// # Errors
    ///
    /// BoringSSL refused the keys.
    pub fn set_ech_keys(&self, keys: &EchKeys) -> Result<(), TlsError> {
        self.acceptor
            .context()
            .set_ech_keys(&keys.keys)
            .map_err(|e| TlsError::boring("cannot use the ECH keys", e))
    }
}

impl TcpServerConfigBuilder {
    /// The ALPN protocols to accept, most preferred first.
    pub fn alpn_protocols<I, P>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: AsRef<[u8]>,
    {
        self.alpn = alpn_list(protocols);
        self
    }

    /// Whether to accept early data. Default true.
    pub fn early_data(mut self, enabled: bool) -> Self {
        self.early_data = enabled;
        self
    }

    /// Accept Encrypted Client Hello with these keys. Default: no ECH.
    pub fn ech_keys(mut self, keys: Arc<EchKeys>) -> Self {
        self.ech = Some(keys);
        self
    }

    /// Builds the configuration.
    ///
    /// # Errors
    ///
    /// The certificate or key cannot be parsed or do not match.
    pub fn build(self) -> Result<TcpServerConfig, TlsError> {
        let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls())
            .map_err(|e| TlsError::boring("cannot create a TLS context", e))?;
        builder
            .set_min_proto_version(Some(SslVersion::TLS1_2))
            .map_err(|e| TlsError::boring("cannot set the lowest TLS version", e))?;
        server::set_identity(&mut builder, &self.cert_chain_pem, &self.key_pem)?;
        server::select_alpn_by_preference(&mut builder, self.alpn, false);
        ffi::ctx_set_early_data_enabled(&mut builder, self.early_data);
        if let Some(ech) = &self.ech {
            builder
                .set_ech_keys(&ech.keys)
                .map_err(|e| TlsError::boring("cannot use the ECH keys", e))?;
        }
        Ok(TcpServerConfig {
            acceptor: Arc::new(builder.build()),
        })
    }
}

/// What the server knows about one TLS connection, shared with the HTTP
/// layer above it.
#[derive(Debug)]
pub struct ServerTls {
    resumed: bool,
    alpn: Option<Vec<u8>>,
    ech_accepted: bool,
    server_name: Option<String>,
    in_early_data: AtomicBool,
    early_bytes: AtomicU64,
}

impl ServerTls {
    /// The client resumed a session.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// The client's Encrypted Client Hello was accepted.
    pub fn ech_accepted(&self) -> bool {
        self.ech_accepted
    }

    /// The server name the client asked for (with ECH accepted, the inner
    /// name).
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// The protocol ALPN chose, if any.
    pub fn alpn(&self) -> Option<&[u8]> {
        self.alpn.as_deref()
    }

    /// True until the client's Finished has been read after accepted early
    /// data: everything read so far came as early data.
    pub fn in_early_data(&self) -> bool {
        self.in_early_data.load(Ordering::SeqCst)
    }

    /// Application bytes read as early data.
    pub fn early_bytes(&self) -> u64 {
        self.early_bytes.load(Ordering::SeqCst)
    }
}

/// A server TLS stream that records which bytes were early data.
pub struct ServerTlsStream<S> {
    inner: SslStream<S>,
    facts: Arc<ServerTls>,
}

impl<S> fmt::Debug for ServerTlsStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTlsStream")
            .field("tls", &self.facts)
            .finish()
    }
}

impl<S> ServerTlsStream<S> {
    /// What is known about the connection, to hand to the HTTP layer.
    pub fn tls(&self) -> Arc<ServerTls> {
        Arc::clone(&self.facts)
    }
}

impl<S> AsyncRead for ServerTlsStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        // BoringSSL leaves early data only when it reads EndOfEarlyData, so
        // bytes returned while still in early data were sent as early data.
        let early = ffi::in_early_data(this.inner.ssl());
        if early {
            let read = buf.filled().len().saturating_sub(before);
            this.facts.early_bytes.fetch_add(read as u64, Ordering::SeqCst);
        }
        this.facts.in_early_data.store(early, Ordering::SeqCst);
        result
    }
}

impl<S> AsyncWrite for ServerTlsStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
