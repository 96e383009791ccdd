//! SGX and TDX quotes: parsing never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = attest::dcap::Quote::parse(data);
});
