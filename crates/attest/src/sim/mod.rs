//! Simulation: genuine-format evidence signed under a locally generated hierarchy.
//!
//! [`intel`] is a simulated Intel PCS (root CA, PCK CA, PCK certificates with SGX extensions,
//! TCB-signing key, TCB info, QE identity, CRLs) that signs SGX quote v3 and TDX quote v4.
//! [`amd`] is a simulated AMD KDS (ARK and ASK with RSA-PSS, VCEK on P-384 with TCB
//! extensions) that signs SNP report v5. Every certificate carries
//! [`crate::anchor::SIMULATION_MARKER_OID`], so simulated evidence can never pass for real.

/// Why simulation could not produce evidence.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// Key generation or signing failed in the crypto provider.
    #[error("simulation key operation failed: {0}")]
    Key(String),
    /// A certificate or CRL could not be built.
    #[error("simulation certificate generation failed: {0}")]
    Cert(String),
    /// A parameter is out of range.
    #[error("invalid simulation parameter: {0}")]
    Param(String),
    /// A saved hierarchy could not be read back.
    #[error("the saved simulation hierarchy is unreadable: {0}")]
    Persist(String),
}
