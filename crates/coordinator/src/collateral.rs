//! Where the coordinator gets DCAP collateral for SGX and TDX evidence that arrives without it
//! (CoCo guests, hardware launchers): a simulated platform issues its own; on hardware, Intel's
//! PCS or a PCCS is asked (and answers are reused). The verifier checks all of it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use attest::TeeKind;
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
    /// Intel's PCS or a PCCS.
    Pcs(pcs::PcsClient),
}

impl CollateralSource {
    /// Collateral issued by a simulated platform.
    pub(crate) fn simulated(platform: Arc<SimPlatform>) -> Self {
        Self::Simulated {
            platform,
            generated: Mutex::new(HashMap::new()),
        }
    }

    /// Combined collateral JSON for `evidence` if it is DCAP evidence (SGX, TDX, Azure TDX
    /// vTPM); `None` for evidence that needs none.
    pub(crate) async fn for_evidence(
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
            Self::Pcs(client) => Ok(Some(client.collateral_json(&quote).await?)),
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
