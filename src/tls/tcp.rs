//! TLS over TCP on BoringSSL (tokio-boring), for HTTP/2 and HTTP/1.1: the
//! same verification and session export as the QUIC side.

use std::fmt;
use std::sync::Arc;

use boring::ssl::{SslConnector, SslMethod, SslVersion};
use tokio::io::{AsyncRead, AsyncWrite};

use super::early_data::{EarlyDataReport, EarlyDataStream};
use super::{ffi, tickets, ClientSettings, EchRejection, TicketSink, TlsError};
use crate::cache::{CachedSession, Protocol};

/// What a connection offers of Encrypted Client Hello.
#[derive(Debug, Clone, Copy)]
pub(crate) enum EchOffer<'a> {
    /// ECH with this ECHConfigList.
    Config(&'a [u8]),
    /// A GREASE ECH extension.
    Grease,
    None,
}

/// A TCP TLS client configuration on BoringSSL.
///
/// ## Behavior
///
/// - TLS 1.2 and 1.3; the server's certificate is verified against the
///   trusted roots and its name (or IP address) against the one connected to.
/// - ALPN offers the configured protocols (default `h2`, `http/1.1`).
/// - A session to resume (an `h2` or `h1` session) is imported before the
///   ClientHello; one that cannot be imported is ignored (full handshake).
/// - Each ticket the server sends is exported, tagged with the protocol ALPN
///   chose, and handed to the connection's ticket sink. With hyper, tickets
///   arrive while the connection is read, on the connection's task.
#[derive(Clone)]
pub(crate) struct TcpClientConfig {
    connector: SslConnector,
}

impl fmt::Debug for TcpClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpClientConfig").finish_non_exhaustive()
    }
}

/// Builds a [`TcpClientConfig`].
#[derive(Debug, Clone)]
#[must_use]
pub(crate) struct TcpClientConfigBuilder {
    settings: ClientSettings,
}

impl TcpClientConfig {
    /// A builder offering ALPN `h2` and `http/1.1` and trusting the system's
    /// roots.
    pub(crate) fn builder() -> TcpClientConfigBuilder {
        TcpClientConfigBuilder {
            settings: ClientSettings::new(&[b"h2", b"http/1.1"]),
        }
    }

    /// Runs the TLS handshake on `stream` for `server_name` (a host name or
    /// an IP literal) with what `options` offers.
    ///
    /// With early data and a session that allows it, this returns right
    /// after the ClientHello, and what is written first goes as early data
    /// (see [`EarlyDataStream`]); `options.report` hears how the handshake
    /// ended.
    ///
    /// # Errors
    ///
    /// The handshake failed (certificate not trusted, wrong name, ECH
    /// rejected, protocol error) or the connection could not be set up.
    /// True if `cached` may be offered to `server_name`: TLS 1.3 (or 1.2,
    /// from memory), with a peer chain that verifies for it under this
    /// configuration's roots.
    pub(crate) fn trusts_session(&self, cached: &crate::cache::CachedSession, server_name: &str) -> bool {
        let store = self.connector.context().cert_store();
        super::resume::trusted(store, cached, server_name, SslVersion::TLS1_2)
    }

    pub(crate) async fn connect<S>(
        &self,
        server_name: &str,
        stream: S,
        options: ConnectOptions<'_>,
    ) -> Result<EarlyDataStream<S>, TlsError>
    where
        S: AsyncRead + AsyncWrite + Unpin + fmt::Debug,
    {
        let mut config = self
            .connector
            .configure()
            .map_err(|e| TlsError::boring("cannot create a connection", e))?;
        tickets::attach_sink(&mut config, options.sink);
        if !options.alpn.is_empty() {
            let wire = super::alpn_wire(&super::alpn_list(options.alpn))?;
            config
                .set_alpn_protos(&wire)
                .map_err(|e| TlsError::boring("cannot set ALPN", e))?;
        }
        let resume = options.resume;
        if let Some(cached) = resume.filter(|c| c.envelope.protocol != Protocol::H3) {
            // TLS 1.2 sessions never leave the process, but one from memory
            // may be offered.
            if let Err(e) = super::resume::offer(&mut config, cached, SslVersion::TLS1_2) {
                tracing::warn!(error = %e, "stored session not usable; doing a full handshake");
            }
        }
        match options.ech {
            EchOffer::Config(list) => config
                .set_ech_config_list(list)
                .map_err(|e| TlsError::boring("cannot use the ECH config", e))?,
            EchOffer::Grease => config.set_enable_ech_grease(true),
            EchOffer::None => {}
        }
        let offer_early = options.early_data.is_some() && resume.is_some_and(|c| c.envelope.early_data);
        ffi::set_early_data_enabled(&mut config, offer_early);
        let rejection = Arc::clone(&options.ech_rejection);
        let stream = tokio_boring::connect(config, server_name, stream)
            .await
            .map_err(|e| {
                let stack = ssl_error_stack(std::error::Error::source(&e));
                if let (Some(ssl), Some(stack)) = (e.ssl(), stack) {
                    rejection.record(ssl, stack);
                }
                TlsError::new(format!("TLS handshake with {server_name} failed: {e}"))
            })?;
        Ok(EarlyDataStream::new(
            stream,
            options.report,
            options.ech_rejection,
        ))
    }
}

/// What a TCP connection offers and where it reports.
pub(crate) struct ConnectOptions<'a> {
    /// A session to resume.
    pub(crate) resume: Option<&'a CachedSession>,
    /// Receives the tickets the server sends.
    pub(crate) sink: Option<TicketSink>,
    /// Send what is written first as early data, if the session allows it;
    /// only a request proven replay-safe may.
    pub(crate) early_data: Option<crate::replay::ReplaySafe>,
    /// Hears how the handshake ended.
    pub(crate) report: Arc<EarlyDataReport>,
    pub(crate) ech: EchOffer<'a>,
    /// Hears if the server rejects ECH, with its retry configs.
    pub(crate) ech_rejection: Arc<EchRejection>,
    /// The ALPN protocols to offer instead of the configuration's (empty:
    /// the configuration's).
    pub(crate) alpn: &'a [&'static [u8]],
}

/// BoringSSL's error stack somewhere in the chain starting at `first`.
fn ssl_error_stack<'e>(
    first: Option<&'e (dyn std::error::Error + 'static)>,
) -> Option<&'e boring::error::ErrorStack> {
    let mut next = first;
    while let Some(error) = next {
        if let Some(stack) = error
            .downcast_ref::<boring::ssl::Error>()
            .and_then(boring::ssl::Error::ssl_error)
        {
            return Some(stack);
        }
        next = error.source();
    }
    None
}

impl TcpClientConfigBuilder {
    /// The ALPN protocols to offer, most preferred first.
    pub(crate) fn alpn_protocols<I, P>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: AsRef<[u8]>,
    {
        self.settings.set_alpn(protocols);
        self
    }

    /// Also trust the roots in `pem` (one or more PEM certificates).
    pub(crate) fn add_root_certificates_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.settings.add_roots_pem(pem.into());
        self
    }

    /// Whether to trust the system's CA bundle. Default true.
    pub(crate) fn system_roots(mut self, enabled: bool) -> Self {
        self.settings.set_system_roots(enabled);
        self
    }

    /// Accepts any certificate (see `SessionBuilder::danger_accept_invalid_certs`).
    pub(crate) fn danger_accept_invalid_certs(mut self, accept: bool) -> Self {
        self.settings.set_verify_peer(!accept);
        self
    }

    /// Offers this client certificate to servers that ask for one.
    pub(crate) fn identity(mut self, identity: Option<super::Identity>) -> Self {
        self.settings.set_identity(identity);
        self
    }

    /// Writes the connections' secrets to `keylog` (`SSLKEYLOGFILE`).
    pub(crate) fn keylog(mut self, keylog: Option<super::KeyLog>) -> Self {
        self.settings.set_keylog(keylog);
        self
    }

    /// Builds the configuration.
    ///
    /// # Errors
    ///
    /// A root certificate cannot be parsed, no ALPN protocol is given, or
    /// BoringSSL refuses a setting.
    pub(crate) fn build(self) -> Result<TcpClientConfig, TlsError> {
        let mut builder = SslConnector::builder(SslMethod::tls())
            .map_err(|e| TlsError::boring("cannot create a TLS context", e))?;
        builder
            .set_min_proto_version(Some(SslVersion::TLS1_2))
            .map_err(|e| TlsError::boring("cannot set the lowest TLS version", e))?;
        self.settings.apply(&mut builder)?;
        Ok(TcpClientConfig {
            connector: builder.build(),
        })
    }
}
