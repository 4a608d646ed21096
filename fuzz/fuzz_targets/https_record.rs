//! A DNS HTTPS record's wire form, read as the resolver and h3fleet read
//! it (and any ECHConfigList in it validated): never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    h3fleet::ech::fuzz_https_rdata(data);
});
