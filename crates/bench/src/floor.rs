//! The primitive floor: the signature verifications every verifier must do, timed in the same
//! run as the verifiers so that ratios compare like with like.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
    KeyPair as _,
};

/// One signature ready to be verified again and again.
pub(crate) struct Signed {
    algorithm: &'static signature::EcdsaVerificationAlgorithm,
    public: Vec<u8>,
    message: Vec<u8>,
    signature: Vec<u8>,
}

impl Signed {
    fn new(
        signing: &'static signature::EcdsaSigningAlgorithm,
        algorithm: &'static signature::EcdsaVerificationAlgorithm,
        len: usize,
    ) -> anyhow::Result<Self> {
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::generate(signing).map_err(|_| anyhow::anyhow!("keygen"))?;
        let message = vec![0x5a; len];
        let signature = key
            .sign(&rng, &message)
            .map_err(|_| anyhow::anyhow!("sign"))?;
        Ok(Self {
            algorithm,
            public: key.public_key().as_ref().to_vec(),
            message,
            signature: signature.as_ref().to_vec(),
        })
    }

    /// One verification.
    pub(crate) fn verify(&self) -> Result<(), aws_lc_rs::error::Unspecified> {
        signature::UnparsedPublicKey::new(self.algorithm, &self.public)
            .verify(&self.message, &self.signature)
    }
}

/// ECDSA-P256-SHA256 over 384 bytes (a DCAP quote body's size).
pub(crate) fn p256() -> anyhow::Result<Signed> {
    Signed::new(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        &signature::ECDSA_P256_SHA256_FIXED,
        384,
    )
}

/// ECDSA-P384-SHA384 over 672 bytes (the signed part of an SNP report).
pub(crate) fn p384() -> anyhow::Result<Signed> {
    Signed::new(
        &ECDSA_P384_SHA384_FIXED_SIGNING,
        &signature::ECDSA_P384_SHA384_FIXED,
        0x2A0,
    )
}
