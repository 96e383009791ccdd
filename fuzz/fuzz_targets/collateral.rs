//! Collateral files (combined JSON, PCS responses, CRLs, chains) and the signed JSON inside.
#![no_main]

use attest::dcap::{Collateral, QeIdentity, TcbInfo};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Collateral::from_files(&[("fuzz", data)]);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = TcbInfo::parse(text);
        let _ = QeIdentity::parse(text);
    }
});
