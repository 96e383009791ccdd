//! One call to simulate any TEE kind, with everything needed to verify the result.

use std::path::Path;

use time::OffsetDateTime;

use super::SimError;
use super::amd::{AmdPki, SnpParams};
use super::intel::{IntelPki, SgxParams, TdxParams};
use crate::claims::{TcbStatus, TeeKind};
use crate::evidence::Inputs;

/// Knobs for [`simulate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimOptions {
    /// Simulate a TEE in debug mode.
    pub debug: bool,
    /// The TCB status the simulated Intel platform lands in (SGX, TDX).
    pub tcb: TcbStatus,
    /// ISVSVN (SGX) or GUEST_SVN (SNP).
    pub svn: u16,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            debug: false,
            tcb: TcbStatus::UpToDate,
            svn: 1,
        }
    }
}

/// Simulated evidence and what verifies it.
#[derive(Debug, Clone)]
pub struct Simulated {
    /// The TEE kind.
    pub tee: TeeKind,
    /// The quote or report, in the hardware format.
    pub evidence: Vec<u8>,
    /// The simulation root (PEM): Intel's simulated root CA, or AMD's simulated ARK.
    pub anchor_pem: String,
    /// SGX/TDX: the collateral, combined JSON.
    pub collateral_json: Option<String>,
    /// SNP: the VCEK, DER.
    pub vek_der: Option<Vec<u8>>,
    /// SNP: the ASK and ARK, PEM.
    pub chain_pem: Option<String>,
    /// Azure vTPM: the nonce the TPM quote carries (the report data).
    pub nonce: Option<Vec<u8>>,
}

impl Simulated {
    /// The inputs to pass to [`crate::evidence::Verifiers`].
    pub fn inputs(&self) -> Inputs {
        Inputs {
            tee: Some(self.tee),
            collateral: self
                .collateral_json
                .iter()
                .map(|j| ("collateral.json".to_string(), j.as_bytes().to_vec()))
                .collect(),
            vek: self.vek_der.clone(),
            chain: self.chain_pem.as_ref().map(|c| c.as_bytes().to_vec()),
            nonce: self.nonce.clone(),
            dcap_collateral: None,
        }
    }

    /// The files to write: evidence, anchor, and collateral or VCEK and chain.
    pub fn files(&self) -> Vec<(&'static str, Vec<u8>)> {
        let mut files = vec![
            ("evidence.bin", self.evidence.clone()),
            ("anchor.pem", self.anchor_pem.clone().into_bytes()),
        ];
        if let Some(c) = &self.collateral_json {
            files.push(("collateral.json", c.clone().into_bytes()));
        }
        if let Some(v) = &self.vek_der {
            files.push(("vcek.der", v.clone()));
        }
        if let Some(c) = &self.chain_pem {
            files.push(("chain.pem", c.clone().into_bytes()));
        }
        files
    }

    /// The `cloister evidence verify` command that checks the files written to `dir`.
    pub fn verify_command(&self, dir: &Path, at: &str) -> String {
        let f = |name: &str| dir.join(name).display().to_string();
        let mut inputs = match (&self.collateral_json, &self.vek_der) {
            (Some(_), _) => format!("--collateral {}", f("collateral.json")),
            (None, Some(_)) => format!("--vek {} --chain {}", f("vcek.der"), f("chain.pem")),
            // Azure SNP vTPM evidence carries its VCEK.
            (None, None) => format!("--chain {}", f("chain.pem")),
        };
        if let Some(nonce) = &self.nonce {
            inputs.push_str(&format!(" --nonce {}", hex::encode(nonce)));
        }
        format!(
            "cloister evidence verify --evidence {} {inputs} --trust-anchor {} --at {at}",
            f("evidence.bin"),
            f("anchor.pem")
        )
    }
}

/// Simulate `tee` evidence binding `report_data`, under a freshly generated hierarchy valid
/// at `now`.
pub fn simulate(
    tee: TeeKind,
    report_data: &[u8; 64],
    options: &SimOptions,
    now: OffsetDateTime,
) -> Result<Simulated, SimError> {
    match tee {
        TeeKind::Sgx | TeeKind::Tdx => {
            let pki = IntelPki::generate(now)?;
            let tdx = tee == TeeKind::Tdx;
            let evidence = if tdx {
                pki.tdx_quote(&TdxParams {
                    report_data: *report_data,
                    debug: options.debug,
                    ..TdxParams::default()
                })?
            } else {
                pki.sgx_quote(&SgxParams {
                    report_data: *report_data,
                    debug: options.debug,
                    isv_svn: options.svn,
                    ..SgxParams::default()
                })?
            };
            Ok(Simulated {
                tee,
                evidence,
                anchor_pem: pki.root_pem(),
                collateral_json: Some(combined_collateral(&pki, tdx, options, now)?),
                vek_der: None,
                chain_pem: None,
                nonce: None,
            })
        }
        TeeKind::Snp => {
            let pki = AmdPki::generate(now)?;
            let (evidence, vek) = pki.report(&SnpParams {
                report_data: *report_data,
                debug: options.debug,
                guest_svn: u32::from(options.svn),
                ..SnpParams::default()
            })?;
            Ok(Simulated {
                tee,
                evidence,
                anchor_pem: pki.ark_pem(),
                collateral_json: None,
                vek_der: Some(vek),
                chain_pem: Some(pki.chain_pem()),
                nonce: None,
            })
        }
        TeeKind::AzSnpVtpm => {
            let pki = AmdPki::generate(now)?;
            let snp = SnpParams {
                debug: options.debug,
                guest_svn: u32::from(options.svn),
                ..SnpParams::default()
            };
            Ok(Simulated {
                tee,
                evidence: super::azure::az_snp_vtpm(&pki, &snp, report_data)?,
                anchor_pem: pki.ark_pem(),
                collateral_json: None,
                vek_der: None,
                chain_pem: Some(pki.chain_pem()),
                nonce: Some(report_data.to_vec()),
            })
        }
        TeeKind::AzTdxVtpm => {
            let pki = IntelPki::generate(now)?;
            let tdx = TdxParams {
                debug: options.debug,
                ..TdxParams::default()
            };
            Ok(Simulated {
                tee,
                evidence: super::azure::az_tdx_vtpm(&pki, &tdx, report_data)?,
                anchor_pem: pki.root_pem(),
                collateral_json: Some(combined_collateral(&pki, true, options, now)?),
                vek_der: None,
                chain_pem: None,
                nonce: Some(report_data.to_vec()),
            })
        }
    }
}

/// The simulated platform's collateral at the requested TCB status, as combined JSON.
fn combined_collateral(
    pki: &IntelPki,
    tdx: bool,
    options: &SimOptions,
    now: OffsetDateTime,
) -> Result<String, SimError> {
    pki.collateral(tdx, options.tcb, now)?
        .to_combined_json()
        .map_err(|e| SimError::Cert(e.to_string()))
}
