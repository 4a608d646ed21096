//! A backend value: the JSON `{"ticket","state","created_at"}` and the
//! stored session inside it. Never panics.
#![no_main]

use h3fleet::cache::{CachedSession, Protocol, TlsSessionState};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(state) = TlsSessionState::from_json("fuzz", data) {
        for protocol in [Protocol::H1, Protocol::H2, Protocol::H3] {
            let _ = CachedSession::from_state(&state, protocol);
        }
    }
});
