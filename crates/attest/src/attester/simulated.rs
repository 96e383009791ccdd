//! The simulated attester: real-format evidence from the simulated Intel PCS or AMD KDS.

use std::sync::Arc;

use time::OffsetDateTime;

use super::{Attester, AttesterError, AttesterKind, AuxBlob, AuxKind, Evidence};
use crate::sim::amd::{AmdPki, SnpParams};
use crate::sim::intel::{IntelPki, SgxParams, TdxParams};
use crate::sim::{SimError, SimPlatform};
use crate::snp::cert_table::{self, CertKind};
use crate::{TcbStatus, TeeKind};

/// The simulated hierarchy behind a [`SimulatedAttester`].
#[derive(Debug, Clone)]
enum Hierarchy {
    Intel(Arc<IntelPki>),
    Amd(Arc<AmdPki>),
}

/// What the simulated TEE measures and reports. `report_data` in the params is ignored: each
/// [`Attester::evidence`] call supplies its own.
#[derive(Debug, Clone, Default)]
pub struct SimMeasurements {
    /// The SGX enclave (MRENCLAVE, MRSIGNER, ISVPRODID, ISVSVN).
    pub sgx: SgxParams,
    /// The TD (MRTD, RTMRs, MRCONFIGID).
    pub tdx: TdxParams,
    /// The SNP guest (MEASUREMENT, HOST_DATA, VMPL, TCB, GUEST_SVN).
    pub snp: SnpParams,
}

/// Produces SGX quote v3, TDX quote v4, SNP report v5 or Azure vTPM (SNP, TDX) evidence signed
/// under a simulated hierarchy. Never detected on a machine: it is chosen explicitly. SGX and
/// TDX evidence carries the platform's collateral; SNP evidence carries the VCEK, ASK and ARK in
/// an extended-report certificate table, as `/dev/sev-guest` would.
#[derive(Debug, Clone)]
pub struct SimulatedAttester {
    tee: TeeKind,
    hierarchy: Hierarchy,
    debug: bool,
    tcb: TcbStatus,
    measurements: SimMeasurements,
}

impl SimulatedAttester {
    /// A simulated attester for `tee` with a fresh hierarchy valid around `now`.
    pub fn new(tee: TeeKind, now: OffsetDateTime) -> Result<Self, SimError> {
        let hierarchy = match tee {
            TeeKind::Sgx | TeeKind::Tdx | TeeKind::AzTdxVtpm => {
                Hierarchy::Intel(Arc::new(IntelPki::generate(now)?))
            }
            TeeKind::Snp | TeeKind::AzSnpVtpm => Hierarchy::Amd(Arc::new(AmdPki::generate(now)?)),
        };
        Ok(Self::with_hierarchy(tee, hierarchy))
    }

    /// A simulated attester for `tee` on a shared simulated platform.
    pub fn on_platform(
        tee: TeeKind,
        platform: &SimPlatform,
        now: OffsetDateTime,
    ) -> Result<Self, SimError> {
        let hierarchy = match tee {
            TeeKind::Sgx | TeeKind::Tdx | TeeKind::AzTdxVtpm => Hierarchy::Intel(platform.intel()),
            TeeKind::Snp | TeeKind::AzSnpVtpm => Hierarchy::Amd(platform.amd(now)?),
        };
        Ok(Self::with_hierarchy(tee, hierarchy))
    }

    fn with_hierarchy(tee: TeeKind, hierarchy: Hierarchy) -> Self {
        Self {
            tee,
            hierarchy,
            debug: false,
            tcb: TcbStatus::UpToDate,
            measurements: SimMeasurements::default(),
        }
    }

    /// Simulate a TEE in debug mode.
    pub fn with_debug(mut self, debug: bool) -> Self {
        self.debug = debug;
        self
    }

    /// The TCB status the platform's collateral assigns (SGX, TDX).
    pub fn with_tcb(mut self, tcb: TcbStatus) -> Self {
        self.tcb = tcb;
        self
    }

    /// What the simulated TEE measures.
    pub fn with_measurements(mut self, measurements: SimMeasurements) -> Self {
        self.measurements = measurements;
        self
    }

    /// The simulation root (PEM) that verifies this attester's evidence.
    pub fn anchor_pem(&self) -> String {
        match &self.hierarchy {
            Hierarchy::Intel(pki) => pki.root_pem(),
            Hierarchy::Amd(pki) => pki.ark_pem(),
        }
    }

    /// The Intel hierarchy, to issue collateral for this attester's quotes.
    pub fn intel(&self) -> Option<&IntelPki> {
        match &self.hierarchy {
            Hierarchy::Intel(pki) => Some(pki),
            Hierarchy::Amd(_) => None,
        }
    }

    /// The AMD hierarchy, for the ASK/ARK chain that verifies this attester's reports.
    pub fn amd(&self) -> Option<&AmdPki> {
        match &self.hierarchy {
            Hierarchy::Amd(pki) => Some(pki),
            Hierarchy::Intel(_) => None,
        }
    }

    fn intel_evidence(
        &self,
        pki: &IntelPki,
        report_data: [u8; 64],
    ) -> Result<(Vec<u8>, Vec<AuxBlob>), SimError> {
        let debug = self.debug;
        let tdx = self.tee == TeeKind::Tdx;
        let quote = if tdx {
            pki.tdx_quote(&TdxParams {
                report_data,
                debug,
                ..self.measurements.tdx.clone()
            })?
        } else {
            pki.sgx_quote(&SgxParams {
                report_data,
                debug,
                ..self.measurements.sgx.clone()
            })?
        };
        let collateral = pki.collateral(tdx, self.tcb, OffsetDateTime::now_utc())?;
        let json = collateral
            .to_combined_json()
            .map_err(|e| SimError::Cert(e.to_string()))?;
        Ok((
            quote,
            vec![AuxBlob {
                kind: AuxKind::Collateral,
                bytes: json.into_bytes(),
            }],
        ))
    }

    fn amd_evidence(
        &self,
        pki: &AmdPki,
        report_data: [u8; 64],
    ) -> Result<(Vec<u8>, Vec<AuxBlob>), SimError> {
        let (report, vcek) = pki.report(&SnpParams {
            report_data,
            debug: self.debug,
            ..self.measurements.snp.clone()
        })?;
        let chain = crate::x509::parse_pem_chain(pki.chain_pem().as_bytes())
            .map_err(|e| SimError::Cert(e.to_string()))?;
        let mut certs: Vec<(CertKind, &[u8])> = vec![(CertKind::Vcek, &vcek)];
        if let [ask, ark] = chain.as_slice() {
            certs.push((CertKind::Ask, ask.der()));
            certs.push((CertKind::Ark, ark.der()));
        }
        Ok((
            report,
            vec![AuxBlob {
                kind: AuxKind::SnpCertTable,
                bytes: cert_table::build(&certs),
            }],
        ))
    }
}

impl Attester for SimulatedAttester {
    fn kind(&self) -> AttesterKind {
        AttesterKind::Simulated
    }

    fn tee(&self) -> TeeKind {
        self.tee
    }

    fn evidence(&self, report_data: &[u8; 64]) -> Result<Evidence, AttesterError> {
        self.evidence_for(report_data)
    }

    /// SGX, TDX and SNP reports carry `data` zero-padded; a vTPM quote carries it exactly.
    fn evidence_for(&self, data: &[u8]) -> Result<Evidence, AttesterError> {
        let vtpm = match (self.tee, &self.hierarchy) {
            (TeeKind::AzSnpVtpm, Hierarchy::Amd(pki)) => {
                let snp = SnpParams {
                    debug: self.debug,
                    ..self.measurements.snp.clone()
                };
                Some(crate::sim::azure::az_snp_vtpm(pki, &snp, data)?)
            }
            (TeeKind::AzTdxVtpm, Hierarchy::Intel(pki)) => {
                let tdx = TdxParams {
                    debug: self.debug,
                    ..self.measurements.tdx.clone()
                };
                Some(crate::sim::azure::az_tdx_vtpm(pki, &tdx, data)?)
            }
            _ => None,
        };
        if let Some(bytes) = vtpm {
            return Ok(Evidence {
                tee: self.tee,
                bytes,
                aux: Vec::new(),
            });
        }
        let report_data = super::padded(data)?;
        let (bytes, aux) = match &self.hierarchy {
            Hierarchy::Intel(pki) => self.intel_evidence(pki, report_data)?,
            Hierarchy::Amd(pki) => self.amd_evidence(pki, report_data)?,
        };
        Ok(Evidence {
            tee: self.tee,
            bytes,
            aux,
        })
    }
}
