//! Gramine's `/dev/attestation` pseudo-filesystem inside an SGX enclave.
//!
//! Writing 64 bytes to `user_report_data` and then reading `quote` yields an SGX DCAP quote
//! (v3) whose REPORTDATA is those bytes, provided the manifest selected DCAP attestation, which
//! `attestation_type` reports.

use std::path::PathBuf;

use zeroize::Zeroizing;

use super::error::AttesterError;
use super::{Attester, AttesterKind, Evidence, fsio};
use crate::TeeKind;

/// The pseudo-filesystem, relative to the root.
pub(crate) const ATTESTATION_DIR: &str = "dev/attestation";

/// SGX DCAP quotes through Gramine's `/dev/attestation`.
#[derive(Debug, Clone)]
pub struct Gramine {
    root: PathBuf,
}

impl Gramine {
    /// An attester for `<root>/dev/attestation` (production root: `/`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The `/dev/attestation` directory.
    pub fn dir(&self) -> PathBuf {
        self.root.join(ATTESTATION_DIR)
    }

    /// Check that Gramine is set up for DCAP (`attestation_type` reads `dcap`).
    pub fn check_type(&self) -> Result<(), AttesterError> {
        let path = self.dir().join("attestation_type");
        let found = fsio::read_text(&path)?;
        if found == "dcap" {
            Ok(())
        } else {
            Err(AttesterError::WrongAttestationType { path, found })
        }
    }
}

/// Gramine's MRSIGNER sealing key (EGETKEY with the signer, product ID and SVN): it survives
/// upgrades of the enclave by the same signer, as MarbleRun's product key does.
const SEALING_KEY: &str = "keys/_sgx_mrsigner";

impl Attester for Gramine {
    fn kind(&self) -> AttesterKind {
        AttesterKind::Gramine
    }

    fn tee(&self) -> TeeKind {
        TeeKind::Sgx
    }

    fn evidence(&self, report_data: &[u8; 64]) -> Result<Evidence, AttesterError> {
        self.check_type()?;
        let dir = self.dir();
        fsio::write(&dir.join("user_report_data"), report_data)?;
        let quote_path = dir.join("quote");
        let bytes = fsio::read(&quote_path)?;
        if bytes.is_empty() {
            return Err(AttesterError::Malformed {
                what: "Gramine quote",
                reason: format!("{} is empty", quote_path.display()),
            });
        }
        Ok(Evidence {
            tee: TeeKind::Sgx,
            bytes,
            aux: Vec::new(),
        })
    }

    fn sealing_key(&self) -> Result<Zeroizing<Vec<u8>>, AttesterError> {
        let path = self.dir().join(SEALING_KEY);
        let key = Zeroizing::new(fsio::read(&path)?);
        if key.len() != 16 {
            return Err(AttesterError::Malformed {
                what: "Gramine sealing key",
                reason: format!("{} holds {} bytes, expected 16", path.display(), key.len()),
            });
        }
        Ok(key)
    }
}
