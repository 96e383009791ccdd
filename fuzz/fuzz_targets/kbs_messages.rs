//! Key-broker and API inputs a network peer controls: `/attest` bodies (and the runtime-data
//! binding over them), init-data TOML, JWE responses (decrypted by our client), activation
//! requests and their evidence bundles. Every malformed input must be an error, never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn key() -> &'static kbs::jwe::TeeKeyPair {
    static KEY: OnceLock<kbs::jwe::TeeKeyPair> = OnceLock::new();
    KEY.get_or_init(|| {
        kbs::jwe::TeeKeyPair::generate_ec(kbs::jwe::Curve::P256).expect("key generation")
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(attestation) = serde_json::from_slice::<kbs::Attestation>(data) {
        let runtime = &attestation.runtime_data;
        let _ = kbs::binding::runtime_data_digest(
            &runtime.nonce,
            &runtime.tee_pubkey,
            &attestation.tee_evidence.additional_evidence,
        );
        let _ = kbs::jwe::encrypt(b"resource", &runtime.tee_pubkey);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = kbs::initdata::parse("toml", text);
    }
    if let Ok(response) = serde_json::from_slice::<kbs::Response>(data) {
        let _ = key().decrypt(&response);
    }
    if let Ok(request) = serde_json::from_slice::<api::ActivationRequest>(data) {
        let _ = request.evidence.decode();
    }
});
