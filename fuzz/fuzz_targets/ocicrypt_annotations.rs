//! ocicrypt's annotations and wrapped options as a registry or a recipient hands them over:
//! public options, the attestation-agent packet (opened with a fixed key), private options and
//! JWE documents (tried without a key that opens them). None may panic.
#![no_main]

use image::ocicrypt::jwe;
use image::ocicrypt::provider::AnnotationPacket;
use image::ocicrypt::{PrivateOptions, decode_public};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = decode_public(text);
    }
    if let Ok(packet) = AnnotationPacket::parse(data) {
        let _ = packet.key_id();
        let _ = packet.open(&[7; 32]);
    }
    if let Ok(private) = PrivateOptions::from_json(data) {
        let _ = image::ocicrypt::cipher::LayerKey::from_private(&private);
    }
    let _ = jwe::unwrap(data, &[]);
});
