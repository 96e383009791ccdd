//! The trust core of cloister: turns hardware evidence into claims that are true.
//!
//! * [`dcap`] parses SGX quote v3 and TDX quote v4/v5, the Intel PCS collateral, and verifies a
//!   quote end to end (PCK chain, CRLs, TCB info, QE identity, signatures, TCB level).
//! * [`snp`] parses SEV-SNP attestation reports (v2, v3, v5; Milan, Genoa, Turin) and verifies
//!   them against the ARK → ASK/ASVK → VCEK/VLEK chain.
//! * [`azure`] verifies Azure confidential-VM vTPM evidence (HCL report, TPM quote, and the SNP
//!   report or TD quote inside it).
//! * [`eventlog`] replays a TDX CCEL event log to RTMR values.
//! * [`policy`] is the appraisal over verified [`Claims`]: debug, TCB status, advisories, SVNs.
//! * [`sim`] produces evidence in the real formats, signed under a locally generated hierarchy.
//! * [`attester`] obtains evidence on this machine (configfs-tsm, `/dev/sev-guest`,
//!   `/dev/tdx_guest`, Gramine's `/dev/attestation`, or simulation).
//!
//! Verification time is always an explicit argument: nothing here reads the clock.
#![deny(unsafe_code)]

pub mod anchor;
pub mod attester;
pub mod azure;
pub mod claims;
pub mod crypto;
pub mod dcap;
pub mod encoding;
pub mod eventlog;
pub mod evidence;
pub mod hexser;
pub mod policy;
pub mod sim;
pub mod snp;
pub mod x509;

pub use anchor::TrustAnchor;
pub use claims::{Claims, Measurements, TcbStatus, TeeKind};
pub use encoding::{InputEncoding, decode_input};
pub use policy::Policy;
