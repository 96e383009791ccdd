//! What the coordinator adds to evidence that arrives without it (CoCo guests, hardware
//! launchers): DCAP collateral for SGX and TDX quotes; the VCEK and the ASK/ARK chain for SNP
//! evidence that lacks them (CoCo guests whose host provisioned no certificates, Azure vTPM
//! evidence with only its VCEK). A simulated platform issues its own; on hardware, Intel's PCS (or a PCCS) and
//! AMD's KDS are asked, and answers are reused. The verifier checks all of it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use attest::TeeKind;
use attest::evidence::Inputs;
use attest::sim::SimPlatform;
use time::OffsetDateTime;

/// How long a simulated platform's generated collateral is reused.
const SIMULATED_REUSE: Duration = Duration::from_secs(600);

/// Combined collateral JSON and when it was generated.
type Generated = (Instant, Arc<Vec<u8>>);

/// Why collateral could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollateralError {
    /// The evidence is not what it claims to be.
    #[error("the evidence: {0}")]
    Evidence(#[source] attest::evidence::VerifyError),
    /// The PCS or PCCS could not supply it.
    #[error(transparent)]
    Pcs(#[from] pcs::PcsError),
    /// The simulated platform could not issue it.
    #[error("the simulated platform could not issue collateral: {0}")]
    Simulated(String),
}

/// The source of DCAP collateral.
#[derive(Debug)]
pub(crate) enum CollateralSource {
    /// A simulated platform, with what it generated last per TEE (TDX: true).
    Simulated {
        platform: Arc<SimPlatform>,
        generated: Mutex<HashMap<bool, Generated>>,
    },
    /// The vendors' services.
    Services {
        /// Intel's PCS or a PCCS.
        pcs: pcs::PcsClient,
        /// AMD's KDS.
        kds: pcs::KdsClient,
    },
}

impl CollateralSource {
    /// Collateral issued by a simulated platform.
    pub(crate) fn simulated(platform: Arc<SimPlatform>) -> Self {
        Self::Simulated {
            platform,
            generated: Mutex::new(HashMap::new()),
        }
    }

    /// Add what verifying `evidence` needs and `inputs` lacks: DCAP collateral, the VCEK and
    /// the AMD chain.
    pub(crate) async fn complete(
        &self,
        evidence: &[u8],
        inputs: &mut Inputs,
    ) -> Result<(), CollateralError> {
        if inputs.collateral.is_empty()
            && let Some(json) = self.dcap_collateral(evidence, inputs.tee).await?
        {
            inputs.collateral = vec![("collateral.json".into(), json.to_vec())];
        }
        if inputs.chain.is_none() || inputs.vek.is_none() {
            self.complete_snp(evidence, inputs).await?;
        }
        Ok(())
    }

    /// The VCEK and ASK/ARK chain SNP evidence lacks, from the KDS. A simulated platform has
    /// its chain, but no VCEK to hand out: simulated evidence carries its own.
    async fn complete_snp(
        &self,
        evidence: &[u8],
        inputs: &mut Inputs,
    ) -> Result<(), CollateralError> {
        let Some(needs) =
            attest::evidence::kds_needs(evidence, inputs.tee).map_err(CollateralError::Evidence)?
        else {
            return Ok(());
        };
        match self {
            Self::Services { kds, .. } => {
                if let (None, Some((hw_id, tcb))) = (&inputs.vek, &needs.vcek) {
                    inputs.vek = Some(kds.vcek(needs.product, hw_id, tcb).await?.to_vec());
                }
                if inputs.chain.is_none() && needs.chain {
                    inputs.chain = Some(kds.cert_chain(needs.product).await?.to_vec());
                }
            }
            Self::Simulated { platform, .. } => {
                if inputs.chain.is_none() && needs.chain {
                    let amd = platform
                        .amd(OffsetDateTime::now_utc())
                        .map_err(|e| CollateralError::Simulated(e.to_string()))?;
                    inputs.chain = Some(amd.chain_pem().into_bytes());
                }
            }
        }
        Ok(())
    }

    /// Combined collateral JSON for `evidence` if it is DCAP evidence (SGX, TDX, Azure TDX
    /// vTPM); `None` for evidence that needs none.
    async fn dcap_collateral(
        &self,
        evidence: &[u8],
        tee: Option<TeeKind>,
    ) -> Result<Option<Arc<Vec<u8>>>, CollateralError> {
        let Some(quote) =
            attest::evidence::dcap_quote(evidence, tee).map_err(CollateralError::Evidence)?
        else {
            return Ok(None);
        };
        match self {
            Self::Services { pcs, .. } => Ok(Some(pcs.collateral_json(&quote).await?)),
            Self::Simulated {
                platform,
                generated,
            } => {
                let tdx = attest::dcap::Quote::parse(&quote)
                    .map_err(|e| CollateralError::Evidence(e.into()))?
                    .is_tdx();
                simulated(platform, generated, tdx).map(Some)
            }
        }
    }
}

fn simulated(
    platform: &SimPlatform,
    generated: &Mutex<HashMap<bool, Generated>>,
    tdx: bool,
) -> Result<Arc<Vec<u8>>, CollateralError> {
    let failed = |e: &dyn std::fmt::Display| CollateralError::Simulated(e.to_string());
    let mut generated = generated.lock().map_err(|_| failed(&"lock poisoned"))?;
    if let Some((at, json)) = generated.get(&tdx)
        && at.elapsed() < SIMULATED_REUSE
    {
        return Ok(Arc::clone(json));
    }
    let collateral = platform
        .intel()
        .collateral(tdx, attest::TcbStatus::UpToDate, OffsetDateTime::now_utc())
        .map_err(|e| failed(&e))?;
    let json = Arc::new(
        collateral
            .to_combined_json()
            .map_err(|e| failed(&e))?
            .into_bytes(),
    );
    generated.insert(tdx, (Instant::now(), Arc::clone(&json)));
    Ok(json)
}
