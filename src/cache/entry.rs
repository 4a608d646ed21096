//! [`CachedSession`]: a resumable session as the cache holds it, and its
//! conversion to and from the stored [`TlsSessionState`].

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chrono::{DateTime, Utc};

use crate::cache::backend::TlsSessionState;
use crate::cache::envelope::{Envelope, EnvelopeError};
use crate::cache::key::Protocol;
use crate::cache::seal::{session_context, SealError, Sealing, MAX_SEAL_OVERHEAD};
use crate::cache::MAX_ENVELOPE_LEN;

/// The longest ticket TLS can carry (a 16-bit length, RFC 8446 §4.6.1).
pub(crate) const MAX_TICKET_LEN: usize = 65_535;

/// The base64 length of `n` bytes.
const fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

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

/// Where a new session may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// This process and the shared backend (TLS 1.3 sessions).
    Fleet,
    /// This process only. A TLS 1.2 session's master secret decrypts the
    /// whole of every connection that resumes it, and the session of the
    /// first, so it never leaves the process.
    Local,
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
    /// The value did not open (sealing; see [`SealError`]).
    #[error(transparent)]
    Seal(#[from] SealError),
    /// A field is longer than any valid entry's.
    #[error("field `{0}` is too long")]
    TooLong(&'static str),
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
        match self {
            Self::Envelope(e) => e.is_foreign(),
            Self::Seal(e) => e.is_foreign(),
            _ => false,
        }
    }
}

impl CachedSession {
    /// The stored form, stamped `created_at`, unsealed.
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

    /// The stored form under backend key `key`: `state` sealed and bound to
    /// the key and the ticket when `sealing` has keys.
    pub(crate) fn seal_state(
        &self,
        created_at: DateTime<Utc>,
        sealing: &Sealing,
        key: &str,
    ) -> Result<TlsSessionState, EntryError> {
        let state = sealing.seal(&session_context(key, &self.ticket), self.envelope.encode()?)?;
        Ok(TlsSessionState {
            ticket: BASE64.encode(&self.ticket),
            state: BASE64.encode(state),
            created_at,
        })
    }

    /// Reads a stored, unsealed entry for a cache of `protocol`.
    ///
    /// # Errors
    ///
    /// Bad base64, an over-long field, an invalid or foreign envelope, a
    /// sealed value, or a session of another protocol.
    pub fn from_state(state: &TlsSessionState, protocol: Protocol) -> Result<Self, EntryError> {
        Self::open_state(state, protocol, &Sealing::default(), "")
    }

    /// Reads the entry stored under backend key `key`, opening it with
    /// `sealing`. Lengths are checked before anything is decoded.
    pub(crate) fn open_state(
        state: &TlsSessionState,
        protocol: Protocol,
        sealing: &Sealing,
        key: &str,
    ) -> Result<Self, EntryError> {
        if state.ticket.len() > base64_len(MAX_TICKET_LEN) {
            return Err(EntryError::TooLong("ticket"));
        }
        if state.state.len() > base64_len(MAX_ENVELOPE_LEN + MAX_SEAL_OVERHEAD) {
            return Err(EntryError::TooLong("state"));
        }
        let ticket = BASE64
            .decode(&state.ticket)
            .map_err(|_| EntryError::Base64("ticket"))?;
        if ticket.len() > MAX_TICKET_LEN {
            return Err(EntryError::TooLong("ticket"));
        }
        let raw = BASE64
            .decode(&state.state)
            .map_err(|_| EntryError::Base64("state"))?;
        let raw = sealing.open(&session_context(key, &ticket), raw)?;
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

    fn sealing() -> Sealing {
        let keys = crate::cache::CacheKeys::parse("k1 AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
        Sealing::new(Some(keys), false)
    }

    #[test]
    fn a_sealed_entry_opens_only_under_its_key_and_ticket() {
        let s = session(Protocol::H3);
        let key = "h3fleet:sessions:default:h3:a.example:443";
        let state = s.seal_state(Utc::now(), &sealing(), key).unwrap();
        assert_eq!(
            CachedSession::open_state(&state, Protocol::H3, &sealing(), key),
            Ok(s.clone())
        );
        let moved = "h3fleet:sessions:default:h3:b.example:443";
        assert_eq!(
            CachedSession::open_state(&state, Protocol::H3, &sealing(), moved),
            Err(EntryError::Seal(SealError::Forged))
        );
        let mut swapped = state.clone();
        swapped.ticket = BASE64.encode([7u8; 32]);
        assert_eq!(
            CachedSession::open_state(&swapped, Protocol::H3, &sealing(), key),
            Err(EntryError::Seal(SealError::Forged))
        );
        let foreign = CachedSession::from_state(&state, Protocol::H3).unwrap_err();
        assert!(foreign.is_foreign(), "{foreign}");
    }

    #[test]
    fn an_unsealed_entry_is_refused_when_keys_are_set() {
        let state = session(Protocol::H2).to_state(Utc::now()).unwrap();
        let err = CachedSession::open_state(&state, Protocol::H2, &sealing(), "k").unwrap_err();
        assert_eq!(err, EntryError::Seal(SealError::Unsealed));
        assert!(!err.is_foreign());
    }

    #[test]
    fn over_long_fields_are_refused_before_decoding() {
        let mut state = session(Protocol::H2).to_state(Utc::now()).unwrap();
        state.ticket = "A".repeat(base64_len(MAX_TICKET_LEN) + 4);
        assert_eq!(
            CachedSession::from_state(&state, Protocol::H2),
            Err(EntryError::TooLong("ticket"))
        );
        let mut state = session(Protocol::H2).to_state(Utc::now()).unwrap();
        state.state = "A".repeat(200_000);
        assert_eq!(
            CachedSession::from_state(&state, Protocol::H2),
            Err(EntryError::TooLong("state"))
        );
    }
}
