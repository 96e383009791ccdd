//! The simulated attester: real-format evidence from the simulated Intel PCS or AMD KDS.

use std::sync::Arc;

use time::OffsetDateTime;

use super::{Attester, AttesterError, AttesterKind, AuxBlob, AuxKind, Evidence};
use crate::TeeKind;
use crate::sim::SimError;
use crate::sim::amd::{AmdPki, SnpParams};
use crate::sim::intel::{IntelPki, SgxParams, TdxParams};
use crate::snp::cert_table::{self, CertKind};

/// The simulated hierarchy behind a [`SimulatedAttester`].
#[derive(Debug, Clone)]
enum Hierarchy {
    Intel(Arc<IntelPki>),
    Amd(Arc<AmdPki>),
}

/// Produces SGX quote v3, TDX quote v4 or SNP report v5 evidence signed under a simulated
/// hierarchy. Never detected on a machine: it is chosen explicitly. SNP evidence carries the
/// VCEK, ASK and ARK in an extended-report certificate table, as `/dev/sev-guest` would.
#[derive(Debug, Clone)]
pub struct SimulatedAttester {
    tee: TeeKind,
    hierarchy: Hierarchy,
    debug: bool,
}

impl SimulatedAttester {
    /// A simulated attester for `tee` with a fresh hierarchy valid around `now`.
    pub fn new(tee: TeeKind, now: OffsetDateTime) -> Result<Self, SimError> {
        let hierarchy = match tee {
            TeeKind::Sgx | TeeKind::Tdx => Hierarchy::Intel(Arc::new(IntelPki::generate(now)?)),
            TeeKind::Snp => Hierarchy::Amd(Arc::new(AmdPki::generate(now)?)),
            other => {
                return Err(SimError::Param(format!(
                    "{other} cannot be simulated (sgx, tdx and snp can)"
                )));
            }
        };
        Ok(Self {
            tee,
            hierarchy,
            debug: false,
        })
    }

    /// Simulate a TEE in debug mode.
    pub fn with_debug(mut self, debug: bool) -> Self {
        self.debug = debug;
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
}

impl Attester for SimulatedAttester {
    fn kind(&self) -> AttesterKind {
        AttesterKind::Simulated
    }

    fn tee(&self) -> TeeKind {
        self.tee
    }

    fn evidence(&self, report_data: &[u8; 64]) -> Result<Evidence, AttesterError> {
        let report_data = *report_data;
        let debug = self.debug;
        let (bytes, aux) = match (&self.hierarchy, self.tee) {
            (Hierarchy::Intel(pki), TeeKind::Tdx) => (
                pki.tdx_quote(&TdxParams {
                    report_data,
                    debug,
                    ..TdxParams::default()
                })?,
                vec![],
            ),
            (Hierarchy::Intel(pki), _) => (
                pki.sgx_quote(&SgxParams {
                    report_data,
                    debug,
                    ..SgxParams::default()
                })?,
                vec![],
            ),
            (Hierarchy::Amd(pki), _) => {
                let (report, vcek) = pki.report(&SnpParams {
                    report_data,
                    debug,
                    ..SnpParams::default()
                })?;
                let chain = crate::x509::parse_pem_chain(pki.chain_pem().as_bytes())
                    .map_err(|e| SimError::Cert(e.to_string()))?;
                let mut certs: Vec<(CertKind, &[u8])> = vec![(CertKind::Vcek, &vcek)];
                if let [ask, ark] = chain.as_slice() {
                    certs.push((CertKind::Ask, &ask.der));
                    certs.push((CertKind::Ark, &ark.der));
                }
                let table = cert_table::build(&certs);
                (
                    report,
                    vec![AuxBlob {
                        kind: AuxKind::SnpCertTable,
                        bytes: table,
                    }],
                )
            }
        };
        Ok(Evidence {
            tee: self.tee,
            bytes,
            aux,
        })
    }
}
