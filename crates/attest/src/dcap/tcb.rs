//! TCB-level matching and status convergence, following Intel's QVL rules.

use super::collateral::{ModuleLevel, QeIdentity, TcbInfo, TdxModule};
use super::quote::{EnclaveReport, TdReport};
use super::{DcapError, PckExtensions};
use crate::claims::TcbStatus;

/// The platform's appraised TCB: status, advisories and the date of the matched level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TcbVerdict {
    pub(crate) status: TcbStatus,
    pub(crate) advisory_ids: Vec<String>,
    pub(crate) date: String,
}

impl TcbVerdict {
    /// Fold a component's status (QE, TDX module) into this one, as Intel QVL does: an
    /// out-of-date component makes the whole out of date; a revoked one revokes it.
    pub(crate) fn converge(mut self, component: &ModuleLevel) -> Self {
        use TcbStatus::*;
        self.status = match (component.status, self.status) {
            (Revoked, _) => Revoked,
            (OutOfDate, UpToDate | SWHardeningNeeded) => OutOfDate,
            (OutOfDate, ConfigurationNeeded | ConfigurationAndSWHardeningNeeded) => {
                OutOfDateConfigurationNeeded
            }
            (_, own) => own,
        };
        for id in &component.advisory_ids {
            if !self.advisory_ids.contains(id) {
                self.advisory_ids.push(id.clone());
            }
        }
        self
    }
}

/// Match the platform's TCB level: SGX components and PCESVN from the PCK certificate; for
/// TDX also TEE_TCB_SVN, the TDX module identity and, for TD 1.5, the relaunch rule.
pub(crate) fn match_platform(
    info: &TcbInfo,
    pck: &PckExtensions,
    td: Option<&TdReport>,
) -> Result<TcbVerdict, DcapError> {
    let Some(td) = td else {
        return find_level(info, pck, None);
    };
    check_module_identity(info, td)?;
    let launch = evaluate_tdx(info, pck, &td.tee_tcb_svn)?;
    let Some(current_svn) = td.tee_tcb_svn2 else {
        return Ok(launch);
    };
    let current = evaluate_tdx(info, pck, &current_svn)?;
    Ok(check_for_relaunch(launch, &current))
}

fn find_level(
    info: &TcbInfo,
    pck: &PckExtensions,
    tee_tcb_svn: Option<&[u8; 16]>,
) -> Result<TcbVerdict, DcapError> {
    let level = info
        .levels
        .iter()
        .find(|level| {
            let sgx_ok = at_least(&pck.tcb_components, &level.sgx_components, 0);
            let pce_ok = pck.pce_svn >= level.pce_svn;
            let tdx_ok = match (tee_tcb_svn, &level.tdx_components) {
                (None, _) => true,
                (Some(svn), Some(min)) => {
                    // With a module version (byte 1), bytes 0 and 1 are appraised by the
                    // module identity instead.
                    let skip = if svn[1] > 0 { 2 } else { 0 };
                    at_least(svn, min, skip)
                }
                (Some(_), None) => false,
            };
            sgx_ok && pce_ok && tdx_ok
        })
        .ok_or(DcapError::TcbLevelNotFound)?;
    Ok(TcbVerdict {
        status: level.status,
        advisory_ids: level.advisory_ids.clone(),
        date: level.date.clone(),
    })
}

fn at_least(have: &[u8; 16], min: &[u8; 16], skip: usize) -> bool {
    have.iter().zip(min).skip(skip).all(|(h, m)| h >= m)
}

fn evaluate_tdx(
    info: &TcbInfo,
    pck: &PckExtensions,
    tee_tcb_svn: &[u8; 16],
) -> Result<TcbVerdict, DcapError> {
    let verdict = find_level(info, pck, Some(tee_tcb_svn))?;
    let Some(identity) = module_identity(info, tee_tcb_svn)? else {
        return Ok(verdict);
    };
    let isv_svn = u16::from(tee_tcb_svn[0]);
    let level = identity
        .levels
        .iter()
        .find(|l| isv_svn >= l.isv_svn)
        .ok_or_else(|| DcapError::TdxModule {
            reason: format!(
                "module ISVSVN {isv_svn} is below every TCB level of {}",
                identity.id
            ),
        })?;
    let mut converged = verdict.clone().converge(level);
    // Date the converged verdict by its oldest part, as Intel QVL does.
    if level.date < verdict.date {
        converged.date = level.date.clone();
    }
    Ok(converged)
}

/// TEE_TCB_SVN[1] is the module's major version; `TDX_<hex>` names its identity.
fn module_identity<'a>(
    info: &'a TcbInfo,
    tee_tcb_svn: &[u8; 16],
) -> Result<Option<&'a TdxModule>, DcapError> {
    let version = tee_tcb_svn[1];
    if version == 0 {
        return Ok(None);
    }
    let wanted = format!("TDX_{version:02X}");
    info.tdx_module_identities
        .iter()
        .find(|m| m.id.eq_ignore_ascii_case(&wanted))
        .map(Some)
        .ok_or_else(|| DcapError::TdxModule {
            reason: format!("the TCB info has no module identity {wanted}"),
        })
}

fn check_module_identity(info: &TcbInfo, td: &TdReport) -> Result<(), DcapError> {
    let expected = match module_identity(info, &td.tee_tcb_svn)? {
        Some(identity) => identity,
        None => info
            .tdx_module
            .as_ref()
            .ok_or_else(|| DcapError::TdxModule {
                reason: "the TCB info has no tdxModule".into(),
            })?,
    };
    if td.mr_signer_seam != expected.mrsigner {
        return Err(DcapError::TdxModule {
            reason: format!(
                "MRSIGNERSEAM is {}, expected {}",
                hex::encode(td.mr_signer_seam),
                hex::encode(expected.mrsigner)
            ),
        });
    }
    let masked_ok = td
        .seam_attributes
        .iter()
        .zip(&expected.attributes)
        .zip(&expected.attributes_mask)
        .all(|((have, want), mask)| have & mask == want & mask && have & !mask == 0);
    if !masked_ok {
        return Err(DcapError::TdxModule {
            reason: format!(
                "SEAM_ATTRIBUTES {} do not match",
                hex::encode(td.seam_attributes)
            ),
        });
    }
    Ok(())
}

/// TD 1.5: a TD launched on an out-of-date module whose current module is not out of date
/// only needs a relaunch.
fn check_for_relaunch(launch: TcbVerdict, current: &TcbVerdict) -> TcbVerdict {
    use TcbStatus::*;
    let config = |s: TcbStatus| {
        matches!(
            s,
            ConfigurationNeeded
                | OutOfDateConfigurationNeeded
                | ConfigurationAndSWHardeningNeeded
                | TDRelaunchAdvisedConfigurationNeeded
        )
    };
    let launch_outdated = matches!(launch.status, OutOfDate | OutOfDateConfigurationNeeded);
    let current_fine = matches!(
        current.status,
        UpToDate | SWHardeningNeeded | ConfigurationNeeded | ConfigurationAndSWHardeningNeeded
    );
    if !(launch_outdated && current_fine) {
        return launch;
    }
    let status = if config(launch.status) || config(current.status) {
        TDRelaunchAdvisedConfigurationNeeded
    } else {
        TDRelaunchAdvised
    };
    TcbVerdict { status, ..launch }
}

/// Check the QE report against the QE identity and find the QE's TCB level.
pub(crate) fn match_qe(
    identity: &QeIdentity,
    qe: &EnclaveReport,
) -> Result<ModuleLevel, DcapError> {
    if qe.mr_signer != identity.mrsigner {
        return Err(DcapError::QeIdentityMismatch { field: "MRSIGNER" });
    }
    if qe.isv_prod_id != identity.isv_prod_id {
        return Err(DcapError::QeIdentityMismatch { field: "ISVPRODID" });
    }
    if qe.misc_select & identity.miscselect_mask != identity.miscselect & identity.miscselect_mask {
        return Err(DcapError::QeIdentityMismatch {
            field: "MISCSELECT",
        });
    }
    let attributes_ok = qe
        .attributes
        .iter()
        .zip(&identity.attributes)
        .zip(&identity.attributes_mask)
        .all(|((have, want), mask)| have & mask == want & mask);
    if !attributes_ok {
        return Err(DcapError::QeIdentityMismatch {
            field: "ATTRIBUTES",
        });
    }
    identity
        .levels
        .iter()
        .find(|l| qe.isv_svn >= l.isv_svn)
        .cloned()
        .ok_or(DcapError::QeTcbNotFound {
            isv_svn: qe.isv_svn,
        })
}
