//! What a stored entry says about itself, for `h3fleet cache ls` and
//! `cache show`: metadata only. Nothing here returns a ticket, a session or
//! key material, so nothing a caller prints from it is a secret.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chrono::{DateTime, Utc};

use crate::cache::backend::TlsSessionState;
use crate::cache::entry::CachedSession;
use crate::cache::key::Protocol;
use crate::cache::seal::{sealing_key_id, CacheKeys, Sealing};

/// The metadata of one stored session (a shared one, or one in a pool).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct SessionSummary {
    /// When the entry was written.
    pub created_at: DateTime<Utc>,
    /// The id of the fleet key that sealed it; `None`: stored unsealed.
    pub sealed_with: Option<String>,
    /// What the envelope says, when it could be read (an unsealed entry, or
    /// a sealed one opened with the keys given).
    pub envelope: Option<EnvelopeSummary>,
    /// Why the envelope could not be read, if it could not.
    pub unreadable: Option<String>,
}

/// The non-secret fields of a session's envelope.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct EnvelopeSummary {
    /// The protocol the ticket was won on.
    pub protocol: Protocol,
    /// The ALPN protocol negotiated when it was won.
    pub alpn: String,
    /// When the server issued it (seconds since the Unix epoch).
    pub issued_at: u64,
    /// The lifetime the server granted, in seconds.
    pub lifetime_secs: u32,
    /// The ticket allows 0-RTT early data.
    pub early_data: bool,
    /// Won over an accepted ECH: offered only with ECH.
    pub ech_bound: bool,
}

impl EnvelopeSummary {
    /// Seconds this ticket may still be offered at `now` (0: expired).
    pub fn remaining_secs(&self, now: DateTime<Utc>) -> u64 {
        let now = u64::try_from(now.timestamp()).unwrap_or(0);
        (self.issued_at + u64::from(self.lifetime_secs)).saturating_sub(now)
    }
}

/// Reads the metadata of `state`, stored under backend key `key` for
/// `protocol`, opening it with `keys` if it is sealed and keys are given.
///
/// ```
/// use chrono::Utc;
/// use h3fleet::cache::{summarize_session, Protocol, TlsSessionState};
///
/// let garbage = TlsSessionState { ticket: "AA==".into(), state: "AA==".into(), created_at: Utc::now() };
/// let summary = summarize_session(&garbage, "h3fleet:sessions:default:h3:a:443", Protocol::H3, None);
/// assert!(summary.envelope.is_none() && summary.unreadable.is_some());
/// ```
pub fn summarize_session(
    state: &TlsSessionState,
    key: &str,
    protocol: Protocol,
    keys: Option<&CacheKeys>,
) -> SessionSummary {
    let raw = BASE64.decode(&state.state).unwrap_or_default();
    let sealed_with = sealing_key_id(&raw);
    let sealing = Sealing::new(keys.cloned(), true);
    let (envelope, unreadable) = match CachedSession::open_state(state, protocol, &sealing, key) {
        Ok(session) => {
            let e = session.envelope;
            let summary = EnvelopeSummary {
                protocol: e.protocol,
                alpn: String::from_utf8_lossy(&e.alpn).into_owned(),
                issued_at: e.issued_at,
                lifetime_secs: e.lifetime_secs,
                early_data: e.early_data,
                ech_bound: e.ech,
            };
            (Some(summary), None)
        }
        Err(e) => (None, Some(e.to_string())),
    };
    SessionSummary {
        created_at: state.created_at,
        sealed_with,
        envelope,
        unreadable,
    }
}

/// The id of the fleet key that sealed a stored ECH config, `None` if it is
/// stored as it is.
pub fn ech_sealed_with(stored: &[u8]) -> Option<String> {
    sealing_key_id(stored)
}
