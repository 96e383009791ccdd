//! Certificates and CRLs in any encoding: parsing must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = attest::x509::Cert::from_der_or_pem(data);
    let _ = attest::x509::parse_pem_chain(data);
    let _ = attest::x509::Crl::parse(data);
});
