//! What the coordinator adds to evidence that arrives without it (CoCo guests, hardware
//! launchers): DCAP collateral for SGX and TDX quotes; the VCEK and the ASK/ARK chain for SNP
//! evidence that lacks them (CoCo guests whose host provisioned no certificates, Azure vTPM
//! evidence with only its VCEK). A simulated platform issues its own; on hardware, Intel's PCS
//! (or a PCCS) and AMD's KDS are asked (`pcs::Services`). The verifier checks all of it.

use std::sync::Arc;
use std::time::Duration;

use attest::dcap::Collateral;
use attest::evidence::Inputs;
use attest::sim::SimPlatform;
use pcs::Reuse;
use time::OffsetDateTime;

/// How long a simulated platform's generated collateral is reused.
const SIMULATED_REUSE: Duration = Duration::from_secs(600);

/// Why collateral could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollateralError {
    /// The evidence is not what it claims to be.
    #[error("the evidence: {0}")]
    Evidence(#[source] attest::evidence::VerifyError),
    /// The vendors' services could not supply it.
    #[error(transparent)]
    Pcs(#[from] pcs::PcsError),
    /// The simulated platform could not issue it.
    #[error("the simulated platform could not issue collateral: {0}")]
    Simulated(String),
}

/// What completes evidence: a simulated platform, or the vendors' services.
#[derive(Debug)]
pub(crate) enum CollateralSource {
    /// A simulated platform, with the collateral it generated per TEE (TDX: true).
    Simulated {
        platform: Arc<SimPlatform>,
        generated: Reuse<bool, Arc<Collateral>>,
    },
    /// Intel's PCS (or a PCCS) and AMD's KDS.
    Services(Box<pcs::Services>),
}

impl CollateralSource {
    /// Collateral issued by a simulated platform.
    pub(crate) fn simulated(platform: Arc<SimPlatform>) -> Self {
        Self::Simulated {
            platform,
            generated: Reuse::new(SIMULATED_REUSE, 2),
        }
    }

    /// Add what verifying `evidence` needs and `inputs` lacks: DCAP collateral, the VCEK and
    /// the AMD chain. A simulated platform issues collateral and has its chain, but no VCEK to
    /// hand out: simulated evidence carries its own.
    pub(crate) async fn complete(
        &self,
        evidence: &[u8],
        inputs: &mut Inputs,
    ) -> Result<(), CollateralError> {
        let (platform, generated) = match self {
            Self::Services(services) => return Ok(services.complete(evidence, inputs).await?),
            Self::Simulated {
                platform,
                generated,
            } => (platform, generated),
        };
        let needs =
            attest::evidence::needs(evidence, inputs.tee).map_err(CollateralError::Evidence)?;
        if !inputs.has_dcap_collateral() && needs.dcap_quote.is_some() {
            inputs.dcap_collateral = Some(simulated(platform, generated, needs.is_tdx())?);
        }
        if inputs.chain.is_none() && needs.kds.is_some_and(|kds| kds.chain) {
            let amd = platform
                .amd(OffsetDateTime::now_utc())
                .map_err(|e| CollateralError::Simulated(e.to_string()))?;
            inputs.chain = Some(amd.chain_pem().into_bytes());
        }
        Ok(())
    }
}

/// The simulated platform's collateral for SGX or TDX, generated or reused.
fn simulated(
    platform: &SimPlatform,
    generated: &Reuse<bool, Arc<Collateral>>,
    tdx: bool,
) -> Result<Arc<Collateral>, CollateralError> {
    if let Some(collateral) = generated.get(&tdx) {
        return Ok(collateral);
    }
    let collateral = platform
        .intel()
        .collateral(tdx, attest::TcbStatus::UpToDate, OffsetDateTime::now_utc())
        .map_err(|e| CollateralError::Simulated(e.to_string()))?;
    Ok(generated.put(tdx, Arc::new(collateral)))
}
