//! Sessions and stored states to feed the cache. The session bytes are
//! opaque to the cache, so any bytes do; the metadata is what it acts on.

use std::sync::{Arc, Mutex};

use chrono::Utc;
use h3fleet::cache::{BackendError, CachedSession, Envelope, ErrorCallback, Protocol, TlsSessionState};

/// A session for `protocol`, issued at `issued_at` (Unix seconds) with
/// `lifetime_secs`, whose ticket is `ticket`.
pub fn session(protocol: Protocol, ticket: &[u8], issued_at: u64, lifetime_secs: u32) -> CachedSession {
    CachedSession {
        ticket: ticket.to_vec(),
        envelope: Envelope {
            protocol,
            session: [b"session-for-".as_slice(), ticket].concat(),
            lifetime_secs,
            issued_at,
            alpn: match protocol {
                Protocol::H1 => b"http/1.1".to_vec(),
                Protocol::H2 => b"h2".to_vec(),
                Protocol::H3 => b"h3".to_vec(),
            },
            early_data: protocol == Protocol::H3,
            ech: false,
            transport_params: if protocol == Protocol::H3 {
                vec![0x04, 0x01, 0x10]
            } else {
                vec![]
            },
        },
    }
}

/// A session issued now with a two-hour lifetime.
pub fn fresh(protocol: Protocol, ticket: &[u8]) -> CachedSession {
    session(protocol, ticket, Utc::now().timestamp().try_into().unwrap(), 7200)
}

/// A stored state whose JSON is valid (for the backend) and content arbitrary.
pub fn state(ticket: &str, state: &str) -> TlsSessionState {
    TlsSessionState {
        ticket: ticket.to_owned(),
        state: state.to_owned(),
        created_at: Utc::now(),
    }
}

/// What a recording callback saw: `(operation, key, error text)` per call.
pub type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

/// An error callback that records every call.
pub fn recording_callback() -> (ErrorCallback, Seen) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let cb: ErrorCallback = Arc::new(move |op: &str, key: &str, err: &BackendError| {
        sink.lock()
            .unwrap()
            .push((op.to_owned(), key.to_owned(), err.to_string()));
    });
    (cb, seen)
}
