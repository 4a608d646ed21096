//! ECHConfigList validation: never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = h3fleet::ech::validate_ech_config_list(data);
});
