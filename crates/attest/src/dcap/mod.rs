//! Intel DCAP: SGX quote v3, TDX quote v4/v5, PCS collateral, and their verification.
//!
//! Verification follows Intel's chain of trust: the PCK chain embedded in the quote ends in the
//! pinned Intel SGX Root CA and is checked against the PCK and Root CA CRLs; TCB info and QE
//! identity are signed by the TCB-signing key; the QE report is signed by the PCK key and binds
//! the attestation key; the attestation key signs the quote. The platform's TCB level is matched
//! from the PCK certificate's SVNs (and, for TDX, TEE_TCB_SVN and the TDX module identity) and
//! converged with the QE's. Everything is checked at an explicit time.

mod collateral;
mod error;
mod pck;
mod quote;
mod tcb;
mod verify;

pub use collateral::{Collateral, QeIdentity, SignedJson, TcbInfo, TcbLevel, to_pem_string};
pub use error::DcapError;
pub use pck::PckExtensions;
pub use quote::{Body, CertificationData, EnclaveReport, Header, Quote, TdReport};
pub use verify::DcapVerifier;
