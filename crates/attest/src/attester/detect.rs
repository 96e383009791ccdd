//! Which attester this machine has, and if none, why not.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::configfs::TSM_REPORT;
use super::error::{AttesterError, permission_hint};
use super::gramine::ATTESTATION_DIR;
use super::sev_guest::{SEV_GUEST, open_device};
use super::tdx_guest::TDX_GUEST;
use super::{Attester, AttesterKind, ConfigfsTsm, Gramine, SevGuest, ioctl};
use crate::TeeKind;

/// The outcome of [`detect`]: the attester to use, and every interface probed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Detection {
    /// The root the interfaces were looked up under.
    pub root: PathBuf,
    /// The preferred usable attester, if any.
    pub selected: Option<Selected>,
    /// Every interface probed, in order of preference.
    pub probes: Vec<Probe>,
}

/// The attester [`detect`] chose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Selected {
    /// The mechanism.
    pub kind: AttesterKind,
    /// The TEE it produces evidence for.
    pub tee: TeeKind,
    /// The device or directory it uses.
    pub path: PathBuf,
}

/// One interface [`detect`] looked at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Probe {
    /// The mechanism the interface belongs to.
    pub kind: AttesterKind,
    /// The device or directory probed.
    pub path: PathBuf,
    /// What was found.
    pub outcome: ProbeOutcome,
}

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ProbeOutcome {
    /// The interface is present and usable.
    Available {
        /// The TEE it produces evidence for.
        tee: TeeKind,
    },
    /// The interface does not exist.
    Absent,
    /// The interface exists but this user may not use it.
    PermissionDenied {
        /// What to do about it.
        hint: String,
    },
    /// The interface exists but cannot produce evidence.
    Unusable {
        /// Why, and what to do about it.
        reason: String,
    },
}

impl fmt::Display for ProbeOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Available { tee } => write!(f, "available ({tee})"),
            Self::Absent => f.write_str("absent"),
            Self::PermissionDenied { hint } => write!(f, "permission denied: {hint}"),
            Self::Unusable { reason } => f.write_str(reason),
        }
    }
}

/// Probe `root` (production: `/`) for TEE interfaces and select the preferred usable one:
/// configfs-tsm, then `/dev/sev-guest`, then Gramine's `/dev/attestation`. `/dev/tdx_guest`
/// is reported but never selected, since it cannot produce a quote.
///
/// Probing opens devices and checks access but writes nothing, except that configfs-tsm
/// without a guest device node is identified by creating and removing a report entry.
pub fn detect(root: &Path) -> Detection {
    let probes = vec![
        probe_configfs(root),
        probe_sev_guest(root),
        probe_tdx_guest(root),
        probe_gramine(root),
    ];
    let selected = probes.iter().find_map(|p| match p.outcome {
        ProbeOutcome::Available { tee } => Some(Selected {
            kind: p.kind,
            tee,
            path: p.path.clone(),
        }),
        _ => None,
    });
    Detection {
        root: root.to_path_buf(),
        selected,
        probes,
    }
}

impl Detection {
    /// The selected attester, or [`AttesterError::NoAttester`] explaining why there is none.
    pub fn attester(&self) -> Result<Box<dyn Attester>, AttesterError> {
        let root = self.root.clone();
        match &self.selected {
            Some(Selected {
                kind: AttesterKind::ConfigfsTsm,
                tee,
                ..
            }) => Ok(Box::new(ConfigfsTsm::new(root, *tee))),
            Some(Selected {
                kind: AttesterKind::SevGuest,
                ..
            }) => Ok(Box::new(SevGuest::new(root))),
            Some(Selected {
                kind: AttesterKind::Gramine,
                ..
            }) => Ok(Box::new(Gramine::new(root))),
            _ => Err(AttesterError::NoAttester(self.to_string())),
        }
    }

    /// One indented line per probe, each preceded by a newline.
    fn write_probes(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.probes
            .iter()
            .try_for_each(|p| write!(f, "\n  {} ({}): {}", p.path.display(), p.kind, p.outcome))
    }

    fn all_absent(&self) -> bool {
        self.probes
            .iter()
            .all(|p| p.outcome == ProbeOutcome::Absent)
    }
}

impl fmt::Display for Detection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = &self.selected {
            write!(f, "using {} ({}) at {}", s.kind, s.tee, s.path.display())?;
            return self.write_probes(f);
        }
        if self.all_absent() {
            let paths: Vec<String> = self
                .probes
                .iter()
                .map(|p| p.path.display().to_string())
                .collect();
            return write!(
                f,
                "no TEE device found: {} are absent; this machine is not a confidential VM or \
                 enclave — use simulation",
                join_and(&paths)
            );
        }
        f.write_str("no usable TEE attester found:")?;
        self.write_probes(f)?;
        f.write_str("\nfix one of the above, or use simulation")
    }
}

/// `a, b, c and d`.
fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn probe(kind: AttesterKind, path: PathBuf, outcome: ProbeOutcome) -> Probe {
    Probe {
        kind,
        path,
        outcome,
    }
}

/// Whether `path` exists; an error deciding that becomes the probe's outcome.
fn presence(path: &Path) -> Result<bool, ProbeOutcome> {
    path.try_exists().map_err(|e| outcome_of_io(path, &e))
}

fn outcome_of_io(path: &Path, e: &std::io::Error) -> ProbeOutcome {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        ProbeOutcome::PermissionDenied {
            hint: permission_hint(path),
        }
    } else {
        ProbeOutcome::Unusable {
            reason: format!("cannot examine it: {e}"),
        }
    }
}

fn outcome_of(err: AttesterError) -> ProbeOutcome {
    match err {
        AttesterError::PermissionDenied { hint, .. } => ProbeOutcome::PermissionDenied { hint },
        other => ProbeOutcome::Unusable {
            reason: other.to_string(),
        },
    }
}

fn probe_configfs(root: &Path) -> Probe {
    let path = root.join(TSM_REPORT);
    let outcome = match presence(&path) {
        Err(outcome) => outcome,
        Ok(false) => ProbeOutcome::Absent,
        Ok(true) => configfs_outcome(root, &path),
    };
    probe(AttesterKind::ConfigfsTsm, path, outcome)
}

/// A present configfs-tsm is usable if this user may create entries and a provider exists.
fn configfs_outcome(root: &Path, path: &Path) -> ProbeOutcome {
    match ioctl::writable(path) {
        Ok(true) => {}
        Ok(false) => {
            return ProbeOutcome::PermissionDenied {
                hint: format!("creating report entries in {} needs root", path.display()),
            };
        }
        Err(e) => return outcome_of_io(path, &e),
    }
    // The guest driver that registers the provider also creates its device node; only when
    // that is hidden (a container) is an entry created to ask the kernel.
    if root.join(TDX_GUEST).exists() {
        return ProbeOutcome::Available { tee: TeeKind::Tdx };
    }
    if root.join(SEV_GUEST).exists() {
        return ProbeOutcome::Available { tee: TeeKind::Snp };
    }
    match ConfigfsTsm::probe(root) {
        Ok(tsm) => ProbeOutcome::Available { tee: tsm.tee() },
        Err(e) => outcome_of(e),
    }
}

fn probe_sev_guest(root: &Path) -> Probe {
    let path = root.join(SEV_GUEST);
    let outcome = match presence(&path) {
        Err(outcome) => outcome,
        Ok(false) => ProbeOutcome::Absent,
        Ok(true) => match open_device(&path) {
            Ok(_) => ProbeOutcome::Available { tee: TeeKind::Snp },
            Err(e) => outcome_of(e),
        },
    };
    probe(AttesterKind::SevGuest, path, outcome)
}

fn probe_tdx_guest(root: &Path) -> Probe {
    let path = root.join(TDX_GUEST);
    let outcome = match presence(&path) {
        Err(outcome) => outcome,
        Ok(false) => ProbeOutcome::Absent,
        Ok(true) => ProbeOutcome::Unusable {
            reason: "present, but it yields only a TDREPORT, which is not remotely verifiable; \
                     TDX quotes come from configfs-tsm (Linux 6.7+, configfs mounted at \
                     /sys/kernel/config)"
                .to_owned(),
        },
    };
    probe(AttesterKind::TdxGuest, path, outcome)
}

fn probe_gramine(root: &Path) -> Probe {
    let path = root.join(ATTESTATION_DIR);
    let outcome = match presence(&path) {
        Err(outcome) => outcome,
        Ok(false) => ProbeOutcome::Absent,
        Ok(true) => match Gramine::new(root).check_type() {
            Ok(()) => ProbeOutcome::Available { tee: TeeKind::Sgx },
            Err(e) => outcome_of(e),
        },
    };
    probe(AttesterKind::Gramine, path, outcome)
}
