//! AMD SEV-SNP: attestation reports, VCEK/VLEK certificates, and their verification.
//!
//! A report is verified against the chain ARK → ASK (VCEK) or ARK → ASVK (VLEK) → VEK: every
//! certificate inside its validity at the verification time (stricter than the `sev` crate,
//! which checks no dates), the report's P-384 signature over its first 0x2A0 bytes, and the
//! binding of the report to the VEK: REPORTED_TCB equals the VEK's TCB extensions and CHIP_ID
//! equals its hwID.

pub mod cert_table;
pub mod coco;
mod error;
mod report;
mod vek;
mod verify;

pub use error::SnpError;
pub use report::{Product, REPORT_LEN, Report, SIGNED_LEN, SigningKey, TcbVersion};
pub use vek::Vek;
pub use verify::SnpVerifier;
