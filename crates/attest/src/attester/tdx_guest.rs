//! The TDX guest device, `/dev/tdx_guest` (`<linux/tdx-guest.h>`).
//!
//! Its only attestation ioctl, TDX_CMD_GET_REPORT0, returns a TDREPORT: a structure MACed
//! with a key only this CPU holds, so only the local platform (its quoting enclave) can check
//! it. A remotely verifiable quote needs the TDREPORT converted by a quoting service, which
//! the kernel does through configfs-tsm; [`TdxGuest`] therefore offers the TDREPORT itself and
//! reports an actionable error for evidence.

use std::path::PathBuf;

use super::error::AttesterError;
use super::ioctl::{self, iowr};
use super::sev_guest::open_device;
use super::{Attester, AttesterKind, Evidence};
use crate::TeeKind;

/// The device, relative to the root.
pub(crate) const TDX_GUEST: &str = "dev/tdx_guest";
/// The length of a TDREPORT.
pub const TDREPORT_LEN: usize = 1024;
/// `sizeof(struct tdx_report_req)`: `reportdata[64]` then `tdreport[1024]`.
pub const TDX_REPORT_REQ_LEN: usize = 64 + TDREPORT_LEN;
/// `TDX_CMD_GET_REPORT0`.
pub const TDX_CMD_GET_REPORT0: u64 = iowr(b'T', 1, TDX_REPORT_REQ_LEN);

/// TDREPORTs through `/dev/tdx_guest`; see the module docs for why not quotes.
#[derive(Debug, Clone)]
pub struct TdxGuest {
    root: PathBuf,
}

impl TdxGuest {
    /// An attester for `<root>/dev/tdx_guest` (production root: `/`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The device path.
    pub fn device(&self) -> PathBuf {
        self.root.join(TDX_GUEST)
    }

    /// The TDREPORT binding `report_data` (TDX_CMD_GET_REPORT0). Only the local platform can
    /// verify it.
    pub fn tdreport(
        &self,
        report_data: &[u8; 64],
    ) -> Result<Box<[u8; TDREPORT_LEN]>, AttesterError> {
        let path = self.device();
        let file = open_device(&path)?;
        let mut buf = Box::new([0u8; TDX_REPORT_REQ_LEN]);
        buf[..64].copy_from_slice(report_data);
        ioctl::tdx_get_report0(&file, &mut buf).map_err(|source| {
            if source.raw_os_error() == Some(libc::ENOTTY) {
                AttesterError::NotADevice { path: path.clone() }
            } else {
                AttesterError::Ioctl {
                    request: "TDX_CMD_GET_REPORT0",
                    path: path.clone(),
                    source,
                }
            }
        })?;
        let mut report = Box::new([0u8; TDREPORT_LEN]);
        report.copy_from_slice(&buf[64..]);
        Ok(report)
    }
}

impl Attester for TdxGuest {
    fn kind(&self) -> AttesterKind {
        AttesterKind::TdxGuest
    }

    fn tee(&self) -> TeeKind {
        TeeKind::Tdx
    }

    /// Always fails with [`AttesterError::TdxQuoteUnavailable`]: a quote needs configfs-tsm.
    fn evidence(&self, _report_data: &[u8; 64]) -> Result<Evidence, AttesterError> {
        Err(AttesterError::TdxQuoteUnavailable {
            path: self.device(),
        })
    }
}
