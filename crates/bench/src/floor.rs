//! The primitive floor: the signature verifications every verifier must do, timed in the same
//! run as the verifiers so that ratios compare like with like.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
    KeyPair as _,
};

use crate::harness::{Harness, Measured};

/// Floor measurements.
#[derive(Debug, Clone)]
pub(crate) struct Floor {
    /// One ECDSA-P256-SHA256 verify of a 384-byte message (a DCAP quote body's size).
    pub p256: Measured,
    /// One ECDSA-P384-SHA384 verify of 672 bytes (the signed part of an SNP report).
    pub p384: Measured,
}

/// Measure the floor.
pub(crate) fn measure(h: &Harness) -> anyhow::Result<Floor> {
    let rng = SystemRandom::new();
    let p256 = ecdsa_verify(
        h,
        &rng,
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        &signature::ECDSA_P256_SHA256_FIXED,
        384,
        "ECDSA P-256 verify",
    )?;
    let p384 = ecdsa_verify(
        h,
        &rng,
        &ECDSA_P384_SHA384_FIXED_SIGNING,
        &signature::ECDSA_P384_SHA384_FIXED,
        0x2A0,
        "ECDSA P-384 verify",
    )?;
    Ok(Floor { p256, p384 })
}

fn ecdsa_verify(
    h: &Harness,
    rng: &SystemRandom,
    signing: &'static signature::EcdsaSigningAlgorithm,
    verifying: &'static signature::EcdsaVerificationAlgorithm,
    len: usize,
    name: &str,
) -> anyhow::Result<Measured> {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(signing, rng)
        .map_err(|_| anyhow::anyhow!("key generation failed"))?;
    let key = EcdsaKeyPair::from_pkcs8(signing, pkcs8.as_ref())
        .map_err(|_| anyhow::anyhow!("key load failed"))?;
    let message = vec![0x5a; len];
    let sig = key
        .sign(rng, &message)
        .map_err(|_| anyhow::anyhow!("signing failed"))?;
    let public = key.public_key().as_ref().to_vec();
    h.measure(name, || {
        signature::UnparsedPublicKey::new(verifying, &public).verify(&message, sig.as_ref())
    })
}
