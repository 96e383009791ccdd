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

pub mod amd;
pub mod azure;
pub mod intel;
mod options;
mod platform;

pub use options::{SimOptions, Simulated, simulate};
pub use platform::SimPlatform;

/// The marker extension every simulated certificate carries (a UTF-8 note, DER).
pub(crate) fn marker_extension() -> Result<rcgen::CustomExtension, SimError> {
    let value = marker_value()?;
    Ok(rcgen::CustomExtension::from_oid_content(
        &MARKER_OID_ARCS,
        value,
    ))
}

/// The DER value of the marker extension.
pub(crate) fn marker_value() -> Result<Vec<u8>, SimError> {
    use der::Encode as _;
    der::asn1::Utf8StringRef::new("cloister simulation: not hardware evidence")
        .and_then(|s| s.to_der())
        .map_err(|e| SimError::Cert(e.to_string()))
}

/// [`crate::anchor::SIMULATION_MARKER_OID`] as arcs.
pub(crate) const MARKER_OID_ARCS: [u64; 9] = [1, 3, 6, 1, 4, 1, 57264, 1, 1];

/// RFC 3339 with whole seconds, the way Intel PCS and AMD KDS write times.
pub(crate) fn pcs_time(t: time::OffsetDateTime) -> String {
    let t = t.replace_nanosecond(0).unwrap_or(t);
    crate::x509::rfc3339(t)
}
