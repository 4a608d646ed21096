//! The `state` envelope decoder: never panics; what decodes re-encodes to
//! the same bytes.
#![no_main]

use h3fleet::cache::Envelope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = Envelope::decode(data) {
        let again = envelope.encode().expect("a decoded envelope encodes");
        assert_eq!(Envelope::decode(&again).as_ref(), Ok(&envelope));
    }
});
