//! [`CachedSession`]: a resumable session as the cache holds it, and its
//! conversion to and from the stored [`TlsSessionState`].

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chrono::{DateTime, Utc};

use crate::cache::backend::TlsSessionState;
use crate::cache::envelope::{Envelope, EnvelopeError};
use crate::cache::key::Protocol;

/// A session the TLS layer can resume: the raw ticket and its envelope.
///
/// The cache treats both as opaque; only their metadata (protocol, lifetime,
/// issue time) drives its decisions. `Debug` shows no secret bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct CachedSession {
    /// The raw ticket the server sent, used to recognise this session again
    /// (de-duplication, invalidation).
    pub ticket: Vec<u8>,
    /// The serialised session and what resuming it needs.
    pub envelope: Envelope,
}

impl fmt::Debug for CachedSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedSession")
            .field("ticket", &format_args!("<{} bytes>", self.ticket.len()))
            .field("envelope", &self.envelope)
            .finish()
    }
}

/// Why a stored [`TlsSessionState`] cannot be resumed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// A field is not standard base64.
    #[error("field `{0}` is not valid base64")]
    Base64(&'static str),
    /// The `state` envelope is invalid, or from another version or engine.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The envelope belongs to another protocol than the key it was under.
    #[error("entry holds an {found} session under an {expected} key")]
    WrongProtocol {
        /// The protocol of the cache that read it.
        expected: Protocol,
        /// The protocol recorded in the envelope.
        found: Protocol,
    },
}

impl EntryError {
    /// True for a valid entry written by another h3fleet version or TLS
    /// engine: a miss, but not corrupt, so it is left in place.
    pub fn is_foreign(&self) -> bool {
        matches!(self, Self::Envelope(e) if e.is_foreign())
    }
}

impl CachedSession {
    /// The stored form, stamped `created_at`.
    ///
    /// # Errors
    ///
    /// The envelope does not pass validation.
    pub fn to_state(&self, created_at: DateTime<Utc>) -> Result<TlsSessionState, EnvelopeError> {
        Ok(TlsSessionState {
            ticket: BASE64.encode(&self.ticket),
            state: BASE64.encode(self.envelope.encode()?),
            created_at,
        })
    }

    /// Reads a stored entry for a cache of `protocol`.
    ///
    /// # Errors
    ///
    /// Bad base64, an invalid or foreign envelope, or a session of another
    /// protocol.
    pub fn from_state(state: &TlsSessionState, protocol: Protocol) -> Result<Self, EntryError> {
        let ticket = BASE64
            .decode(&state.ticket)
            .map_err(|_| EntryError::Base64("ticket"))?;
        let raw = BASE64
            .decode(&state.state)
            .map_err(|_| EntryError::Base64("state"))?;
        let envelope = Envelope::decode(&raw)?;
        if envelope.protocol != protocol {
            return Err(EntryError::WrongProtocol {
                expected: protocol,
                found: envelope.protocol,
            });
        }
        Ok(Self { ticket, envelope })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(protocol: Protocol) -> CachedSession {
        CachedSession {
            ticket: vec![9; 32],
            envelope: Envelope {
                protocol,
                session: vec![1; 100],
                lifetime_secs: 3600,
                issued_at: 1_800_000_000,
                alpn: b"h2".to_vec(),
                early_data: false,
                ech: false,
                transport_params: vec![],
            },
        }
    }

    #[test]
    fn stored_form_round_trips() {
        let s = session(Protocol::H2);
        let state = s.to_state(Utc::now()).unwrap();
        assert_eq!(CachedSession::from_state(&state, Protocol::H2), Ok(s));
    }

    #[test]
    fn a_session_never_crosses_protocols() {
        let state = session(Protocol::H2).to_state(Utc::now()).unwrap();
        assert!(matches!(
            CachedSession::from_state(&state, Protocol::H1),
            Err(EntryError::WrongProtocol { .. })
        ));
    }

    #[test]
    fn bad_base64_is_reported_by_field() {
        let mut state = session(Protocol::H2).to_state(Utc::now()).unwrap();
        state.state = "not base64!".into();
        assert_eq!(
            CachedSession::from_state(&state, Protocol::H2),
            Err(EntryError::Base64("state"))
        );
    }
}
