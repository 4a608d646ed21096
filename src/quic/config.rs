//! Client and server configurations: quinn's `crypto::ClientConfig` and
//! `crypto::ServerConfig` on BoringSSL.

use std::fmt;
use std::net::IpAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use boring::ssl::{Ssl, SslContext, SslContextBuilder, SslMethod, SslVersion};
use quinn_proto::crypto::{self, Keys, UnsupportedVersion};
use quinn_proto::transport_parameters::TransportParameters;
use quinn_proto::{ConnectError, ConnectionId, Side};

use crate::cache::{CachedSession, Protocol};
use crate::quic::keys::{self, QUIC_V1};
use crate::quic::params;
use crate::quic::session::{client_app_secret_index, ClientAppSecret, TlsSession};
use crate::tls::{
    alpn_list, ffi, server, tickets, ClientSettings, EchKeys, EchRejection, TicketSink, TlsError,
};

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

fn tls13_context() -> Result<SslContextBuilder, TlsError> {
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

/// A QUIC server's TLS configuration on BoringSSL: for h3fleet's own origin
/// (tests, benchmarks, `h3fleet serve`), which rustls cannot replace where
/// ECH must be served.
///
/// ## Behavior
///
/// - TLS 1.3 only; ALPN is mandatory (a client offering none of the
///   configured protocols is refused).
/// - Session tickets are issued after every handshake (BoringSSL's ticket
///   keys, per configuration, rotated in memory).
/// - With early data on (the default), 0-RTT from a ticket is accepted when
///   the ticket was issued under the same *early-data context*: the
///   configuration's context bytes plus the transport parameters that bind
///   0-RTT (RFC 9000 §7.4.1). Changing either makes later 0-RTT attempts be
///   rejected (the connection still completes at 1-RTT).
/// - **0.5-RTT data**: the server's 1-RTT keys go to quinn right after the
///   server's Finished, so a response to a 0-RTT request leaves in the
///   server's first flight, one round trip after the client's first packet.
///   BoringSSL installs the client's 1-RTT secret late (with the client's
///   Finished); the server takes it from BoringSSL's key-log callback
///   instead, the moment it is derived (see `ClientAppSecret` in the
///   source).
#[derive(Clone)]
pub struct QuicServerConfig {
    ctx: SslContext,
    early_data: bool,
    early_data_context: Vec<u8>,
}

impl fmt::Debug for QuicServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuicServerConfig")
            .field("early_data", &self.early_data)
            .finish()
    }
}

/// Builds a [`QuicServerConfig`].
#[derive(Clone)]
#[must_use]
pub struct QuicServerConfigBuilder {
    cert_chain_pem: Vec<u8>,
    key_pem: Vec<u8>,
    alpn: Vec<Vec<u8>>,
    early_data: bool,
    ech: Option<Arc<EchKeys>>,
}

impl QuicServerConfig {
    /// A builder for a server with this certificate chain and private key
    /// (PEM), ALPN `h3`, early data on.
    pub fn builder(
        cert_chain_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> QuicServerConfigBuilder {
        QuicServerConfigBuilder {
            cert_chain_pem: cert_chain_pem.into(),
            key_pem: key_pem.into(),
            alpn: vec![b"h3".to_vec()],
            early_data: true,
            ech: None,
        }
    }

    /// A copy (same certificate, same ticket keys) that accepts or refuses
    /// early data.
    #[must_use]
    pub fn with_early_data(&self, enabled: bool) -> Self {
        Self {
            early_data: enabled,
            ..self.clone()
        }
    }

    /// A copy (same ticket keys) whose early-data context is `context`:
    /// tickets issued under another context resume, but without 0-RTT.
    #[must_use]
    pub fn with_early_data_context(&self, context: impl Into<Vec<u8>>) -> Self {
        Self {
            early_data_context: context.into(),
            ..self.clone()
        }
    }

    /// Replaces the ECH keys for every connection accepted from now on (key
    /// rotation): clients with an old config are rejected and sent the new
    /// one as retry configs.
    ///
    /// # Errors
    ///
    /// BoringSSL refused the keys.
    pub fn set_ech_keys(&self, keys: &EchKeys) -> Result<(), TlsError> {
        self.ctx
            .set_ech_keys(&keys.keys)
            .map_err(|e| TlsError::boring("cannot use the ECH keys", e))
    }

    fn new_session(&self, params: &TransportParameters) -> Result<TlsSession, (Option<Ssl>, TlsError)> {
        let mut ssl =
            Ssl::new(&self.ctx).map_err(|e| (None, TlsError::boring("cannot create a connection", e)))?;
        ffi::set_side(&mut ssl, false);
        if let Some(index) = client_app_secret_index() {
            ssl.set_ex_data(index, ClientAppSecret::default());
        }
        let encoded = params::encode(params);
        if let Err(e) = ffi::enable_quic(&mut ssl, &encoded) {
            return Err((Some(ssl), TlsError::boring("cannot enable QUIC", e)));
        }
        ffi::set_early_data_enabled(&mut ssl, self.early_data);
        if self.early_data {
            let context = params::early_data_context(&self.early_data_context, &encoded);
            if let Err(e) = ffi::set_quic_early_data_context(&mut ssl, &context) {
                return Err((
                    Some(ssl),
                    TlsError::boring("cannot set the early-data context", e),
                ));
            }
        }
        Ok(TlsSession::new(ssl, Side::Server))
    }
}

impl fmt::Debug for QuicServerConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuicServerConfigBuilder")
            .field("early_data", &self.early_data)
            .field("ech", &self.ech.is_some())
            .finish_non_exhaustive()
    }
}

impl QuicServerConfigBuilder {
    /// The ALPN protocols to accept, most preferred first. Default `["h3"]`.
    pub fn alpn_protocols<I, P>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: AsRef<[u8]>,
    {
        self.alpn = alpn_list(protocols);
        self
    }

    /// Whether to accept early data (0-RTT). Default true.
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
    /// The certificate or key cannot be parsed or do not match, or no ALPN
    /// protocol is given.
    pub fn build(self) -> Result<QuicServerConfig, TlsError> {
        if self.alpn.is_empty() {
            return Err(TlsError::new("QUIC needs at least one ALPN protocol"));
        }
        let mut ctx = tls13_context()?;
        server::set_identity(&mut ctx, &self.cert_chain_pem, &self.key_pem)?;
        server::select_alpn_by_preference(&mut ctx, self.alpn.clone(), true);
        ffi::ctx_set_early_data_enabled(&mut ctx, self.early_data);
        if let Some(ech) = &self.ech {
            ctx.set_ech_keys(&ech.keys)
                .map_err(|e| TlsError::boring("cannot use the ECH keys", e))?;
        }
        // 0.5-RTT: see `ClientAppSecret`. The line is only parsed, never kept.
        ctx.set_keylog_callback(|ssl, line| {
            let record = AssertUnwindSafe(|| {
                if let Some(slot) = client_app_secret_index().and_then(|i| ssl.ex_data(i)) {
                    slot.record(line);
                }
            });
            let _ = catch_unwind(record);
        });
        Ok(QuicServerConfig {
            ctx: ctx.build(),
            early_data: self.early_data,
            early_data_context: b"h3fleet-origin-v1".to_vec(),
        })
    }
}

impl crypto::ServerConfig for QuicServerConfig {
    fn initial_keys(&self, version: u32, dst_cid: &ConnectionId) -> Result<Keys, UnsupportedVersion> {
        if version != QUIC_V1 {
            return Err(UnsupportedVersion);
        }
        Ok(keys::initial_keys(dst_cid, Side::Server))
    }

    fn retry_tag(&self, _version: u32, orig_dst_cid: &ConnectionId, packet: &[u8]) -> [u8; 16] {
        // quinn calls this only for versions `initial_keys` accepted (v1).
        keys::retry_tag(orig_dst_cid, packet)
    }

    fn start_session(
        self: Arc<Self>,
        _version: u32,
        params: &TransportParameters,
    ) -> Box<dyn crypto::Session> {
        match self.new_session(params) {
            Ok(session) => Box::new(session),
            Err((ssl, e)) => {
                tracing::error!(error = %e, "cannot start a server TLS session");
                // quinn's server side cannot fail here; hand it a session
                // that fails its first handshake step with the reason.
                match ssl.or_else(|| Ssl::new(&self.ctx).ok()) {
                    Some(ssl) => Box::new(TlsSession::failed(ssl, Side::Server, e.to_string())),
                    None => Box::new(FailedSession(e.to_string())),
                }
            }
        }
    }
}

/// A server session with no `SSL` at all (BoringSSL could not allocate
/// one): every handshake step fails.
struct FailedSession(String);

impl crypto::Session for FailedSession {
    fn initial_keys(&self, dst_cid: &ConnectionId, side: Side) -> Keys {
        keys::initial_keys(dst_cid, side)
    }
    fn handshake_data(&self) -> Option<Box<dyn std::any::Any>> {
        None
    }
    fn peer_identity(&self) -> Option<Box<dyn std::any::Any>> {
        None
    }
    fn early_crypto(&self) -> Option<(Box<dyn crypto::HeaderKey>, Box<dyn crypto::PacketKey>)> {
        None
    }
    fn early_data_accepted(&self) -> Option<bool> {
        Some(false)
    }
    fn is_handshaking(&self) -> bool {
        true
    }
    fn read_handshake(&mut self, _: &[u8]) -> Result<bool, quinn_proto::TransportError> {
        Err(quinn_proto::TransportError {
            code: quinn_proto::TransportErrorCode::crypto(0x50),
            frame: None,
            reason: self.0.clone(),
        })
    }
    fn transport_parameters(&self) -> Result<Option<TransportParameters>, quinn_proto::TransportError> {
        Ok(None)
    }
    fn write_handshake(&mut self, _: &mut Vec<u8>) -> Option<Keys> {
        None
    }
    fn next_1rtt_keys(&mut self) -> Option<crypto::KeyPair<Box<dyn crypto::PacketKey>>> {
        None
    }
    fn is_valid_retry(&self, _: &ConnectionId, _: &[u8], _: &[u8]) -> bool {
        false
    }
    fn export_keying_material(
        &self,
        _: &mut [u8],
        _: &[u8],
        _: &[u8],
    ) -> Result<(), crypto::ExportKeyingMaterialError> {
        Err(crypto::ExportKeyingMaterialError)
    }
}
