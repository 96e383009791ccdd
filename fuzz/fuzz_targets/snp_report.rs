//! SEV-SNP reports and VEK certificates: parsing never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = attest::snp::Report::parse(data) {
        let _ = report.signature_rs();
        let _ = report.product();
    }
    let _ = attest::snp::Vek::parse(data);
    let _ = attest::snp::cert_table::parse(data);
});
