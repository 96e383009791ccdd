//! Why a DCAP quote or its collateral was not accepted.

use crate::x509::CertError;

/// Why a DCAP quote, its PCK chain or its collateral was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DcapError {
    /// The quote ends before a structure it announces.
    #[error("the quote is truncated: {what} at offset {offset} runs past the end")]
    Truncated {
        /// The structure being read.
        what: &'static str,
        /// Where it starts.
        offset: usize,
    },
    /// The quote is inconsistent.
    #[error("the quote is malformed: {reason}")]
    Malformed {
        /// What is inconsistent.
        reason: String,
    },
    /// Quote versions other than 3, 4 and 5.
    #[error("quote version {version} is not supported (3, 4 and 5 are)")]
    UnsupportedVersion {
        /// The version field.
        version: u16,
    },
    /// An attestation key type other than ECDSA-256 with P-256.
    #[error("attestation key type {att_key_type} is not supported (2 = ECDSA P-256 is)")]
    UnsupportedKeyType {
        /// The key type field.
        att_key_type: u16,
    },
    /// A TEE type other than SGX (0) or TDX (0x81).
    #[error("TEE type {tee_type:#x} is not supported (0 = SGX, 0x81 = TDX)")]
    UnsupportedTeeType {
        /// The TEE type field.
        tee_type: u32,
    },
    /// A v5 body type other than 1, 2 or 3.
    #[error("quote v5 body type {body_type} is not supported (1 SGX, 2 TD 1.0, 3 TD 1.5)")]
    UnsupportedBodyType {
        /// The body type.
        body_type: u16,
    },
    /// Certification data other than a PEM PCK chain (5) inside QE report data (6).
    #[error(
        "certification data type {cert_type} is not supported: the quote must embed its PCK chain (type 5, inside type 6 for v4/v5)"
    )]
    UnsupportedCertificationData {
        /// The type found.
        cert_type: u16,
    },
    /// The PCK certificate chain embedded in the quote does not verify.
    #[error("the PCK certificate chain does not verify: {0}")]
    PckChain(#[source] CertError),
    /// The PCK certificate lacks a well-formed SGX extension.
    #[error("the PCK certificate's SGX extension is unusable: {reason}")]
    PckExtension {
        /// What is wrong.
        reason: String,
    },
    /// A piece of collateral was not supplied.
    #[error("no {what} was supplied: {hint}")]
    CollateralMissing {
        /// The missing piece.
        what: &'static str,
        /// What to add.
        hint: String,
    },
    /// A collateral file could not be read.
    #[error("the {what} is malformed: {reason}")]
    CollateralMalformed {
        /// Which piece.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// The TCB-signing chain does not verify.
    #[error("the TCB signing chain does not verify: {0}")]
    TcbSigningChain(#[source] CertError),
    /// The signature over TCB info or QE identity does not verify.
    #[error(
        "the signature on the {what} does not verify: the JSON was altered after signing, or it was re-serialized (use the exact PCS response text)"
    )]
    CollateralSignature {
        /// Which piece.
        what: &'static str,
    },
    /// The collateral is not yet valid.
    #[error(
        "the {what} is issued at {issue_date}, after the verification time {now}: use collateral from before that time"
    )]
    CollateralNotYetValid {
        /// Which piece.
        what: &'static str,
        /// issueDate.
        issue_date: String,
        /// The verification time.
        now: String,
    },
    /// The collateral has expired.
    #[error(
        "the {what} expired at {next_update} (verification time {now}): fetch current collateral from Intel PCS"
    )]
    CollateralExpired {
        /// Which piece.
        what: &'static str,
        /// nextUpdate.
        next_update: String,
        /// The verification time.
        now: String,
    },
    /// TCB info is for another platform.
    #[error(
        "the TCB info is for FMSPC {collateral} but the PCK certificate says {quote}: fetch TCB info for FMSPC {quote}"
    )]
    FmspcMismatch {
        /// FMSPC in the PCK certificate.
        quote: String,
        /// FMSPC in the TCB info.
        collateral: String,
    },
    /// TCB info is for another PCE.
    #[error("the TCB info is for PCE-ID {collateral} but the PCK certificate says {quote}")]
    PceIdMismatch {
        /// PCE-ID in the PCK certificate.
        quote: String,
        /// PCE-ID in the TCB info.
        collateral: String,
    },
    /// TCB info or QE identity of the wrong kind (SGX vs TDX, QE vs TD_QE).
    #[error("the {what} is {found:?}, but a {expected:?} one is needed for this quote")]
    WrongCollateralKind {
        /// Which piece.
        what: &'static str,
        /// The id needed.
        expected: &'static str,
        /// The id found.
        found: String,
    },
    /// The QE report is not signed by the PCK key.
    #[error(
        "the QE report signature does not verify under the PCK key: the QE report was altered or the PCK chain belongs to another platform"
    )]
    QeReportSignature,
    /// The QE report does not bind the attestation key.
    #[error(
        "the QE report does not bind the attestation key (REPORTDATA != SHA-256(key || QE auth data)): the quote was assembled from parts"
    )]
    AttestationKeyBinding,
    /// The QE is not the one Intel's QE identity describes.
    #[error("the quoting enclave does not match the QE identity: {field} differs")]
    QeIdentityMismatch {
        /// The mismatching field.
        field: &'static str,
    },
    /// The QE's ISVSVN is below every level of the QE identity.
    #[error(
        "the quoting enclave's ISVSVN {isv_svn} is below every TCB level in the QE identity: update the platform software"
    )]
    QeTcbNotFound {
        /// The QE's ISVSVN.
        isv_svn: u16,
    },
    /// The quote's signature does not verify under the attestation key.
    #[error(
        "the quote signature does not verify under the attestation key: the report body or header was altered"
    )]
    QuoteSignature,
    /// No TCB level of the TCB info is met by the platform.
    #[error(
        "No matching TCB level found: the platform's TCB is below every level in the TCB info (TCB not supported); update the platform"
    )]
    TcbLevelNotFound,
    /// The platform's (or QE's) TCB level is revoked.
    #[error("the TCB status is Revoked: this platform's keys must not be trusted")]
    TcbRevoked,
    /// The TDX module is not the one the TCB info describes.
    #[error("the TDX module does not match the TCB info: {reason}")]
    TdxModule {
        /// What differs.
        reason: String,
    },
}
