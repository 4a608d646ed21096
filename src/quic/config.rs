//! The QUIC client's TLS: quinn's `crypto::ClientConfig` on BoringSSL.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use boring::ssl::{Ssl, SslContext, SslContextBuilder, SslMethod, SslVersion};
use quinn_proto::crypto;
use quinn_proto::transport_parameters::TransportParameters;
use quinn_proto::{ConnectError, Side};

use crate::cache::{CachedSession, Protocol};
use crate::quic::keys::QUIC_V1;
use crate::quic::params;
use crate::quic::session::TlsSession;
use crate::tls::{ffi, tickets, ClientSettings, EchRejection, TicketSink, TlsError};

/// A QUIC client's TLS configuration on BoringSSL.
///
/// Build one per profile with [`QuicClientConfig::builder`], then derive a
/// cheap per-connection copy that carries the session to resume
/// ([`with_session`](Self::with_session)) and where to send new tickets
/// ([`on_ticket`](Self::on_ticket)). Wrap it for quinn with
/// `quinn::ClientConfig::new(Arc::new(config))`.
///
/// ## Behavior
///
/// - The server's certificate is verified against the trusted roots, and its
///   name against the server name quinn is given (host name or IP literal).
/// - ALPN is mandatory in QUIC; the client offers the configured protocols.
/// - A session to resume is imported before the ClientHello. If it allows
///   early data and carries the server's transport parameters, the
///   connection offers 0-RTT; quinn's `Connecting::into_0rtt()` then
///   succeeds. A session that cannot be imported is logged and ignored: the
///   handshake is full.
/// - Each ticket the server sends is exported (session bytes, the server's
///   transport parameters, lifetime, ALPN, early-data permission) and handed
///   to the ticket sink.
#[derive(Clone)]
pub struct QuicClientConfig {
    ctx: SslContext,
    resume: Option<CachedSession>,
    on_ticket: Option<TicketSink>,
    ech_config_list: Option<Vec<u8>>,
    ech_grease: bool,
    ech_rejection: Option<Arc<EchRejection>>,
}

impl fmt::Debug for QuicClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuicClientConfig")
            .field("resume", &self.resume.is_some())
            .field("on_ticket", &self.on_ticket.is_some())
            .field("ech", &self.ech_config_list.is_some())
            .finish()
    }
}

/// Builds a [`QuicClientConfig`].
#[derive(Debug, Clone)]
#[must_use]
pub struct QuicClientConfigBuilder {
    settings: ClientSettings,
}

impl QuicClientConfig {
    /// A builder offering ALPN `h3` and trusting the system's roots.
    pub fn builder() -> QuicClientConfigBuilder {
        QuicClientConfigBuilder {
            settings: ClientSettings::new(&[b"h3"]),
        }
    }

    /// A copy that resumes `session` (if it is a TLS 1.3 h3 session).
    ///
    /// A resumed connection checks no certificate, so offer only sessions
    /// you trust: `Session` offers one only after the chain it carries
    /// verifies for the host under its roots, and, with cache keys, only one
    /// that opened under them.
    #[must_use]
    pub fn with_session(&self, session: Option<CachedSession>) -> Self {
        Self {
            resume: session.filter(|s| s.envelope.protocol == Protocol::H3),
            ..self.clone()
        }
    }

    /// A copy that hands every new ticket to `sink`.
    #[must_use]
    pub fn on_ticket(&self, sink: TicketSink) -> Self {
        Self {
            on_ticket: Some(sink),
            ..self.clone()
        }
    }

    /// A copy that offers Encrypted Client Hello with `config_list` (an
    /// ECHConfigList, as in a DNS HTTPS record's `ech` parameter).
    #[must_use]
    pub fn with_ech_config_list(&self, config_list: Option<Vec<u8>>) -> Self {
        Self {
            ech_config_list: config_list,
            ..self.clone()
        }
    }

    /// A copy whose connections report to `slot` if the server rejects
    /// their ECH (with its retry configs).
    #[must_use]
    pub(crate) fn with_ech_rejection(&self, slot: Arc<EchRejection>) -> Self {
        Self {
            ech_rejection: Some(slot),
            ..self.clone()
        }
    }

    /// A copy that sends a GREASE ECH extension when it has no ECH config
    /// (so connections with and without ECH look alike).
    #[must_use]
    pub fn with_ech_grease(&self, enabled: bool) -> Self {
        Self {
            ech_grease: enabled,
            ..self.clone()
        }
    }

    fn new_ssl(&self, server_name: &str) -> Result<Ssl, TlsError> {
        let mut ssl = Ssl::new(&self.ctx).map_err(|e| TlsError::boring("cannot create a connection", e))?;
        ffi::set_side(&mut ssl, true);
        match server_name.parse::<IpAddr>() {
            // RFC 6066 §3: no SNI for IP literals; verify the address instead.
            Ok(ip) => ssl.param_mut().set_ip(ip),
            Err(_) => ssl
                .set_hostname(server_name)
                .and_then(|()| ssl.param_mut().set_host(server_name)),
        }
        .map_err(|e| TlsError::boring(format!("cannot set server name {server_name:?}"), e))?;
        tickets::attach_sink(&mut ssl, self.on_ticket.clone());
        if let Some(list) = &self.ech_config_list {
            ssl.set_ech_config_list(list)
                .map_err(|e| TlsError::boring("cannot use the ECH config", e))?;
        } else if self.ech_grease {
            ssl.set_enable_ech_grease(true);
        }
        Ok(ssl)
    }

    /// True if `cached` may be offered to `server_name`: TLS 1.3, with a
    /// peer chain that verifies for it under this configuration's roots.
    pub(crate) fn trusts_session(&self, cached: &CachedSession, server_name: &str) -> bool {
        crate::tls::resume::trusted(self.ctx.cert_store(), cached, server_name, SslVersion::TLS1_3)
    }

    /// Offers the session to resume, if it can be imported.
    fn resume(&self, session: &mut TlsSession) {
        let Some(cached) = &self.resume else { return };
        let imported = crate::tls::resume::offer(session.ssl_mut(), cached, SslVersion::TLS1_3);
        if let Err(e) = imported {
            tracing::warn!(error = %e, "stored session not usable; doing a full handshake");
            return;
        }
        if !cached.envelope.early_data {
            return;
        }
        match TransportParameters::read(Side::Client, &mut cached.envelope.transport_params.as_slice()) {
            Ok(params) => session.offer_early_data(params),
            Err(e) => tracing::warn!(error = %e, "stored transport parameters invalid; no 0-RTT"),
        }
    }
}

impl QuicClientConfigBuilder {
    /// The ALPN protocols to offer, most preferred first. Default `["h3"]`.
    pub fn alpn_protocols<I, P>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: AsRef<[u8]>,
    {
        self.settings.set_alpn(protocols);
        self
    }

    /// Also trust the roots in `pem` (one or more PEM certificates).
    pub fn add_root_certificates_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.settings.add_roots_pem(pem.into());
        self
    }

    /// Whether to trust the system's CA bundle. Default true.
    pub fn system_roots(mut self, enabled: bool) -> Self {
        self.settings.set_system_roots(enabled);
        self
    }

    /// Accepts any certificate, unverified: anyone on the path can then
    /// read and change the traffic. Default false. For tests against
    /// servers with certificates nobody trusts.
    pub fn danger_accept_invalid_certs(mut self, accept: bool) -> Self {
        self.settings.set_verify_peer(!accept);
        self
    }

    /// Offers this client certificate to servers that ask for one.
    pub fn identity(mut self, identity: Option<crate::tls::Identity>) -> Self {
        self.settings.set_identity(identity);
        self
    }

    /// Writes the connections' secrets to `keylog` (`SSLKEYLOGFILE`).
    pub(crate) fn keylog(mut self, keylog: Option<crate::tls::KeyLog>) -> Self {
        self.settings.set_keylog(keylog);
        self
    }

    /// Builds the configuration.
    ///
    /// # Errors
    ///
    /// A root certificate cannot be parsed, no ALPN protocol is given, or
    /// BoringSSL refuses a setting.
    pub fn build(self) -> Result<QuicClientConfig, TlsError> {
        // QUIC requires ALPN; `apply` refuses an empty list.
        let mut ctx = tls13_context()?;
        self.settings.apply(&mut ctx)?;
        Ok(QuicClientConfig {
            ctx: ctx.build(),
            resume: None,
            on_ticket: None,
            ech_config_list: None,
            ech_grease: false,
            ech_rejection: None,
        })
    }
}

pub(super) fn tls13_context() -> Result<SslContextBuilder, TlsError> {
    let mut ctx = SslContextBuilder::new(SslMethod::tls())
        .map_err(|e| TlsError::boring("cannot create a TLS context", e))?;
    ctx.set_min_proto_version(Some(SslVersion::TLS1_3))
        .and_then(|()| ctx.set_max_proto_version(Some(SslVersion::TLS1_3)))
        .map_err(|e| TlsError::boring("cannot restrict to TLS 1.3", e))?;
    Ok(ctx)
}

impl crypto::ClientConfig for QuicClientConfig {
    fn start_session(
        self: Arc<Self>,
        version: u32,
        server_name: &str,
        params: &TransportParameters,
    ) -> Result<Box<dyn crypto::Session>, ConnectError> {
        if version != QUIC_V1 {
            return Err(ConnectError::UnsupportedVersion);
        }
        // quinn has no error for a TLS set-up failure; the nearest is an
        // invalid server name, which is also what most such failures are.
        let fail = |e: TlsError| ConnectError::InvalidServerName(format!("{server_name} ({e})"));
        let mut ssl = self.new_ssl(server_name).map_err(fail)?;
        ffi::enable_quic(&mut ssl, &params::encode(params))
            .map_err(|e| fail(TlsError::boring("cannot enable QUIC", e)))?;
        let mut session = TlsSession::new(ssl, Side::Client);
        if let Some(slot) = &self.ech_rejection {
            session.report_ech_rejection(Arc::clone(slot));
        }
        self.resume(&mut session);
        // Produce the ClientHello (and the 0-RTT secret) now: quinn asks for
        // both right after this returns.
        session
            .drive()
            .map_err(|e| ConnectError::InvalidServerName(format!("{server_name} ({})", e.reason)))?;
        Ok(Box::new(session))
    }
}
