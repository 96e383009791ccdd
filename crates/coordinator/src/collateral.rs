//! What the coordinator adds to evidence that arrives without it (CoCo guests, hardware
//! launchers): DCAP collateral for SGX and TDX quotes; the VCEK and the ASK/ARK chain for SNP
//! evidence that lacks them (CoCo guests whose host provisioned no certificates, Azure vTPM
//! evidence with only its VCEK). A simulated platform issues its own; on hardware, Intel's PCS
//! (or a PCCS) and AMD's KDS are asked (`pcs::Services`). The verifier checks all of it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// A simulated platform, with what it generated last per TEE (TDX: true).
    Simulated {
        platform: Arc<SimPlatform>,
        generated: Mutex<HashMap<bool, Generated>>,
    },
    /// Intel's PCS (or a PCCS) and AMD's KDS.
    Services(pcs::Services),
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
        let evidence_error = CollateralError::Evidence;
        if inputs.collateral.is_empty()
            && let Some(quote) =
                attest::evidence::dcap_quote(evidence, inputs.tee).map_err(evidence_error)?
        {
            let tdx = attest::dcap::Quote::parse(&quote)
                .map_err(|e| CollateralError::Evidence(e.into()))?
                .is_tdx();
            let json = simulated(platform, generated, tdx)?;
            inputs.collateral = vec![("collateral.json".into(), json.to_vec())];
        }
        if inputs.chain.is_none()
            && attest::evidence::kds_needs(evidence, inputs.tee)
                .map_err(evidence_error)?
                .is_some_and(|needs| needs.chain)
        {
            let amd = platform
                .amd(OffsetDateTime::now_utc())
                .map_err(|e| CollateralError::Simulated(e.to_string()))?;
            inputs.chain = Some(amd.chain_pem().into_bytes());
        }
        Ok(())
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
