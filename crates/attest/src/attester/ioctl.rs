//! The ioctl system calls of `/dev/sev-guest` and `/dev/tdx_guest`, and `access(2)`: the
//! crate's only FFI.
//!
//! Each wrapper takes buffers typed to the sizes the kernel reads and writes, and builds any
//! pointer the kernel dereferences from those buffers itself, so callers cannot hand the kernel
//! a dangling or short buffer.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::sev_guest::{
    DERIVED_KEY_REQ_LEN, EXT_REPORT_REQ_LEN, REPORT_REQ_LEN, RESP_LEN, SNP_GET_DERIVED_KEY,
    SNP_GET_EXT_REPORT, SNP_GET_REPORT, encode_ext_report_req, ext_report_req_certs_len,
};
use super::tdx_guest::{TDX_CMD_GET_REPORT0, TDX_REPORT_REQ_LEN};

/// `struct snp_guest_request_ioctl` from `<linux/sev-guest.h>`.
#[repr(C)]
struct SnpGuestRequestIoctl {
    msg_version: u8,
    req_data: u64,
    resp_data: u64,
    exitinfo2: u64,
}

// The ioctl numbers encode this size; a layout change would make the kernel reject them.
const _: () = assert!(size_of::<SnpGuestRequestIoctl>() == 32);

/// What an SNP guest request returned: the syscall result and the firmware/VMM status.
#[derive(Debug)]
pub(crate) struct GuestRequestOutcome {
    /// The ioctl's result.
    pub(crate) result: io::Result<()>,
    /// `exitinfo2`: firmware error in bits 31:0, hypervisor error in bits 63:32.
    pub(crate) exitinfo2: u64,
}

/// Issue an SNP guest request whose request and response buffers are `req` and `resp`.
fn snp_request(
    file: &File,
    request: u64,
    req: &mut [u8],
    resp: &mut [u8; RESP_LEN],
) -> GuestRequestOutcome {
    let mut arg = SnpGuestRequestIoctl {
        // Version 1 is the only message version the kernel accepts.
        msg_version: 1,
        req_data: req.as_mut_ptr() as u64,
        resp_data: resp.as_mut_ptr() as u64,
        exitinfo2: 0,
    };
    // SAFETY: `arg` is a live, correctly laid out snp_guest_request_ioctl (size asserted above).
    // Its req_data points at `req`, which is at least as long as the request struct the ioctl
    // reads (and, for the extended report, writes back); callers pass arrays of exactly
    // REPORT_REQ_LEN / EXT_REPORT_REQ_LEN / DERIVED_KEY_REQ_LEN. resp_data points at `resp`,
    // RESP_LEN bytes, at least the size of the response struct (snp_report_resp, 4000;
    // snp_derived_key_resp, 64) that the kernel writes. All three borrows outlive the call.
    let rc = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            request as _,
            &mut arg as *mut SnpGuestRequestIoctl,
        )
    };
    GuestRequestOutcome {
        result: if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        },
        exitinfo2: arg.exitinfo2,
    }
}

/// SNP_GET_REPORT with an encoded `snp_report_req`.
pub(crate) fn snp_get_report(
    file: &File,
    req: &[u8; REPORT_REQ_LEN],
    resp: &mut [u8; RESP_LEN],
) -> GuestRequestOutcome {
    // The kernel only reads the request; a copy keeps `req` immutable for the caller.
    let mut req = *req;
    snp_request(file, SNP_GET_REPORT, &mut req, resp)
}

/// SNP_GET_DERIVED_KEY with an encoded `snp_derived_key_req`; the kernel writes the 64-byte
/// `snp_derived_key_resp` at the start of `resp`.
pub(crate) fn snp_get_derived_key(
    file: &File,
    req: &[u8; DERIVED_KEY_REQ_LEN],
    resp: &mut [u8; RESP_LEN],
) -> GuestRequestOutcome {
    let mut req = *req;
    snp_request(file, SNP_GET_DERIVED_KEY, &mut req, resp)
}

/// SNP_GET_EXT_REPORT with the certificate table written into `certs`.
///
/// Returns the outcome and the `certs_len` the kernel left in the request, which is the size
/// it needs when the buffer was too small.
pub(crate) fn snp_get_ext_report(
    file: &File,
    report_data: &[u8; 64],
    vmpl: u32,
    certs: &mut [u8],
    resp: &mut [u8; RESP_LEN],
) -> (GuestRequestOutcome, u32) {
    // Claim no more than the buffer holds, so the kernel never writes past it.
    let certs_len = u32::try_from(certs.len()).unwrap_or(0xffff_f000);
    let mut req: [u8; EXT_REPORT_REQ_LEN] =
        encode_ext_report_req(report_data, vmpl, certs.as_mut_ptr() as u64, certs_len);
    let outcome = snp_request(file, SNP_GET_EXT_REPORT, &mut req, resp);
    (outcome, ext_report_req_certs_len(&req))
}

/// TDX_CMD_GET_REPORT0 on `buf`: REPORTDATA in, TDREPORT out, in place.
pub(crate) fn tdx_get_report0(file: &File, buf: &mut [u8; TDX_REPORT_REQ_LEN]) -> io::Result<()> {
    // SAFETY: `buf` is exactly sizeof(struct tdx_report_req), the size encoded in the request
    // number, which the kernel reads and writes in full; the borrow outlives the call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), TDX_CMD_GET_REPORT0 as _, buf.as_mut_ptr()) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Whether the real user may write to `path` (`access(2)` with `W_OK`), without writing.
pub(crate) fn writable(path: &Path) -> io::Result<bool> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c_path` is a NUL-terminated string that lives until the call returns; access(2)
    // only reads it.
    let rc = unsafe { libc::access(c_path.as_ptr(), libc::W_OK) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EACCES | libc::EROFS | libc::EPERM) => Ok(false),
        _ => Err(err),
    }
}

/// The `_IOWR(ty, nr, size)` request number (asm-generic encoding, as on x86-64).
pub(crate) const fn iowr(ty: u8, nr: u8, size: usize) -> u64 {
    const READ_WRITE: u64 = 3;
    (READ_WRITE << 30) | ((size as u64 & 0x3fff) << 16) | ((ty as u64) << 8) | nr as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_numbers_match_the_kernel_headers() {
        assert_eq!(SNP_GET_REPORT, 0xc020_5300);
        assert_eq!(SNP_GET_EXT_REPORT, 0xc020_5302);
        assert_eq!(TDX_CMD_GET_REPORT0, 0xc440_5401);
    }

    #[test]
    fn ioctl_on_an_ordinary_file_fails_with_enotty() {
        let file = File::open(std::env::current_exe().unwrap()).unwrap();
        let mut buf = [0u8; TDX_REPORT_REQ_LEN];
        let err = tdx_get_report0(&file, &mut buf).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTTY));
    }
}
