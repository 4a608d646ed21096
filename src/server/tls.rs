//! The origin's certificates and its default TLS stack: quinn's standard
//! rustls server, observed so the origin can tell 0-RTT requests and
//! resumed connections apart just as it can on BoringSSL.

use std::any::Any;
use std::sync::Arc;

use quinn_proto::crypto::{self, ExportKeyingMaterialError, KeyPair, Keys, PacketKey};
use quinn_proto::transport_parameters::TransportParameters;
use quinn_proto::{ConnectionId, Side, TransportError};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::ServerError;
use crate::quic::{EarlyDataStatus, HandshakeData};

/// A self-signed certificate and its private key, both PEM.
///
/// A client trusts it by adding `cert_pem` as a root (`h3fleet get
/// --cacert`). Fine for loopback demos and tests; nothing else.
#[derive(Clone)]
pub struct SelfSigned {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key. Secret.
    pub key_pem: String,
}

impl std::fmt::Debug for SelfSigned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfSigned").finish_non_exhaustive()
    }
}

impl SelfSigned {
    /// A new key pair and certificate valid for `names` (DNS names or IP
    /// literals).
    ///
    /// # Errors
    ///
    /// A name is not a valid DNS name or IP address.
    pub fn generate(names: &[String]) -> Result<Self, ServerError> {
        let bad = |e: rcgen::Error| ServerError::Certificate(e.to_string());
        let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(bad)?;
        // A subject of its own: a client trusting several of these
        // certificates must not mistake one for another's issuer.
        let subject = names.first().map_or("h3fleet origin", String::as_str);
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("h3fleet self-signed: {subject}"),
        );
        let key = rcgen::KeyPair::generate().map_err(bad)?;
        let cert = params.self_signed(&key).map_err(bad)?;
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// quinn's rustls server configuration for `cert_pem` (a chain, leaf first)
/// and `key_pem`: TLS 1.3, ALPN `h3`, session tickets from rustls's
/// stateful store (the only kind rustls lets carry 0-RTT) and 0-RTT enabled.
///
/// Each call has its own ticket store: an origin restarted with a new
/// configuration refuses the old tickets, as a real server that lost its
/// ticket keys does.
///
/// # Errors
///
/// The PEM cannot be parsed or the key does not match.
pub fn rustls_quic_config(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<dyn crypto::ServerConfig>, ServerError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| ServerError::Certificate(format!("{what}: {e}"));
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("cannot read the certificate PEM", &e))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| bad("cannot read the key PEM", &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| bad("TLS 1.3 unavailable", &e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| bad("certificate and key refused", &e))?;
    tls.alpn_protocols = vec![b"h3".to_vec()];
    tls.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    tls.max_early_data_size = u32::MAX;
    let quic =
        quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(|e| bad("not usable for QUIC", &e))?;
    Ok(Arc::new(Observed(Arc::new(quic))))
}

/// Wraps a rustls server configuration so each connection reports
/// h3fleet's [`HandshakeData`]: whether the handshake is complete (a request
/// read before then came as 0-RTT) and whether it resumed a session.
struct Observed(Arc<quinn::crypto::rustls::QuicServerConfig>);

impl crypto::ServerConfig for Observed {
    fn initial_keys(&self, version: u32, dst_cid: &ConnectionId) -> Result<Keys, crypto::UnsupportedVersion> {
        self.0.initial_keys(version, dst_cid)
    }

    fn retry_tag(&self, version: u32, orig_dst_cid: &ConnectionId, packet: &[u8]) -> [u8; 16] {
        self.0.retry_tag(version, orig_dst_cid, packet)
    }

    fn start_session(
        self: Arc<Self>,
        version: u32,
        params: &TransportParameters,
    ) -> Box<dyn crypto::Session> {
        Box::new(ObservedSession {
            inner: Arc::clone(&self.0).start_session(version, params),
            messages: MessageScanner::default(),
        })
    }
}

/// Follows the TLS handshake messages the server writes. A TLS 1.3 server
/// sends a Certificate message only in a full handshake, so its absence
/// once the handshake is under way means the client resumed.
#[derive(Default)]
struct MessageScanner {
    header: Vec<u8>,
    remaining_body: usize,
    saw_server_hello: bool,
    saw_certificate: bool,
}

const SERVER_HELLO: u8 = 2;
const CERTIFICATE: u8 = 11;

impl MessageScanner {
    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.remaining_body > 0 {
                let skip = self.remaining_body.min(bytes.len());
                self.remaining_body -= skip;
                bytes = &bytes[skip..];
                continue;
            }
            let take = (4 - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.header.len() == 4 {
                match self.header[0] {
                    SERVER_HELLO => self.saw_server_hello = true,
                    CERTIFICATE => self.saw_certificate = true,
                    _ => {}
                }
                self.remaining_body = usize::from(self.header[1]) << 16
                    | usize::from(self.header[2]) << 8
                    | usize::from(self.header[3]);
                self.header.clear();
            }
        }
    }
}

struct ObservedSession {
    inner: Box<dyn crypto::Session>,
    messages: MessageScanner,
}

impl crypto::Session for ObservedSession {
    fn initial_keys(&self, dst_cid: &ConnectionId, side: Side) -> Keys {
        self.inner.initial_keys(dst_cid, side)
    }

    fn handshake_data(&self) -> Option<Box<dyn Any>> {
        let inner = self
            .inner
            .handshake_data()?
            .downcast::<quinn::crypto::rustls::HandshakeData>()
            .ok()?;
        let complete = !self.inner.is_handshaking();
        let resumed = self.messages.saw_server_hello && !self.messages.saw_certificate;
        Some(Box::new(HandshakeData {
            protocol: inner.protocol,
            server_name: inner.server_name,
            handshake_complete: complete,
            resumed,
            // rustls does not say whether it took the client's early data.
            early_data: EarlyDataStatus::NotAttempted,
            ech_accepted: false,
            early_data_reason: "unknown (rustls)",
        }))
    }

    fn peer_identity(&self) -> Option<Box<dyn Any>> {
        self.inner.peer_identity()
    }

    fn early_crypto(&self) -> Option<(Box<dyn crypto::HeaderKey>, Box<dyn PacketKey>)> {
        self.inner.early_crypto()
    }

    fn early_data_accepted(&self) -> Option<bool> {
        self.inner.early_data_accepted()
    }

    fn is_handshaking(&self) -> bool {
        self.inner.is_handshaking()
    }

    fn read_handshake(&mut self, buf: &[u8]) -> Result<bool, TransportError> {
        self.inner.read_handshake(buf)
    }

    fn transport_parameters(&self) -> Result<Option<TransportParameters>, TransportError> {
        self.inner.transport_parameters()
    }

    fn write_handshake(&mut self, buf: &mut Vec<u8>) -> Option<Keys> {
        let start = buf.len();
        let keys = self.inner.write_handshake(buf);
        if let Some(written) = buf.get(start..) {
            self.messages.feed(written);
        }
        keys
    }

    fn next_1rtt_keys(&mut self) -> Option<KeyPair<Box<dyn PacketKey>>> {
        self.inner.next_1rtt_keys()
    }

    fn is_valid_retry(&self, orig_dst_cid: &ConnectionId, header: &[u8], payload: &[u8]) -> bool {
        self.inner.is_valid_retry(orig_dst_cid, header, payload)
    }

    fn export_keying_material(
        &self,
        output: &mut [u8],
        label: &[u8],
        context: &[u8],
    ) -> Result<(), ExportKeyingMaterialError> {
        self.inner.export_keying_material(output, label, context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanner_sees_a_certificate_split_across_writes() {
        let mut s = MessageScanner::default();
        // ServerHello with a 3-byte body, then a Certificate header split in two.
        s.feed(&[2, 0, 0, 3, 9, 9, 9, 11, 0]);
        assert!(s.saw_server_hello && !s.saw_certificate);
        s.feed(&[0, 1, 7]);
        assert!(s.saw_certificate);
    }

    #[test]
    fn scanner_without_certificate_means_resumed() {
        let mut s = MessageScanner::default();
        // ServerHello, EncryptedExtensions, Finished.
        s.feed(&[2, 0, 0, 1, 0, 8, 0, 0, 2, 0, 0, 20, 0, 0, 1, 5]);
        assert!(s.saw_server_hello && !s.saw_certificate);
    }
}
