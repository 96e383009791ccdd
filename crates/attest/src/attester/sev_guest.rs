//! The SEV-SNP guest device, `/dev/sev-guest` (`<linux/sev-guest.h>`).
//!
//! The request and response encodings are pure functions, public so they can be checked
//! without SNP hardware; [`SevGuest`] issues the ioctls.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use super::error::{AttesterError, io_error};
use super::ioctl::{self, GuestRequestOutcome, iowr};
use super::{Attester, AttesterKind, AuxBlob, AuxKind, Evidence};
use crate::TeeKind;
use zeroize::{Zeroize as _, Zeroizing};

/// The device, relative to the root.
pub(crate) const SEV_GUEST: &str = "dev/sev-guest";

/// `sizeof(struct snp_report_req)`: `user_data[64]`, vmpl (u32), 28 reserved bytes.
pub const REPORT_REQ_LEN: usize = 96;
/// `sizeof(struct snp_ext_report_req)`: the report request, certs_address (u64), certs_len
/// (u32), and 4 bytes of tail padding.
pub const EXT_REPORT_REQ_LEN: usize = 112;
/// `sizeof(struct snp_report_resp)`: the buffer the kernel fills with MSG_REPORT_RSP.
pub const RESP_LEN: usize = 4000;
/// MSG_REPORT_RSP header: status (u32), report_size (u32), 24 reserved bytes.
pub const RESP_HEADER_LEN: usize = 32;
/// The size of an SNP attestation report (versions 2 to 5).
pub const REPORT_LEN: usize = 1184;
/// `SNP_GET_REPORT`.
pub const SNP_GET_REPORT: u64 = iowr(b'S', 0, 32);
/// `SNP_GET_EXT_REPORT`.
pub const SNP_GET_EXT_REPORT: u64 = iowr(b'S', 2, 32);
/// `SNP_GET_DERIVED_KEY`.
pub const SNP_GET_DERIVED_KEY: u64 = iowr(b'S', 1, 32);
/// `sizeof(struct snp_derived_key_req)`: root key select (u32), reserved (u32), guest field
/// select (u64), VMPL (u32), guest SVN (u32), TCB version (u64).
pub const DERIVED_KEY_REQ_LEN: usize = 32;
/// GUEST_FIELD_SELECT for sealing: the guest policy (bit 0) and the launch measurement
/// (bit 3), so only this exact guest image under this policy derives the key.
pub const SEALING_FIELDS: u64 = 1 | 1 << 3;
/// `SNP_GUEST_VMM_ERR_INVALID_LEN`: the certificate buffer is too small.
pub const VMM_ERR_INVALID_LEN: u32 = 1;
/// `SNP_GUEST_VMM_ERR_BUSY`: the hypervisor is throttling guest requests.
pub const VMM_ERR_BUSY: u32 = 2;

/// Page size; the kernel requires the certificate buffer length to be a multiple of it.
const PAGE: usize = 4096;
/// The certificate buffer tried first: four pages hold VCEK/VLEK, ASK and ARK.
const CERTS_INITIAL: usize = 4 * PAGE;
/// The most the kernel accepts (SEV_FW_BLOB_MAX_SIZE).
const CERTS_MAX: usize = 16 * PAGE;
/// One certificate table entry: GUID (16), offset (u32), length (u32).
const CERT_ENTRY_LEN: usize = 24;

/// Encode `struct snp_report_req`: the report data, then the VMPL, then zeroed reserved bytes.
pub fn encode_report_req(report_data: &[u8; 64], vmpl: u32) -> [u8; REPORT_REQ_LEN] {
    let mut req = [0u8; REPORT_REQ_LEN];
    req[..64].copy_from_slice(report_data);
    req[64..68].copy_from_slice(&vmpl.to_ne_bytes());
    req
}

/// Encode `struct snp_derived_key_req` for a key rooted in the VCEK (root key select 0),
/// mixing in `guest_field_select`, at `vmpl`.
pub fn encode_derived_key_req(vmpl: u32, guest_field_select: u64) -> [u8; DERIVED_KEY_REQ_LEN] {
    let mut req = [0u8; DERIVED_KEY_REQ_LEN];
    req[8..16].copy_from_slice(&guest_field_select.to_ne_bytes());
    req[16..20].copy_from_slice(&vmpl.to_ne_bytes());
    req
}

/// The 32-byte key of a MSG_KEY_RSP: status (u32) at 0, the key at 0x20.
pub fn decode_derived_key_resp(resp: &[u8]) -> Result<Zeroizing<Vec<u8>>, AttesterError> {
    let status = resp
        .get(..4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map(u32::from_le_bytes);
    let key = resp.get(0x20..0x40);
    match (status, key) {
        (Some(0), Some(key)) => Ok(Zeroizing::new(key.to_vec())),
        (Some(status), Some(_)) => Err(AttesterError::Malformed {
            what: "MSG_KEY_RSP",
            reason: format!("the firmware refused the key request with status {status:#x}"),
        }),
        _ => Err(AttesterError::Malformed {
            what: "MSG_KEY_RSP",
            reason: format!("{} bytes, expected at least 64", resp.len()),
        }),
    }
}

/// Encode `struct snp_ext_report_req`: a report request plus where the kernel should copy the
/// certificate table and how long that buffer is (a multiple of 4096).
pub fn encode_ext_report_req(
    report_data: &[u8; 64],
    vmpl: u32,
    certs_address: u64,
    certs_len: u32,
) -> [u8; EXT_REPORT_REQ_LEN] {
    let mut req = [0u8; EXT_REPORT_REQ_LEN];
    req[..REPORT_REQ_LEN].copy_from_slice(&encode_report_req(report_data, vmpl));
    req[96..104].copy_from_slice(&certs_address.to_ne_bytes());
    req[104..108].copy_from_slice(&certs_len.to_ne_bytes());
    req
}

/// The `certs_len` of an encoded extended request; after a failed ioctl with
/// [`VMM_ERR_INVALID_LEN`] the kernel leaves the size it needs there.
pub fn ext_report_req_certs_len(req: &[u8; EXT_REPORT_REQ_LEN]) -> u32 {
    let mut len = [0u8; 4];
    len.copy_from_slice(&req[104..108]);
    u32::from_ne_bytes(len)
}

/// Split `exitinfo2` into the firmware error (bits 31:0) and the hypervisor error (63:32).
pub fn split_exitinfo2(exitinfo2: u64) -> (u32, u32) {
    // Truncation is the point: each half is one 32-bit code.
    (exitinfo2 as u32, (exitinfo2 >> 32) as u32)
}

/// What a firmware / hypervisor error pair means, in words a user can act on.
pub fn guest_request_meaning(fw_error: u32, vmm_error: u32) -> &'static str {
    match (fw_error, vmm_error) {
        (_, VMM_ERR_INVALID_LEN) => {
            "the certificate buffer is too small for the host's certificates"
        }
        (_, VMM_ERR_BUSY) => "the hypervisor is throttling guest requests; retry later",
        (0xffff_ffff, _) => {
            "the request never reached the firmware; check dmesg for sev-guest errors"
        }
        (0x16, _) => "the firmware rejected the request parameters",
        (0, 0) => "no error code was reported; check dmesg for sev-guest errors",
        _ => "see the status codes in AMD's SEV-SNP firmware ABI specification",
    }
}

/// Decode MSG_REPORT_RSP: check the status, return the attestation report.
pub fn decode_report_resp(resp: &[u8]) -> Result<Vec<u8>, AttesterError> {
    let malformed = |reason: String| AttesterError::Malformed {
        what: "SNP report response",
        reason,
    };
    let header = resp
        .get(..RESP_HEADER_LEN)
        .ok_or_else(|| malformed(format!("{} bytes, shorter than its header", resp.len())))?;
    let status = le_u32(&header[0..4]);
    if status != 0 {
        return Err(AttesterError::SnpGuestRequest {
            request: "MSG_REPORT_REQ",
            fw_error: status,
            vmm_error: 0,
            meaning: match status {
                0x16 => "invalid parameters: a VMPL below the guest's own was requested",
                _ => "see the MSG_REPORT_RSP status codes in AMD's SEV-SNP firmware ABI",
            },
        });
    }
    let size = le_u32(&header[4..8]) as usize;
    if size < REPORT_LEN {
        return Err(malformed(format!(
            "report_size {size}, expected {REPORT_LEN}"
        )));
    }
    resp.get(RESP_HEADER_LEN..RESP_HEADER_LEN.saturating_add(size))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| {
            malformed(format!(
                "report_size {size} exceeds the {} byte response",
                resp.len()
            ))
        })
}

/// The used length of an SNP certificate table: its entries up to and including the all-zero
/// terminator, and every certificate they point at. `0` when the table has no entries.
pub fn cert_table_len(table: &[u8]) -> Result<usize, AttesterError> {
    let malformed = |reason: String| AttesterError::Malformed {
        what: "SNP certificate table",
        reason,
    };
    let mut end = 0;
    for (i, entry) in table.chunks(CERT_ENTRY_LEN).enumerate() {
        if entry.len() < CERT_ENTRY_LEN {
            break;
        }
        if entry.iter().all(|&b| b == 0) {
            let header_end = (i + 1) * CERT_ENTRY_LEN;
            return Ok(if i == 0 { 0 } else { end.max(header_end) });
        }
        let offset = le_u32(&entry[16..20]) as usize;
        let len = le_u32(&entry[20..24]) as usize;
        let cert_end = offset.saturating_add(len);
        if cert_end > table.len() {
            return Err(malformed(format!(
                "entry {i} spans {offset}..{cert_end}, past the {} byte table",
                table.len()
            )));
        }
        end = end.max(cert_end);
    }
    Err(malformed("no terminating all-zero entry".to_owned()))
}

fn le_u32(bytes: &[u8]) -> u32 {
    let mut out = [0u8; 4];
    out.copy_from_slice(bytes);
    u32::from_le_bytes(out)
}

/// SEV-SNP reports through `/dev/sev-guest`.
#[derive(Debug, Clone)]
pub struct SevGuest {
    root: PathBuf,
    vmpl: u32,
    extended: bool,
}

impl SevGuest {
    /// An attester for `<root>/dev/sev-guest` (production root: `/`), requesting VMPL 0
    /// extended reports (with the host's certificate table).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            vmpl: 0,
            extended: true,
        }
    }

    /// Request the report at `vmpl`; it must be at least the guest's own VMPL.
    pub fn with_vmpl(mut self, vmpl: u32) -> Self {
        self.vmpl = vmpl;
        self
    }

    /// Whether to use SNP_GET_EXT_REPORT (report plus certificate table, the default) or
    /// SNP_GET_REPORT (report only; the verifier then fetches the VCEK from AMD).
    pub fn with_extended(mut self, extended: bool) -> Self {
        self.extended = extended;
        self
    }

    /// The device path.
    pub fn device(&self) -> PathBuf {
        self.root.join(SEV_GUEST)
    }

    fn report(&self, file: &File, report_data: &[u8; 64]) -> Result<Vec<u8>, AttesterError> {
        let mut resp = Box::new([0u8; RESP_LEN]);
        let req = encode_report_req(report_data, self.vmpl);
        let outcome = ioctl::snp_get_report(file, &req, &mut resp);
        check(&self.device(), "SNP_GET_REPORT", outcome)?;
        decode_report_resp(resp.as_slice())
    }

    /// A key derived by the SNP firmware from the chip's VCEK secret, this guest's launch
    /// measurement and policy (SNP_GET_DERIVED_KEY), at this attester's VMPL.
    fn derived_key(&self) -> Result<Zeroizing<Vec<u8>>, AttesterError> {
        let file = open_device(&self.device())?;
        let mut resp = Box::new([0u8; RESP_LEN]);
        let req = encode_derived_key_req(self.vmpl, SEALING_FIELDS);
        let outcome = ioctl::snp_get_derived_key(&file, &req, &mut resp);
        let key = check(&self.device(), "SNP_GET_DERIVED_KEY", outcome)
            .and_then(|()| decode_derived_key_resp(resp.as_slice()));
        resp.zeroize();
        key
    }

    fn ext_report(
        &self,
        file: &File,
        report_data: &[u8; 64],
    ) -> Result<(Vec<u8>, Vec<u8>), AttesterError> {
        let mut resp = Box::new([0u8; RESP_LEN]);
        let mut certs = vec![0u8; CERTS_INITIAL];
        let (mut outcome, needed) =
            ioctl::snp_get_ext_report(file, report_data, self.vmpl, &mut certs, &mut resp);
        // The host has more certificates than fit: the kernel said how much room it needs.
        let (_, vmm_error) = split_exitinfo2(outcome.exitinfo2);
        let needed = needed as usize;
        if vmm_error == VMM_ERR_INVALID_LEN && needed > certs.len() && needed <= CERTS_MAX {
            certs = vec![0u8; needed.next_multiple_of(PAGE)];
            (outcome, _) =
                ioctl::snp_get_ext_report(file, report_data, self.vmpl, &mut certs, &mut resp);
        }
        check(&self.device(), "SNP_GET_EXT_REPORT", outcome)?;
        let report = decode_report_resp(resp.as_slice())?;
        certs.truncate(cert_table_len(&certs)?);
        Ok((report, certs))
    }
}

/// Turn an ioctl outcome into an error that says whose fault it was.
fn check(
    path: &Path,
    request: &'static str,
    outcome: GuestRequestOutcome,
) -> Result<(), AttesterError> {
    let Err(source) = outcome.result else {
        return Ok(());
    };
    if source.raw_os_error() == Some(libc::ENOTTY) {
        return Err(AttesterError::NotADevice {
            path: path.to_path_buf(),
        });
    }
    if outcome.exitinfo2 != 0 {
        let (fw_error, vmm_error) = split_exitinfo2(outcome.exitinfo2);
        return Err(AttesterError::SnpGuestRequest {
            request,
            fw_error,
            vmm_error,
            meaning: guest_request_meaning(fw_error, vmm_error),
        });
    }
    Err(AttesterError::Ioctl {
        request,
        path: path.to_path_buf(),
        source,
    })
}

/// Open a guest device for ioctls (they need it open read-write).
pub(crate) fn open_device(path: &Path) -> Result<File, AttesterError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| io_error("opening", path, e))
}

impl Attester for SevGuest {
    fn kind(&self) -> AttesterKind {
        AttesterKind::SevGuest
    }

    fn tee(&self) -> TeeKind {
        TeeKind::Snp
    }

    fn evidence(&self, report_data: &[u8; 64]) -> Result<Evidence, AttesterError> {
        let file = open_device(&self.device())?;
        if !self.extended {
            let bytes = self.report(&file, report_data)?;
            return Ok(Evidence {
                tee: TeeKind::Snp,
                bytes,
                aux: Vec::new(),
            });
        }
        let (bytes, certs) = self.ext_report(&file, report_data)?;
        let aux = (!certs.is_empty())
            .then_some(AuxBlob {
                kind: AuxKind::SnpCertTable,
                bytes: certs,
            })
            .into_iter()
            .collect();
        Ok(Evidence {
            tee: TeeKind::Snp,
            bytes,
            aux,
        })
    }

    fn sealing_key(&self) -> Result<Zeroizing<Vec<u8>>, AttesterError> {
        self.derived_key()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_req_layout() {
        let req = encode_report_req(&[0xab; 64], 2);
        assert_eq!(&req[..64], &[0xab; 64]);
        assert_eq!(&req[64..68], &2u32.to_ne_bytes());
        assert!(req[68..].iter().all(|&b| b == 0));
    }

    #[test]
    fn ext_req_layout_and_certs_len_round_trip() {
        let req = encode_ext_report_req(&[1; 64], 1, 0x1122_3344_5566_7788, 0x4000);
        assert_eq!(&req[..96], &encode_report_req(&[1; 64], 1));
        assert_eq!(&req[96..104], &0x1122_3344_5566_7788u64.to_ne_bytes());
        assert_eq!(ext_report_req_certs_len(&req), 0x4000);
        assert!(req[108..].iter().all(|&b| b == 0));
    }

    #[test]
    fn exitinfo2_halves() {
        assert_eq!(split_exitinfo2(0x0000_0002_0000_0016), (0x16, 2));
    }
}
