//! The front door: detection, parsing and verification of arbitrary evidence never panic.
#![no_main]

use attest::evidence::{Inputs, Verifiers, inspect};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = inspect(data, None);
    let now = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    let _ = Verifiers::production().verify(data, &Inputs::default(), now);
});
