//! The QUIC server's TLS on BoringSSL: quinn's `crypto::ServerConfig`, for
//! h3fleet's own origin (built with the `server` feature only).

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use boring::ssl::{Ssl, SslContext};
use quinn_proto::crypto::{self, Keys, UnsupportedVersion};
use quinn_proto::transport_parameters::TransportParameters;
use quinn_proto::{ConnectionId, Side};

use crate::quic::config::tls13_context;
use crate::quic::keys::{self, QUIC_V1};
use crate::quic::params;
use crate::quic::session::{client_app_secret_index, ClientAppSecret, TlsSession};
use crate::tls::{alpn_list, ffi, server, EchKeys, TlsError};

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
