//! Attesters: obtain evidence for given report data on this machine.
//!
//! An [`Attester`] asks the local TEE for evidence that binds 64 bytes of report data. The
//! implementations talk to the interfaces Linux and Gramine expose:
//!
//! * [`ConfigfsTsm`]: `/sys/kernel/config/tsm/report` (Linux 6.7+), TDX quotes and SNP reports.
//!   Preferred whenever present.
//! * [`SevGuest`]: the `/dev/sev-guest` ioctls, SNP reports plus the certificate table.
//! * [`TdxGuest`]: `/dev/tdx_guest`, which yields only a TDREPORT (see its docs).
//! * [`Gramine`]: Gramine's `/dev/attestation` pseudo-files, SGX DCAP quotes.
//!
//! Every implementation takes a root directory (production: `/`) under which it finds its
//! files, so it can be exercised against a fake file tree. [`detect`] picks the best attester
//! for a root and explains, in actionable words, why none is usable when that is the case.

mod configfs;
mod detect;
mod error;
mod fsio;
mod gramine;
mod ioctl;
pub mod sev_guest;
mod simulated;
pub mod tdx_guest;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::dcap::to_pem_string;
use crate::evidence::Inputs;
use crate::snp::cert_table::CertKind;
use crate::{TeeKind, hexser};

pub use configfs::{ConfigfsTsm, TsmHooks};
pub use detect::{Detection, Probe, ProbeOutcome, Selected, detect};
pub use error::AttesterError;
pub use gramine::Gramine;
pub use sev_guest::SevGuest;
pub use simulated::{SimMeasurements, SimulatedAttester};
pub use tdx_guest::TdxGuest;

/// Obtains hardware evidence on the machine it runs on.
///
/// Implementations are cheap handles (they hold paths, not open files), so one can be shared
/// between threads; each [`Attester::evidence`] call is an independent request.
pub trait Attester: Send + Sync + std::fmt::Debug {
    /// Which mechanism this attester uses.
    fn kind(&self) -> AttesterKind;

    /// The TEE whose evidence this attester produces.
    fn tee(&self) -> TeeKind;

    /// Evidence binding `report_data` (the REPORTDATA of a quote, REPORT_DATA of an SNP report).
    fn evidence(&self, report_data: &[u8; 64]) -> Result<Evidence, AttesterError>;

    /// Evidence binding `data` (at most 64 bytes): hardware reports carry it zero-padded in
    /// their report data, a vTPM quote exactly, as its nonce (CoCo binds runtime data so).
    fn evidence_for(&self, data: &[u8]) -> Result<Evidence, AttesterError> {
        self.evidence(&padded(data)?)
    }

    /// A secret only this TEE, running this software, can derive: the root of a sealing key.
    /// By default the mechanism has none.
    fn sealing_key(&self) -> Result<Zeroizing<Vec<u8>>, AttesterError> {
        Err(AttesterError::NoSealingKey {
            mechanism: self.kind().as_str(),
            hint: "run on SEV-SNP (/dev/sev-guest) or in a Gramine SGX enclave",
        })
    }
}

/// `data` zero-padded to a 64-byte report data field.
pub(crate) fn padded(data: &[u8]) -> Result<[u8; 64], AttesterError> {
    let mut out = [0u8; 64];
    out.get_mut(..data.len())
        .ok_or_else(|| AttesterError::Malformed {
            what: "report data",
            reason: format!("{} bytes; at most 64 fit", data.len()),
        })?
        .copy_from_slice(data);
    Ok(out)
}

/// The mechanism an attester uses to obtain evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum AttesterKind {
    /// Linux configfs-tsm, `/sys/kernel/config/tsm/report`.
    ConfigfsTsm,
    /// The SEV-SNP guest device, `/dev/sev-guest`.
    SevGuest,
    /// The TDX guest device, `/dev/tdx_guest`.
    TdxGuest,
    /// Gramine's `/dev/attestation` pseudo-filesystem.
    Gramine,
    /// Simulated evidence under a locally generated hierarchy.
    Simulated,
}

impl AttesterKind {
    /// The name used on the command line and in JSON (`configfs-tsm`, `sev-guest`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConfigfsTsm => "configfs-tsm",
            Self::SevGuest => "sev-guest",
            Self::TdxGuest => "tdx-guest",
            Self::Gramine => "gramine",
            Self::Simulated => "simulated",
        }
    }
}

impl std::fmt::Display for AttesterKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Evidence as the TEE produced it, with what a verifier needs beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// The TEE, which also fixes the format of `bytes`: an SGX quote v3, a TDX quote v4/v5 or
    /// an SNP attestation report.
    pub tee: TeeKind,
    /// The evidence itself, unmodified.
    #[serde(with = "hexser")]
    pub bytes: Vec<u8>,
    /// Auxiliary blobs obtained alongside, at most one per kind.
    #[serde(default)]
    pub aux: Vec<AuxBlob>,
}

impl Evidence {
    /// What a verifier needs beside the evidence, taken from the auxiliary blobs: DCAP
    /// collateral, and the VCEK/VLEK with its chain from an SNP certificate table.
    pub fn verification_inputs(&self) -> Inputs {
        let mut inputs = Inputs {
            tee: Some(self.tee),
            ..Inputs::default()
        };
        if let Some(json) = self.aux(AuxKind::Collateral) {
            inputs
                .collateral
                .push(("collateral.json".to_string(), json.to_vec()));
        }
        if let Some(table) = self.aux(AuxKind::SnpCertTable)
            && let Ok(certs) = crate::snp::cert_table::parse(table)
        {
            let mut chain = String::new();
            for (kind, der) in certs {
                match kind {
                    CertKind::Vcek | CertKind::Vlek => inputs.vek = Some(der),
                    CertKind::Ask => chain.insert_str(0, &to_pem_string(&der)),
                    CertKind::Ark => chain.push_str(&to_pem_string(&der)),
                    _ => {}
                }
            }
            if !chain.is_empty() {
                inputs.chain = Some(chain.into_bytes());
            }
        }
        inputs
    }

    /// The auxiliary blob of `kind`, if one was obtained.
    pub fn aux(&self, kind: AuxKind) -> Option<&[u8]> {
        self.aux
            .iter()
            .find(|a| a.kind == kind)
            .map(|a| a.bytes.as_slice())
    }
}

/// A blob a verifier may need beside the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuxBlob {
    /// What the blob is.
    pub kind: AuxKind,
    /// Its bytes, unmodified.
    #[serde(with = "hexser")]
    pub bytes: Vec<u8>,
}

/// Kinds of auxiliary blobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum AuxKind {
    /// The SNP certificate table from an extended report (GHCB spec, MSG_REPORT_REQ): GUID,
    /// offset, length entries followed by the certificates (VCEK or VLEK, ASK, ARK), when the
    /// host provisioned them.
    SnpCertTable,
    /// The TDX CCEL event log (`/sys/firmware/acpi/tables/data/CCEL`), which replays to RTMRs.
    TdxCcel,
    /// DCAP collateral as combined JSON (simulated platforms issue it with the quote).
    Collateral,
}

/// Where the TDX CCEL event log is exposed, relative to the root.
const CCEL_DATA: &str = "sys/firmware/acpi/tables/data/CCEL";

/// The CCEL event log, if this root exposes it and it is readable.
///
/// The log is optional: a quote verifies without it, only RTMR replay needs it. Reading it
/// requires root, so an unprivileged attester simply omits it.
fn read_ccel(root: &std::path::Path) -> Option<AuxBlob> {
    let bytes = std::fs::read(root.join(CCEL_DATA)).ok()?;
    (!bytes.is_empty()).then_some(AuxBlob {
        kind: AuxKind::TdxCcel,
        bytes,
    })
}
