//! The few signature and hash primitives the verifiers need, on aws-lc-rs.

use aws_lc_rs::{digest, signature};

/// A signature check failed or a key could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signature does not verify")]
pub struct BadSignature;

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// SHA-384 of `data`.
pub fn sha384(data: &[u8]) -> [u8; 48] {
    let d = digest::digest(&digest::SHA384, data);
    let mut out = [0u8; 48];
    out.copy_from_slice(d.as_ref());
    out
}

/// SHA-512 of `data`.
pub fn sha512(data: &[u8]) -> [u8; 64] {
    let d = digest::digest(&digest::SHA512, data);
    let mut out = [0u8; 64];
    out.copy_from_slice(d.as_ref());
    out
}

/// Verify an ECDSA-P256-SHA256 signature given as raw `r || s` (64 bytes, big-endian) with a
/// public key given as the raw `x || y` coordinates (64 bytes), the forms DCAP quotes use.
pub fn verify_p256_raw(key_xy: &[u8], message: &[u8], sig_rs: &[u8]) -> Result<(), BadSignature> {
    if key_xy.len() != 64 || sig_rs.len() != 64 {
        return Err(BadSignature);
    }
    let mut point = [0u8; 65];
    point[0] = 0x04;
    point[1..].copy_from_slice(key_xy);
    signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &point[..])
        .verify(message, sig_rs)
        .map_err(|_| BadSignature)
}

/// Verify an ECDSA-P384-SHA384 signature given as raw `r || s` (96 bytes, big-endian) with an
/// uncompressed SEC1 point.
pub fn verify_p384_point(point: &[u8], message: &[u8], sig_rs: &[u8]) -> Result<(), BadSignature> {
    signature::UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
        .verify(message, sig_rs)
        .map_err(|_| BadSignature)
}

/// Verify RSASSA-PKCS1-v1_5 with SHA-256 given the modulus and exponent (big-endian bytes), as a
/// TPM quote signed by a JWK-described attestation key is.
pub fn verify_rsa_pkcs1_sha256(
    n: &[u8],
    e: &[u8],
    message: &[u8],
    sig: &[u8],
) -> Result<(), BadSignature> {
    signature::RsaPublicKeyComponents { n, e }
        .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, sig)
        .map_err(|_| BadSignature)
}
