//! Azure vTPM evidence: HCL reports, TPM quotes and the evidence JSON never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = attest::azure::HclReport::parse(data);
    let _ = attest::azure::TpmQuote::parse(data, &[], Vec::new());
    if let Ok(evidence) = attest::azure::VtpmEvidence::parse(data) {
        let _ = evidence.inspect();
        let _ = evidence.hcl.attestation_key();
    }
});
