//! The cache key parser: never panics, and what it reads is what the
//! writer writes: writing a parsed key and parsing it again gives the same.
#![no_main]

use h3fleet::cache::{KeyFormat, ParsedKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let keys = KeyFormat::default();
    let Ok(parsed) = keys.parse(text) else {
        return;
    };
    let written = match &parsed {
        ParsedKey::Session {
            id,
            preset,
            protocol,
            host,
            port,
        } => keys.session(id.as_deref(), preset, *protocol, host, *port),
        ParsedKey::Ech { preset, host, port } => keys.ech(preset, host, *port),
    };
    assert_eq!(keys.parse(&written).as_ref(), Ok(&parsed), "{text:?} -> {written:?}");
});
