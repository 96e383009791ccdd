//! Why an SNP report was not accepted.

use crate::x509::CertError;

/// Why an SNP report, VEK or chain was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnpError {
    /// The report is shorter than 1184 bytes.
    #[error("the SNP report is {len} bytes; an attestation report is 1184 (0x4A0) bytes")]
    TooShort {
        /// Bytes supplied.
        len: usize,
    },
    /// A report version we do not know.
    #[error("SNP report version {version} is not supported (2, 3 and 5 are)")]
    UnsupportedVersion {
        /// The version field.
        version: u32,
    },
    /// A reserved field holds non-zero bytes.
    #[error(
        "reserved bytes at offset {offset:#x} of the SNP report are not zero: the report is corrupt or forged"
    )]
    ReservedNotZero {
        /// Offset of the first non-zero reserved byte.
        offset: usize,
    },
    /// The signature algorithm is not ECDSA P-384 with SHA-384.
    #[error("SNP report signature algorithm {algo} is not supported (1 = ECDSA P-384/SHA-384)")]
    UnsupportedSignatureAlgorithm {
        /// The SIG_ALGO field.
        algo: u32,
    },
    /// The signature's R or S does not fit P-384.
    #[error("the SNP report signature is malformed (R or S exceeds 48 bytes)")]
    MalformedSignature,
    /// The report's signature does not verify under the VEK.
    #[error(
        "the SNP report signature does not verify under the VEK: the report was altered or the VEK belongs to another chip or TCB"
    )]
    BadSignature,
    /// The VEK could not be parsed or lacks an AMD extension.
    #[error("the VEK certificate is not usable: {reason}")]
    BadVek {
        /// What is wrong.
        reason: String,
    },
    /// The report says VCEK but a VLEK was supplied, or the reverse.
    #[error(
        "the report is signed by a {expected}, but the supplied certificate is a {supplied}: supply the {expected}"
    )]
    WrongKeyType {
        /// What KEY_INFO says.
        expected: &'static str,
        /// What was supplied.
        supplied: &'static str,
    },
    /// The report is not signed by any VEK (KEY_INFO says "none").
    #[error("the report is not signed (KEY_INFO signing key {value})")]
    Unsigned {
        /// The SIGNING_KEY field.
        value: u32,
    },
    /// The chain was not supplied or is incomplete.
    #[error(
        "the AMD chain is incomplete: {reason}; supply the ASK (or ASVK) and ARK of the product line as PEM (the KDS cert_chain file)"
    )]
    BadChain {
        /// What is missing.
        reason: String,
    },
    /// The certificate chain does not verify.
    #[error("the AMD certificate chain does not verify: {0}")]
    Chain(#[source] CertError),
    /// REPORTED_TCB differs from the VEK's TCB extensions.
    #[error(
        "REPORTED_TCB ({report}) differs from the VEK's TCB ({vek}): fetch the VEK for this TCB"
    )]
    TcbMismatch {
        /// The report's REPORTED_TCB.
        report: String,
        /// The VEK's TCB extensions.
        vek: String,
    },
    /// CHIP_ID differs from the VCEK's hwID.
    #[error("CHIP_ID differs from the VCEK's hwID: the VCEK belongs to another chip")]
    ChipIdMismatch,
    /// The VEK's product line differs from the report's CPU.
    #[error("the report comes from an AMD {report} CPU but the VEK is for {vek}")]
    ProductMismatch {
        /// Product from the report's CPUID.
        report: String,
        /// Product named by the VEK.
        vek: String,
    },
}
