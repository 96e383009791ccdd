//! Appraisal policy over verified claims: separate from verification, so that parsers and
//! verifiers never carry switches that weaken them.
//!
//! A verifier says what is true (signatures, chains, TCB level); a [`Policy`] says what is
//! acceptable (debug, TCB statuses, advisories, minimum SVNs, service TDs, SEPT_VE_DISABLE).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::claims::{Claims, Measurements, SnpTcb, TcbStatus};

/// What a relying party accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Accept a TEE in debug mode.
    pub allow_debug: bool,
    /// Accept simulated evidence (the caller enabled simulation).
    pub allow_simulation: bool,
    /// Accepted TCB statuses; `None` accepts every status but `Revoked`.
    pub accepted_tcb_statuses: Option<BTreeSet<TcbStatus>>,
    /// Accepted advisory IDs; `None` accepts any. With `Some`, every advisory on the platform
    /// must be listed.
    pub accepted_advisories: Option<BTreeSet<String>>,
    /// TDX TD 1.5: accept a TD bound to a service TD (non-zero MRSERVICETD).
    pub allow_service_td: bool,
    /// TDX: require TD_ATTRIBUTES.SEPT_VE_DISABLE (Azure paravisor TDs do not set it).
    pub require_sept_ve_disable: bool,
    /// SGX: minimum ISVSVN.
    pub min_isv_svn: Option<u16>,
    /// TDX: minimum TEE_TCB_SVN, compared component-wise.
    #[serde(with = "crate::hexser::option")]
    pub min_tee_tcb_svn: Option<[u8; 16]>,
    /// SNP: minimum REPORTED_TCB, compared component-wise.
    pub min_snp_tcb: Option<SnpTcb>,
    /// SNP: maximum VMPL accepted (0 is the most privileged).
    pub max_vmpl: Option<u32>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            allow_debug: false,
            allow_simulation: false,
            accepted_tcb_statuses: None,
            accepted_advisories: None,
            allow_service_td: false,
            require_sept_ve_disable: true,
            min_isv_svn: None,
            min_tee_tcb_svn: None,
            min_snp_tcb: None,
            max_vmpl: None,
        }
    }
}

/// Why verified claims are not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyViolation {
    /// The TEE runs in debug mode.
    #[error(
        "debug mode is enabled: the host can read this TEE's memory (allow it only for development, with --allow-debug)"
    )]
    Debug,
    /// The evidence is simulated and simulation is not enabled.
    #[error("the evidence is simulated: enable simulation explicitly to accept it")]
    Simulated,
    /// The TCB status is not in the accepted list.
    #[error(
        "TCB status {status} is not accepted (accepted: {accepted}): update the platform or accept the status"
    )]
    TcbStatus {
        /// The platform's status.
        status: TcbStatus,
        /// The accepted statuses.
        accepted: String,
    },
    /// An advisory on the platform is not in the accepted list.
    #[error(
        "advisory {id} applies to this platform and is not accepted: patch the platform or accept the advisory"
    )]
    Advisory {
        /// The advisory ID.
        id: String,
    },
    /// The TD is bound to a service TD.
    #[error("the TD is bound to a service TD (MRSERVICETD is set): allow service TDs to accept it")]
    ServiceTd,
    /// SEPT_VE_DISABLE is required but not set.
    #[error(
        "SEPT_VE_DISABLE is not enabled in TD_ATTRIBUTES: the guest may receive #VE on EPT violations (Azure paravisor TDs need this check off)"
    )]
    SeptVeDisable,
    /// An SVN is below its minimum.
    #[error("{what} is {actual}, below the minimum {minimum}")]
    SvnTooLow {
        /// Which SVN.
        what: &'static str,
        /// The evidence's value.
        actual: String,
        /// The policy's minimum.
        minimum: String,
    },
    /// The SNP report comes from a less privileged VMPL than allowed.
    #[error("the report was requested from VMPL {vmpl}, above the maximum {max}")]
    Vmpl {
        /// The report's VMPL.
        vmpl: u32,
        /// The maximum accepted.
        max: u32,
    },
}

impl Policy {
    /// Check `claims` against this policy.
    pub fn check(&self, claims: &Claims) -> Result<(), PolicyViolation> {
        if claims.simulated && !self.allow_simulation {
            return Err(PolicyViolation::Simulated);
        }
        if claims.debug && !self.allow_debug {
            return Err(PolicyViolation::Debug);
        }
        self.check_tcb(claims)?;
        match &claims.measurements {
            Measurements::Sgx(m) => {
                if let Some(min) = self.min_isv_svn
                    && m.isv_svn < min
                {
                    return Err(PolicyViolation::SvnTooLow {
                        what: "ISVSVN",
                        actual: m.isv_svn.to_string(),
                        minimum: min.to_string(),
                    });
                }
            }
            Measurements::Tdx(m) => {
                if m.mr_service_td.is_some_and(|s| s != [0; 48]) && !self.allow_service_td {
                    return Err(PolicyViolation::ServiceTd);
                }
                if self.require_sept_ve_disable && !m.sept_ve_disable {
                    return Err(PolicyViolation::SeptVeDisable);
                }
                if let Some(min) = self.min_tee_tcb_svn
                    && m.tee_tcb_svn.iter().zip(min.iter()).any(|(a, b)| a < b)
                {
                    return Err(PolicyViolation::SvnTooLow {
                        what: "TEE_TCB_SVN",
                        actual: hex::encode(m.tee_tcb_svn),
                        minimum: hex::encode(min),
                    });
                }
            }
            Measurements::Snp(m) => {
                if let Some(max) = self.max_vmpl
                    && m.vmpl > max
                {
                    return Err(PolicyViolation::Vmpl { vmpl: m.vmpl, max });
                }
                if let Some(min) = self.min_snp_tcb
                    && !snp_tcb_at_least(&m.reported_tcb, &min)
                {
                    return Err(PolicyViolation::SvnTooLow {
                        what: "REPORTED_TCB",
                        actual: format!("{:?}", m.reported_tcb),
                        minimum: format!("{min:?}"),
                    });
                }
            }
        }
        Ok(())
    }

    fn check_tcb(&self, claims: &Claims) -> Result<(), PolicyViolation> {
        if let (Some(status), Some(accepted)) = (claims.tcb_status, &self.accepted_tcb_statuses)
            && !accepted.contains(&status)
        {
            return Err(PolicyViolation::TcbStatus {
                status,
                accepted: accepted
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        if let Some(accepted) = &self.accepted_advisories
            && let Some(id) = claims
                .advisory_ids
                .iter()
                .find(|id| !accepted.contains(*id))
        {
            return Err(PolicyViolation::Advisory { id: id.clone() });
        }
        Ok(())
    }
}

fn snp_tcb_at_least(actual: &SnpTcb, min: &SnpTcb) -> bool {
    actual.bootloader >= min.bootloader
        && actual.tee >= min.tee
        && actual.snp >= min.snp
        && actual.microcode >= min.microcode
        && actual.fmc.unwrap_or(0) >= min.fmc.unwrap_or(0)
}
