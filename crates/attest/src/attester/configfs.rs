//! Linux configfs-tsm: `/sys/kernel/config/tsm/report` (kernel ABI `configfs-tsm`, Linux 6.7+).
//!
//! A request creates a report entry directory, into which the kernel places the attributes
//! `inblob` (write: report data), `outblob` (read: the quote or report), `auxblob` (read: SNP
//! certificate table), `provider`, `generation`, and for SNP `privlevel` / `privlevel_floor`.
//! Each request uses its own freshly named entry and removes it afterwards, which is how the
//! ABI says to avoid conflicting with concurrent users.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::error::{AttesterError, io_error};
use super::{Attester, AttesterKind, AuxBlob, AuxKind, Evidence, SevGuest, fsio, read_ccel};
use crate::TeeKind;
use zeroize::Zeroizing;

/// The report directory, relative to the root.
pub(crate) const TSM_REPORT: &str = "sys/kernel/config/tsm/report";

/// How many fresh entries to try when another writer keeps changing ours.
const MAX_ATTEMPTS: u32 = 3;

/// Callbacks at each step of a configfs-tsm request.
///
/// On a real kernel nothing needs to happen here. On an ordinary file tree (tests) an
/// implementation plays the kernel: it populates a new entry with attributes, produces
/// `outblob` when `inblob` is written, bumps `generation`, and empties the entry before it is
/// removed.
pub trait TsmHooks: Send + Sync + fmt::Debug {
    /// `entry` was just created.
    fn created(&self, entry: &Path) -> std::io::Result<()>;
    /// The attribute `name` of `entry` was just written and closed.
    fn written(&self, entry: &Path, name: &str) -> std::io::Result<()>;
    /// `entry` is about to be removed.
    fn removing(&self, entry: &Path) -> std::io::Result<()>;
}

/// Evidence through configfs-tsm: TDX quotes and SEV-SNP reports (with certificate table).
#[derive(Debug, Clone)]
pub struct ConfigfsTsm {
    root: PathBuf,
    tee: TeeKind,
    privlevel: Option<u32>,
    hooks: Option<Arc<dyn TsmHooks>>,
}

impl ConfigfsTsm {
    /// An attester under `root` (production: `/`) that expects the kernel's provider to
    /// produce `tee` evidence (`Tdx` or `Snp`); a different provider is an error at request time.
    pub fn new(root: impl Into<PathBuf>, tee: TeeKind) -> Self {
        Self {
            root: root.into(),
            tee,
            privlevel: None,
            hooks: None,
        }
    }

    /// An attester whose TEE is learned from the kernel, by creating and removing an entry.
    pub fn probe(root: impl Into<PathBuf>) -> Result<Self, AttesterError> {
        Self::probe_with_hooks(root, None)
    }

    /// [`ConfigfsTsm::probe`], with hooks in place from the first entry.
    pub fn probe_with_hooks(
        root: impl Into<PathBuf>,
        hooks: Option<Arc<dyn TsmHooks>>,
    ) -> Result<Self, AttesterError> {
        // The TEE is a placeholder until the provider has been read.
        let mut this = Self::new(root, TeeKind::Tdx);
        this.hooks = hooks;
        let entry = this.create_entry()?;
        let tee = this.provider(&entry);
        this.remove_entry(&entry);
        this.tee = tee?;
        Ok(this)
    }

    /// Request evidence at privilege level `level` (SEV-SNP VMPL, 0 to 3). Without this the
    /// kernel's default applies (its `privlevel_floor`).
    pub fn with_privlevel(mut self, level: u32) -> Self {
        self.privlevel = Some(level);
        self
    }

    /// Install hooks called at each step of a request (see [`TsmHooks`]).
    pub fn with_hooks(mut self, hooks: Arc<dyn TsmHooks>) -> Self {
        self.hooks = Some(hooks);
        self
    }

    /// The report directory this attester uses.
    pub fn report_dir(&self) -> PathBuf {
        self.root.join(TSM_REPORT)
    }

    /// Create a uniquely named entry. Names are unique within the process by a counter and
    /// across processes by the pid; a leftover entry of the same name is skipped, not reused.
    fn create_entry(&self) -> Result<PathBuf, AttesterError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = self.report_dir();
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let entry = dir.join(format!("cloister-{}-{n}", std::process::id()));
            match std::fs::create_dir(&entry) {
                Ok(()) => {
                    self.hook(&entry, |h| h.created(&entry))?;
                    return Ok(entry);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(AttesterError::Missing {
                        path: dir,
                        what: "configfs-tsm needs Linux 6.7+ with configfs mounted at \
                               /sys/kernel/config and a TDX or SEV-SNP guest driver"
                            .to_owned(),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    return Err(AttesterError::PermissionDenied {
                        hint: format!(
                            "run as root: only root may create entries in {}",
                            dir.display()
                        ),
                        path: dir,
                        source: e,
                    });
                }
                Err(e) => return Err(io_error("creating", &entry, e)),
            }
        }
    }

    /// Remove an entry. Failure is not reported: the evidence (or the original error) matters
    /// more than a stale, uniquely named entry, which holds no secrets.
    fn remove_entry(&self, entry: &Path) {
        let _ = self.hook(entry, |h| h.removing(entry));
        let _ = std::fs::remove_dir(entry);
    }

    fn hook(
        &self,
        entry: &Path,
        f: impl FnOnce(&dyn TsmHooks) -> std::io::Result<()>,
    ) -> Result<(), AttesterError> {
        match &self.hooks {
            Some(h) => f(h.as_ref()).map_err(|e| io_error("hooking", entry, e)),
            None => Ok(()),
        }
    }

    /// Write an attribute, then let the hooks see it.
    fn write_attr(&self, entry: &Path, name: &str, bytes: &[u8]) -> Result<(), AttesterError> {
        fsio::write(&entry.join(name), bytes)?;
        self.hook(entry, |h| h.written(entry, name))
    }

    /// The TEE whose evidence the entry's provider produces.
    fn provider(&self, entry: &Path) -> Result<TeeKind, AttesterError> {
        let path = entry.join("provider");
        let provider = match fsio::read_text(&path) {
            Err(AttesterError::Missing { path, .. }) => {
                return Err(AttesterError::Missing {
                    path,
                    what: "no TSM provider registered; load the tdx_guest or sev_guest driver"
                        .to_owned(),
                });
            }
            other => other?,
        };
        match provider.as_str() {
            "tdx_guest" => Ok(TeeKind::Tdx),
            "sev_guest" => Ok(TeeKind::Snp),
            _ => Err(AttesterError::UnsupportedProvider { path, provider }),
        }
    }

    /// Write the privilege level, after checking it against the provider's floor.
    /// Returns the number of attribute writes made.
    fn write_privlevel(&self, entry: &Path) -> Result<u64, AttesterError> {
        let Some(level) = self.privlevel else {
            return Ok(0);
        };
        let path = entry.join("privlevel");
        if !fsio::exists(&path).unwrap_or(false) {
            return Err(AttesterError::PrivlevelUnsupported { path });
        }
        let floor = match fsio::read_u64(&entry.join("privlevel_floor")) {
            Err(AttesterError::Missing { .. }) => 0,
            other => u32::try_from(other?).unwrap_or(u32::MAX),
        };
        if level < floor || level > 3 {
            return Err(AttesterError::PrivlevelOutOfRange {
                requested: level,
                floor,
            });
        }
        self.write_attr(entry, "privlevel", format!("{level}\n").as_bytes())?;
        Ok(1)
    }

    /// One request in one entry.
    fn attempt(&self, entry: &Path, report_data: &[u8; 64]) -> Result<Attempt, AttesterError> {
        let found = self.provider(entry)?;
        if found != self.tee {
            return Err(AttesterError::ProviderMismatch {
                expected: self.tee,
                found,
            });
        }
        let gen_path = entry.join("generation");
        let before = fsio::read_u64(&gen_path)?;
        let writes = self.write_privlevel(entry)? + 1;
        self.write_attr(entry, "inblob", report_data)?;
        let outblob = read_outblob(entry)?;
        // Only SNP defines auxblob contents; other providers may not even expose it.
        let auxblob = match self.tee {
            TeeKind::Snp => fsio::read_optional(&entry.join("auxblob"))?,
            _ => None,
        };
        let after = fsio::read_u64(&gen_path)?;
        let expected = before.saturating_add(writes);
        if after != expected {
            return Ok(Attempt::Conflict(AttesterError::GenerationMismatch {
                entry: entry.to_path_buf(),
                expected,
                found: after,
                attempts: MAX_ATTEMPTS,
            }));
        }
        Ok(Attempt::Done(self.assemble(outblob, auxblob)))
    }

    fn assemble(&self, bytes: Vec<u8>, auxblob: Option<Vec<u8>>) -> Evidence {
        let mut aux = Vec::new();
        match self.tee {
            TeeKind::Snp => aux.extend(auxblob.filter(|b| !b.is_empty()).map(|bytes| AuxBlob {
                kind: AuxKind::SnpCertTable,
                bytes,
            })),
            TeeKind::Tdx => aux.extend(read_ccel(&self.root)),
            _ => {}
        }
        Evidence {
            tee: self.tee,
            bytes,
            aux,
        }
    }
}

/// Read `outblob`, which must not be empty.
fn read_outblob(entry: &Path) -> Result<Vec<u8>, AttesterError> {
    let path = entry.join("outblob");
    let bytes = fsio::read(&path)?;
    if bytes.is_empty() {
        return Err(AttesterError::Malformed {
            what: "configfs-tsm outblob",
            reason: format!("{} is empty", path.display()),
        });
    }
    Ok(bytes)
}

impl Attester for ConfigfsTsm {
    fn kind(&self) -> AttesterKind {
        AttesterKind::ConfigfsTsm
    }

    fn tee(&self) -> TeeKind {
        self.tee
    }

    fn evidence(&self, report_data: &[u8; 64]) -> Result<Evidence, AttesterError> {
        let mut attempt = 1;
        loop {
            let entry = self.create_entry()?;
            let outcome = self.attempt(&entry, report_data);
            self.remove_entry(&entry);
            match outcome? {
                Attempt::Done(evidence) => return Ok(evidence),
                Attempt::Conflict(e) if attempt >= MAX_ATTEMPTS => return Err(e),
                Attempt::Conflict(_) => attempt += 1,
            }
        }
    }

    /// configfs-tsm has no key interface: SNP guests derive one through `/dev/sev-guest`
    /// beside it; TDX has no sealing key at all.
    fn sealing_key(&self) -> Result<Zeroizing<Vec<u8>>, AttesterError> {
        match self.tee {
            TeeKind::Snp => {
                let device = SevGuest::new(self.root.clone());
                match self.privlevel {
                    Some(level) => device.with_vmpl(level),
                    None => device,
                }
                .sealing_key()
            }
            _ => Err(AttesterError::NoSealingKey {
                mechanism: "TDX",
                hint: "TDX offers no sealing key; run the coordinator on SEV-SNP or in a Gramine SGX enclave",
            }),
        }
    }
}

/// The outcome of one request that did not fail outright.
enum Attempt {
    /// Evidence read back without interference.
    Done(Evidence),
    /// Someone else wrote to the entry meanwhile; a fresh entry may succeed.
    Conflict(AttesterError),
}
