//! [`TlsSession`]: quinn's `crypto::Session` on a BoringSSL `SSL`.
//!
//! quinn moves handshake bytes and asks for keys; BoringSSL produces bytes
//! and secrets through callbacks (recorded by `tls::ffi`). This type turns
//! one into the other:
//!
//! - bytes BoringSSL writes are queued per encryption level, and
//!   `write_handshake` hands out only those of quinn's current level;
//! - keys of the next level are handed over only once BoringSSL has
//!   installed both its read and its write secret for it (quinn has no
//!   way to take one direction early);
//! - 1-RTT secrets are kept to derive key-update generations.

use std::any::Any;
use std::sync::{Arc, Mutex, OnceLock};

use boring::ex_data::Index;
use boring::ssl::{NameType, Ssl, SslRef};
use quinn_proto::crypto::{self, ExportKeyingMaterialError, KeyPair, Keys};
use quinn_proto::transport_parameters::TransportParameters;
use quinn_proto::{ConnectionId, Side, TransportError, TransportErrorCode};

use crate::quic::keys::{self, Secret, Suite};
use crate::tls::ffi::{self, Direction, Level, Progress};
use crate::tls::EchRejection;

/// What happened to early data on this connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarlyDataStatus {
    /// No early data was offered (no ticket, or one that does not allow it).
    NotAttempted,
    /// Offered; the handshake has not yet said whether it was accepted.
    Pending,
    /// The server accepted the early data.
    Accepted,
    /// The server refused it; anything sent as 0-RTT must be sent again.
    Rejected,
}

/// What the handshake established, as returned by quinn's
/// `Connection::handshake_data()` (downcast to this type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeData {
    /// The negotiated ALPN protocol.
    pub protocol: Option<Vec<u8>>,
    /// The server name the client asked for (server side only).
    pub server_name: Option<String>,
    /// True once the handshake is complete (the peer's Finished has been
    /// verified). A server that reads a request while this is false got it
    /// as 0-RTT early data.
    pub handshake_complete: bool,
    /// True when the connection resumed an earlier session (no full handshake).
    pub resumed: bool,
    /// What happened to early data.
    pub early_data: EarlyDataStatus,
    /// True when Encrypted Client Hello was offered and accepted: the real
    /// server name travelled encrypted.
    pub ech_accepted: bool,
    /// BoringSSL's reason for the early-data outcome (e.g. `accepted`,
    /// `session_not_resumed`, `alpn_mismatch`, `quic_parameter_mismatch`).
    pub early_data_reason: &'static str,
}

/// Server side: the client's first 1-RTT secret, taken from BoringSSL's key
/// log the moment the server derives it.
///
/// BoringSSL installs the server's 1-RTT *read* secret only when the
/// client's Finished arrives, but quinn takes 1-RTT keys in pairs; waiting
/// would delay every response to a 0-RTT request by a round trip (no
/// 0.5-RTT data). The key log reports `CLIENT_TRAFFIC_SECRET_0` together
/// with the server's own 1-RTT secret, after the server's Finished, so both
/// keys can go to quinn then, as they do with rustls. quinn still holds
/// back 1-RTT packets from the client until the handshake completes.
#[derive(Default)]
pub(crate) struct ClientAppSecret(Mutex<Option<Vec<u8>>>);

impl ClientAppSecret {
    #[cfg(feature = "server")]
    /// Records the secret from a key-log line, if it is the right line.
    pub(crate) fn record(&self, keylog_line: &str) {
        let Some(hex) = keylog_line
            .strip_prefix("CLIENT_TRAFFIC_SECRET_0 ")
            .and_then(|rest| rest.split(' ').nth(1))
        else {
            return;
        };
        let bytes: Option<Vec<u8>> = (0..hex.len())
            .step_by(2)
            .map(|i| hex.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
            .collect();
        if let Some(bytes) = bytes.filter(|b| !b.is_empty()) {
            *crate::sync::lock(&self.0) = Some(bytes);
        }
    }

    fn take(&self) -> Option<Vec<u8>> {
        crate::sync::lock(&self.0).take()
    }
}

pub(crate) fn client_app_secret_index() -> Option<Index<Ssl, ClientAppSecret>> {
    static INDEX: OnceLock<Option<Index<Ssl, ClientAppSecret>>> = OnceLock::new();
    *INDEX.get_or_init(|| Ssl::new_ex_index().ok())
}

const LEVELS: usize = 4;

fn slot(level: Level) -> usize {
    match level {
        Level::Initial => 0,
        Level::EarlyData => 1,
        Level::Handshake => 2,
        Level::Application => 3,
    }
}

/// One QUIC connection's TLS state on BoringSSL.
pub(crate) struct TlsSession {
    ssl: Ssl,
    side: Side,
    /// Handshake bytes BoringSSL wrote, per level, not yet taken by quinn.
    pending: [Vec<u8>; LEVELS],
    read_secrets: [Option<Secret>; LEVELS],
    write_secrets: [Option<Secret>; LEVELS],
    /// The level quinn is currently writing at.
    quinn_level: Level,
    handshaking: bool,
    got_handshake_data: bool,
    early_data: EarlyDataStatus,
    /// The server's transport parameters stored with the ticket, used while
    /// the client sends 0-RTT (RFC 9000 §7.4.1).
    remembered_params: Option<TransportParameters>,
    /// Current 1-RTT secrets (local, remote), for key updates.
    app_secrets: Option<(Secret, Secret)>,
    alert: Option<u8>,
    /// A set-up failure to report on the first `read_handshake`.
    failed: Option<String>,
    /// Where a client reports that the server rejected its ECH.
    ech_rejection: Option<Arc<EchRejection>>,
}

impl TlsSession {
    pub(crate) fn new(ssl: Ssl, side: Side) -> Self {
        Self {
            ssl,
            side,
            pending: Default::default(),
            read_secrets: Default::default(),
            write_secrets: Default::default(),
            quinn_level: Level::Initial,
            handshaking: true,
            got_handshake_data: false,
            early_data: EarlyDataStatus::NotAttempted,
            remembered_params: None,
            app_secrets: None,
            alert: None,
            failed: None,
            ech_rejection: None,
        }
    }

    /// Reports an ECH rejection (and the server's retry configs) to `slot`.
    pub(crate) fn report_ech_rejection(&mut self, slot: Arc<EchRejection>) {
        self.ech_rejection = Some(slot);
    }

    #[cfg(feature = "server")]
    /// A session that fails its first `read_handshake` with `reason`
    /// (quinn's server `start_session` cannot return an error).
    pub(crate) fn failed(ssl: Ssl, side: Side, reason: String) -> Self {
        let mut session = Self::new(ssl, side);
        session.failed = Some(reason);
        session
    }

    pub(crate) fn ssl_mut(&mut self) -> &mut SslRef {
        &mut self.ssl
    }

    /// The client offers early data with a ticket whose server parameters
    /// are `params`.
    pub(crate) fn offer_early_data(&mut self, params: TransportParameters) {
        ffi::set_early_data_enabled(&mut self.ssl, true);
        self.remembered_params = Some(params);
        self.early_data = EarlyDataStatus::Pending;
    }

    /// Runs the handshake as far as it can go and collects what BoringSSL
    /// produced.
    pub(crate) fn drive(&mut self) -> Result<(), TransportError> {
        loop {
            let progress = ffi::do_handshake(&mut self.ssl);
            self.absorb()?;
            match progress {
                Progress::Done | Progress::WantRead => break,
                Progress::EarlyDataRejected => {
                    tracing::debug!("early data rejected; continuing at 1-RTT");
                    self.early_data = EarlyDataStatus::Rejected;
                    // A rejection discards the 0-RTT keys and parameters.
                    self.write_secrets[slot(Level::EarlyData)] = None;
                    self.remembered_params = None;
                }
                Progress::Failed(stack) => {
                    if let Some(slot) = &self.ech_rejection {
                        slot.record(&self.ssl, &stack);
                    }
                    return Err(self.handshake_error(&stack.to_string()));
                }
            }
        }
        if self.handshaking && !ffi::in_init(&self.ssl) {
            self.handshaking = false;
            if self.early_data == EarlyDataStatus::Pending || self.side == Side::Server {
                self.early_data = if ffi::early_data_accepted(&self.ssl) {
                    EarlyDataStatus::Accepted
                } else if self.early_data == EarlyDataStatus::Pending {
                    EarlyDataStatus::Rejected
                } else {
                    EarlyDataStatus::NotAttempted
                };
            }
            tracing::debug!(
                resumed = self.ssl.session_reused(),
                early_data = ?self.early_data,
                reason = ffi::early_data_reason(&self.ssl),
                "TLS handshake complete"
            );
        }
        Ok(())
    }

    /// Moves what the callbacks recorded into this session.
    fn absorb(&mut self) -> Result<(), TransportError> {
        let events = ffi::take_quic_events(&mut self.ssl);
        if let Some(alert) = events.alert {
            self.alert = Some(alert);
        }
        for (level, bytes) in events.handshake {
            self.pending[slot(level)].extend_from_slice(&bytes);
        }
        for s in events.secrets {
            let suite = Suite::from_tls_id(s.cipher).ok_or_else(|| {
                self.handshake_error(&format!("cipher suite {:#06x} cannot protect QUIC", s.cipher))
            })?;
            let secret = Secret::new(suite, &s.secret);
            match s.direction {
                Direction::Read => self.read_secrets[slot(s.level)] = Some(secret),
                Direction::Write => self.write_secrets[slot(s.level)] = Some(secret),
            }
        }
        self.take_logged_client_secret();
        Ok(())
    }

    /// Server: pairs the server's 1-RTT write secret with the client's,
    /// from the key log, as soon as both exist (see [`ClientAppSecret`]).
    fn take_logged_client_secret(&mut self) {
        let app = slot(Level::Application);
        if self.side != Side::Server || self.read_secrets[app].is_some() {
            return;
        }
        let Some(suite) = self.write_secrets[app].as_ref().map(Secret::suite) else {
            return;
        };
        let logged = client_app_secret_index()
            .and_then(|i| self.ssl.ex_data(i))
            .and_then(ClientAppSecret::take);
        if let Some(bytes) = logged {
            self.read_secrets[app] = Some(Secret::new(suite, &bytes));
        }
    }

    fn handshake_error(&self, detail: &str) -> TransportError {
        let reason = match self.ssl.verify_result() {
            Err(verify) => format!(
                "TLS handshake failed: certificate verification: {}",
                verify.error_string()
            ),
            Ok(()) => format!("TLS handshake failed: {detail}"),
        };
        TransportError {
            // 0x50 is TLS's internal_error alert, used when BoringSSL sent none.
            code: TransportErrorCode::crypto(self.alert.unwrap_or(0x50)),
            frame: None,
            reason,
        }
    }

    fn secret_pair(&self, level: Level) -> Option<(Secret, Secret)> {
        let local = self.write_secrets[slot(level)].clone()?;
        let remote = self.read_secrets[slot(level)].clone()?;
        Some((local, remote))
    }
}

impl crypto::Session for TlsSession {
    fn initial_keys(&self, dst_cid: &ConnectionId, side: Side) -> Keys {
        keys::initial_keys(dst_cid, side)
    }

    fn handshake_data(&self) -> Option<Box<dyn Any>> {
        if !self.got_handshake_data {
            return None;
        }
        Some(Box::new(HandshakeData {
            protocol: self.ssl.selected_alpn_protocol().map(<[u8]>::to_vec),
            server_name: match self.side {
                Side::Server => self.ssl.servername(NameType::HOST_NAME).map(str::to_owned),
                Side::Client => None,
            },
            handshake_complete: !self.handshaking,
            resumed: self.ssl.session_reused(),
            early_data: self.early_data,
            ech_accepted: self.ssl.ech_accepted(),
            early_data_reason: ffi::early_data_reason(&self.ssl),
        }))
    }

    /// The peer's certificate chain, leaf first, as DER (`Vec<Vec<u8>>`).
    fn peer_identity(&self) -> Option<Box<dyn Any>> {
        let chain = self.ssl.peer_cert_chain()?;
        let der: Vec<Vec<u8>> = chain.iter().filter_map(|c| c.to_der().ok()).collect();
        Some(Box::new(der))
    }

    fn early_crypto(&self) -> Option<(Box<dyn crypto::HeaderKey>, Box<dyn crypto::PacketKey>)> {
        let secrets = match self.side {
            Side::Client => &self.write_secrets,
            Side::Server => &self.read_secrets,
        };
        let secret = secrets[slot(Level::EarlyData)].as_ref()?;
        Some((Box::new(secret.header_key()), Box::new(secret.packet_key())))
    }

    fn early_data_accepted(&self) -> Option<bool> {
        Some(self.early_data == EarlyDataStatus::Accepted)
    }

    fn is_handshaking(&self) -> bool {
        self.handshaking
    }

    fn read_handshake(&mut self, buf: &[u8]) -> Result<bool, TransportError> {
        if let Some(reason) = &self.failed {
            return Err(TransportError {
                code: TransportErrorCode::crypto(0x50),
                frame: None,
                reason: reason.clone(),
            });
        }
        ffi::provide_quic_data(&mut self.ssl, buf).map_err(|e| self.handshake_error(&e.to_string()))?;
        if self.handshaking {
            self.drive()?;
        } else {
            // NewSessionTicket and other post-handshake messages.
            ffi::process_post_handshake(&mut self.ssl).map_err(|e| self.handshake_error(&e.to_string()))?;
            self.absorb()?;
        }
        if !self.got_handshake_data && (self.ssl.selected_alpn_protocol().is_some() || !self.handshaking) {
            self.got_handshake_data = true;
            return Ok(true);
        }
        Ok(false)
    }

    fn transport_parameters(&self) -> Result<Option<TransportParameters>, TransportError> {
        match ffi::peer_quic_transport_params(&self.ssl) {
            Some(raw) => TransportParameters::read(self.side, &mut raw.as_slice())
                .map(Some)
                .map_err(Into::into),
            None => Ok(self.remembered_params),
        }
    }

    fn write_handshake(&mut self, buf: &mut Vec<u8>) -> Option<Keys> {
        buf.append(&mut self.pending[slot(self.quinn_level)]);
        let next = match self.quinn_level {
            Level::Initial => Level::Handshake,
            Level::Handshake => Level::Application,
            Level::EarlyData | Level::Application => return None,
        };
        let (local, remote) = self.secret_pair(next)?;
        self.quinn_level = next;
        if next == Level::Application {
            self.app_secrets = Some((local.clone(), remote.clone()));
        }
        Some(keys::keys(&local, &remote))
    }

    fn next_1rtt_keys(&mut self) -> Option<KeyPair<Box<dyn crypto::PacketKey>>> {
        let (local, remote) = self.app_secrets.as_mut()?;
        *local = local.next();
        *remote = remote.next();
        Some(KeyPair {
            local: Box::new(local.packet_key()),
            remote: Box::new(remote.packet_key()),
        })
    }

    fn is_valid_retry(&self, orig_dst_cid: &ConnectionId, header: &[u8], payload: &[u8]) -> bool {
        keys::is_valid_retry(orig_dst_cid, header, payload)
    }

    fn export_keying_material(
        &self,
        output: &mut [u8],
        label: &[u8],
        context: &[u8],
    ) -> Result<(), ExportKeyingMaterialError> {
        let label = std::str::from_utf8(label).map_err(|_| ExportKeyingMaterialError)?;
        self.ssl
            .export_keying_material(output, label, Some(context))
            .map_err(|_| ExportKeyingMaterialError)
    }
}
