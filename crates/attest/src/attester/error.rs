//! Why an attester could not produce evidence.

use std::io;
use std::path::{Path, PathBuf};

use crate::TeeKind;
use crate::sim::SimError;

/// Why an attester could not produce evidence.
///
/// Every variant names the file involved and, where one exists, what the user can do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttesterError {
    /// The process may not open or write a TEE interface file.
    #[error("permission denied on {path}: {hint}")]
    PermissionDenied {
        /// The file that could not be opened.
        path: PathBuf,
        /// What to do about it.
        hint: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A file the interface must provide does not exist.
    #[error("{path} does not exist: {what}")]
    Missing {
        /// The missing file.
        path: PathBuf,
        /// What the file is and why it may be absent.
        what: String,
    },
    /// Any other I/O failure on a TEE interface file.
    #[error("{op} {path} failed: {source}")]
    Io {
        /// What was being done (`reading`, `writing`, `creating`, ...).
        op: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A text attribute (generation, provider, attestation type) has an unexpected value.
    #[error("{path} holds {value:?}, {reason}")]
    BadAttribute {
        /// The attribute file.
        path: PathBuf,
        /// What it held (trimmed).
        value: String,
        /// Why that value is unusable.
        reason: String,
    },
    /// configfs-tsm reports a provider whose evidence format cloister does not know.
    #[error(
        "configfs-tsm provider {provider:?} at {path} is not supported: expected tdx_guest or sev_guest"
    )]
    UnsupportedProvider {
        /// The `provider` attribute file.
        path: PathBuf,
        /// The provider it named.
        provider: String,
    },
    /// configfs-tsm's provider is not the TEE this attester was built for.
    #[error("configfs-tsm produced {found} evidence, but this attester was set up for {expected}")]
    ProviderMismatch {
        /// The TEE the attester was constructed for.
        expected: TeeKind,
        /// The TEE the kernel's provider produces.
        found: TeeKind,
    },
    /// Another writer changed a configfs-tsm entry while this request was in flight.
    #[error(
        "configfs-tsm entry {entry} was written concurrently (generation {found}, expected {expected}) \
         on each of {attempts} attempts; another process is using the same report entry"
    )]
    GenerationMismatch {
        /// The report entry directory.
        entry: PathBuf,
        /// The generation this request's own writes account for.
        expected: u64,
        /// The generation read back after `outblob`.
        found: u64,
        /// How many attempts were made.
        attempts: u32,
    },
    /// A privilege level (SNP VMPL) was requested but the provider does not support one.
    #[error(
        "{path} does not exist: the configfs-tsm provider has no privilege levels (only SEV-SNP has VMPLs); do not request one"
    )]
    PrivlevelUnsupported {
        /// The absent `privlevel` attribute.
        path: PathBuf,
    },
    /// The requested privilege level is out of the range the provider accepts.
    #[error(
        "privilege level {requested} is not permitted: the minimum is {floor} and the maximum is 3"
    )]
    PrivlevelOutOfRange {
        /// The level requested.
        requested: u32,
        /// The provider's `privlevel_floor`.
        floor: u32,
    },
    /// An ioctl was issued on a file that is not the expected character device.
    #[error("{path} is not a TEE guest device (the ioctl is not supported by this file)")]
    NotADevice {
        /// The file the ioctl was issued on.
        path: PathBuf,
    },
    /// An ioctl on a TEE guest device failed at the system-call level.
    #[error("{request} on {path} failed: {source}")]
    Ioctl {
        /// The ioctl's name (`SNP_GET_REPORT`, `TDX_CMD_GET_REPORT0`, ...).
        request: &'static str,
        /// The device.
        path: PathBuf,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// The SEV-SNP firmware or the hypervisor rejected a guest request.
    #[error(
        "{request} was rejected: firmware error {fw_error:#x}, hypervisor error {vmm_error:#x} ({meaning})"
    )]
    SnpGuestRequest {
        /// The ioctl's name.
        request: &'static str,
        /// The PSP firmware status (`exitinfo2` bits 31:0).
        fw_error: u32,
        /// The hypervisor status (`exitinfo2` bits 63:32).
        vmm_error: u32,
        /// What those codes mean, and what to do.
        meaning: &'static str,
    },
    /// A device or the firmware returned bytes that are not what the ABI specifies.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// `/dev/tdx_guest` yields a TDREPORT, which only the local platform can check.
    #[error(
        "{path} can only produce a TDREPORT, which is not remotely verifiable; a TDX quote needs \
         configfs-tsm (Linux 6.7+, configfs mounted at /sys/kernel/config) or a quote generation \
         service, which cloister does not support"
    )]
    TdxQuoteUnavailable {
        /// The `/dev/tdx_guest` device.
        path: PathBuf,
    },
    /// Gramine is not configured for DCAP attestation.
    #[error(
        "{path} is {found:?}, not \"dcap\": set sgx.remote_attestation = \"dcap\" in the Gramine manifest"
    )]
    WrongAttestationType {
        /// The `attestation_type` file.
        path: PathBuf,
        /// Its contents (trimmed).
        found: String,
    },
    /// Detection found no usable attester on this machine.
    #[error("{0}")]
    NoAttester(String),
    /// The TEE interface offers no key bound to the TEE's identity to seal state with.
    #[error("{mechanism} offers no sealing key: {hint}")]
    NoSealingKey {
        /// The attester or TEE that lacks one.
        mechanism: &'static str,
        /// What to do instead.
        hint: &'static str,
    },
    /// The simulated attester could not produce evidence.
    #[error(transparent)]
    Sim(#[from] SimError),
}

/// What a user can do when access to `path` is denied.
pub(crate) fn permission_hint(path: &Path) -> String {
    format!(
        "run as root, or add the user to the group owning {} and make it group-accessible",
        path.display()
    )
}

/// Classify an I/O error on a TEE interface file into an actionable [`AttesterError`].
pub(crate) fn io_error(op: &'static str, path: &Path, source: io::Error) -> AttesterError {
    match source.kind() {
        io::ErrorKind::PermissionDenied => AttesterError::PermissionDenied {
            path: path.to_path_buf(),
            hint: permission_hint(path),
            source,
        },
        io::ErrorKind::NotFound => AttesterError::Missing {
            path: path.to_path_buf(),
            what: format!(
                "{op} it failed because the TEE guest driver does not provide it; is the driver loaded?"
            ),
        },
        _ => AttesterError::Io {
            op,
            path: path.to_path_buf(),
            source,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_denied_says_what_to_do() {
        let path = Path::new("/dev/sev-guest");
        let err = io_error(
            "opening",
            path,
            io::Error::from(io::ErrorKind::PermissionDenied),
        );
        let AttesterError::PermissionDenied { hint, .. } = &err else {
            panic!("expected PermissionDenied, got {err:?}");
        };
        assert!(hint.contains("run as root"), "{hint}");
        assert!(hint.contains("group owning /dev/sev-guest"), "{hint}");
        assert!(std::error::Error::source(&err).is_some(), "io source kept");
    }

    #[test]
    fn other_io_errors_keep_their_source() {
        let err = io_error("reading", Path::new("/x"), io::Error::other("boom"));
        assert!(matches!(err, AttesterError::Io { op: "reading", .. }));
        assert_eq!(err.to_string(), "reading /x failed: boom");
    }
}
