//! Collateral from the vendors' certification services: Intel DCAP collateral for a quote from
//! Intel's Provisioning Certification Service (PCS) or a caching service (PCCS) that speaks its
//! v4 API, and AMD's ASK/ARK chain per product line from the Key Distribution Service (KDS).
//!
//! For the platform a quote's PCK certificate names (FMSPC, and whether the Platform or the
//! Processor CA issued it), [`PcsClient`] fetches the TCB info (`/sgx|tdx/certification/v4/tcb`),
//! the QE or TD_QE identity (`…/qe/identity`), the PCK CRL (`/sgx/certification/v4/pckcrl`), the
//! Root CA CRL, and the issuer chains the responses carry in headers, and returns them parsed
//! (the trust core's `Collateral`, handed to verifiers as it is). Nothing here is trusted:
//! every piece is signature-checked by the verifier against the Intel root.
//!
//! Results are reused (Intel's for an hour per platform, AMD's chains for a day), so steady
//! traffic costs no requests.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use attest::claims::SnpTcb;
use attest::dcap::{Collateral, DcapError, PckExtensions, Quote};
use attest::evidence::Inputs;
use attest::snp::Product;
use attest::x509::parse_pem_chain;
use percent_encoding::percent_decode_str;

/// Intel's PCS.
pub const INTEL_PCS: &str = "https://api.trustedservices.intel.com";
/// AMD's KDS.
pub const AMD_KDS: &str = "https://kdsintf.amd.com";
/// VCEKs kept at most; beyond, the cache starts over.
const MAX_VCEKS: usize = 4096;
/// How long an AMD chain is reused (ASKs and ARKs live for years).
const CHAIN_REUSE: Duration = Duration::from_secs(24 * 3600);
/// Where Intel publishes the Root CA CRL (the CRL distribution point of its PCK CAs).
const INTEL_ROOT_CA_CRL: &str = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der";
/// How long fetched collateral is reused for a platform.
const REUSE: Duration = Duration::from_secs(3600);
/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Why collateral could not be fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PcsError {
    /// The evidence is not what it claims to be.
    #[error("the evidence: {0}")]
    Evidence(#[source] attest::evidence::VerifyError),
    /// The quote, or the PCK certificate in it, does not say which platform it comes from.
    #[error("the quote names no platform to fetch collateral for: {0}")]
    Quote(#[source] DcapError),
    /// The service could not be reached.
    #[error("GET {url} failed; check the PCS/PCCS URL and that this machine can reach it")]
    Unreachable {
        /// The request.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The service answered with an error status.
    #[error("GET {url} answered {status}: {hint}")]
    Status {
        /// The request.
        url: String,
        /// The HTTP status.
        status: u16,
        /// What it likely means.
        hint: &'static str,
    },
    /// A response lacked the header that carries its issuer chain.
    #[error("GET {url}: the response has no {header} header; is this a PCS/PCCS v4 API?")]
    MissingHeader {
        /// The request.
        url: String,
        /// The header.
        header: &'static str,
    },
    /// What the service returned is not usable collateral.
    #[error("the collateral from {base} is unusable")]
    Collateral {
        /// The service.
        base: String,
        /// What is wrong with it.
        #[source]
        source: DcapError,
    },
    /// The HTTPS client could not be set up.
    #[error("cannot set up HTTPS to {base}: {reason}")]
    Client {
        /// The service.
        base: String,
        /// Why.
        reason: String,
    },
}

/// Which collateral a quote needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Platform {
    tdx: bool,
    fmspc: [u8; 6],
    processor_ca: bool,
}

impl Platform {
    fn of(quote: &[u8]) -> Result<Self, PcsError> {
        let quote = Quote::parse(quote).map_err(PcsError::Quote)?;
        let chain = parse_pem_chain(&quote.certification.pck_chain_pem)
            .map_err(|e| PcsError::Quote(DcapError::PckChain(e)))?;
        let leaf = chain.first().ok_or(PcsError::Quote(DcapError::PckChain(
            attest::x509::CertError::EmptyChain,
        )))?;
        let extensions = PckExtensions::from_cert(leaf).map_err(PcsError::Quote)?;
        Ok(Self {
            tdx: quote.is_tdx(),
            fmspc: extensions.fmspc,
            processor_ca: leaf.issuer().contains("Processor"),
        })
    }

    fn tee(self) -> &'static str {
        if self.tdx { "tdx" } else { "sgx" }
    }
}

/// Fetched things (parsed collateral, a PEM chain, a VCEK) by key, reused while younger than
/// a maximum age; past `capacity` entries it starts over.
#[derive(Debug)]
pub struct Reuse<K, V = Arc<Vec<u8>>> {
    max_age: Duration,
    capacity: usize,
    entries: RwLock<HashMap<K, (Instant, V)>>,
}

impl<K: std::hash::Hash + Eq, V: Clone> Reuse<K, V> {
    /// An empty cache.
    pub fn new(max_age: Duration, capacity: usize) -> Self {
        Self {
            max_age,
            capacity,
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// What is kept for `key`, unless too old.
    pub fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.read().ok()?;
        let (at, value) = entries.get(key)?;
        (at.elapsed() < self.max_age).then(|| value.clone())
    }

    /// Keep `value` for `key`, and return it.
    pub fn put(&self, key: K, value: V) -> V {
        if let Ok(mut entries) = self.entries.write() {
            if entries.len() >= self.capacity {
                entries.clear();
            }
            entries.insert(key, (Instant::now(), value.clone()));
        }
        value
    }
}

/// Fetches (and reuses) collateral from one PCS or PCCS.
#[derive(Debug)]
pub struct PcsClient {
    base: String,
    root_ca_crl_url: String,
    http: reqwest::Client,
    fetched: Reuse<Platform, Arc<Collateral>>,
}

impl PcsClient {
    /// A client for `base` ([`INTEL_PCS`], or a PCCS such as `https://pccs.example:8081`).
    /// HTTPS servers are verified against the web PKI and `extra_roots` (DER certificates: a
    /// PCCS's own CA).
    pub fn new(base: &str, extra_roots: &[Vec<u8>]) -> Result<Self, PcsError> {
        let base = base.trim_end_matches('/').to_string();
        let http = https_client(&base, extra_roots)?;
        // Intel's PCS has no Root CA CRL endpoint: the CRL lives where the certificates say.
        let root_ca_crl_url = if base == INTEL_PCS {
            INTEL_ROOT_CA_CRL.to_string()
        } else {
            format!("{base}/sgx/certification/v4/rootcacrl")
        };
        Ok(Self {
            base,
            root_ca_crl_url,
            http,
            fetched: Reuse::new(REUSE, 1024),
        })
    }

    /// The service's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The collateral for `quote` (an SGX or TDX quote), fetched or reused; parsed, not yet
    /// verified.
    pub async fn collateral(&self, quote: &[u8]) -> Result<Arc<Collateral>, PcsError> {
        let platform = Platform::of(quote)?;
        if let Some(collateral) = self.fetched.get(&platform) {
            return Ok(collateral);
        }
        let fetched = Arc::new(self.fetch(platform).await?);
        Ok(self.fetched.put(platform, fetched))
    }

    async fn fetch(&self, platform: Platform) -> Result<Collateral, PcsError> {
        let base = &self.base;
        let tee = platform.tee();
        let fmspc = hex::encode(platform.fmspc);
        let ca = if platform.processor_ca {
            "processor"
        } else {
            "platform"
        };
        tracing::info!(%base, tee, %fmspc, ca, "fetching DCAP collateral");
        let (tcb_info, tcb_chain) = get(
            &self.http,
            &format!("{base}/{tee}/certification/v4/tcb?fmspc={fmspc}"),
            Some("TCB-Info-Issuer-Chain"),
        )
        .await?;
        let (qe_identity, qe_chain) = get(
            &self.http,
            &format!("{base}/{tee}/certification/v4/qe/identity"),
            Some("SGX-Enclave-Identity-Issuer-Chain"),
        )
        .await?;
        let (pck_crl, pck_crl_chain) = get(
            &self.http,
            &format!("{base}/sgx/certification/v4/pckcrl?ca={ca}&encoding=der"),
            Some("SGX-PCK-CRL-Issuer-Chain"),
        )
        .await?;
        let (root_ca_crl, _) = get(&self.http, &self.root_ca_crl_url, None).await?;
        let files = [
            ("tcb_info_response.json", tcb_info),
            ("tcb_info_issuer_chain.pem", tcb_chain.into_bytes()),
            ("qe_identity_response.json", qe_identity),
            ("qe_identity_issuer_chain.pem", qe_chain.into_bytes()),
            ("pck_crl.der", pck_crl),
            ("pck_crl_issuer_chain.pem", pck_crl_chain.into_bytes()),
            ("root_ca_crl.der", root_ca_crl),
        ];
        let unusable = |source| PcsError::Collateral {
            base: base.clone(),
            source,
        };
        let collateral = Collateral::from_files(&files).map_err(unusable)?;
        // Every piece is there, or the combined form (which a bundle carries) cannot be made.
        collateral.to_combined_json().map_err(unusable)?;
        Ok(collateral)
    }
}

/// An HTTPS client trusting the web PKI and `extra_roots` (DER).
fn https_client(base: &str, extra_roots: &[Vec<u8>]) -> Result<reqwest::Client, PcsError> {
    let client_error = |reason: String| PcsError::Client {
        base: base.to_string(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for der in extra_roots {
        roots
            .add(rustls::pki_types::CertificateDer::from(der.clone()))
            .map_err(|e| client_error(format!("extra root certificate: {e}")))?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| client_error(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| client_error(e.to_string()))
}

/// GET `url`: the body, and the percent-decoded `chain_header` (empty when none is asked).
async fn get(
    http: &reqwest::Client,
    url: &str,
    chain_header: Option<&'static str>,
) -> Result<(Vec<u8>, String), PcsError> {
    let unreachable = |source| PcsError::Unreachable {
        url: url.to_string(),
        source,
    };
    let response = http.get(url).send().await.map_err(unreachable)?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(PcsError::Status {
            url: url.to_string(),
            status,
            hint: status_hint(status),
        });
    }
    let chain = match chain_header {
        None => String::new(),
        Some(header) => response
            .headers()
            .get(header)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| percent_decode_str(v).decode_utf8().ok())
            .map(|v| v.into_owned())
            .ok_or_else(|| PcsError::MissingHeader {
                url: url.to_string(),
                header,
            })?,
    };
    let body = response.bytes().await.map_err(unreachable)?;
    Ok((body.to_vec(), chain))
}

/// A VCEK's identity: product line, hardware ID and the TCB it certifies.
type VcekKey = (Product, Vec<u8>, SnpTcb);

/// Fetches (and reuses) AMD's ASK/ARK chains and VCEKs from the KDS.
#[derive(Debug)]
pub struct KdsClient {
    base: String,
    http: reqwest::Client,
    chains: Reuse<Product>,
    vceks: Reuse<VcekKey>,
}

impl KdsClient {
    /// A client for `base` ([`AMD_KDS`] or a mirror of its `/vcek/v1/<product>/cert_chain`).
    pub fn new(base: &str, extra_roots: &[Vec<u8>]) -> Result<Self, PcsError> {
        let base = base.trim_end_matches('/').to_string();
        let http = https_client(&base, extra_roots)?;
        Ok(Self {
            base,
            http,
            chains: Reuse::new(CHAIN_REUSE, 16),
            // VCEKs never change: one per chip and TCB, a fleet's worth.
            vceks: Reuse::new(Duration::MAX, MAX_VCEKS),
        })
    }

    /// The VCEK (DER) of chip `hw_id` at `tcb`, fetched or reused (VCEKs never change).
    pub async fn vcek(
        &self,
        product: Product,
        hw_id: &[u8],
        tcb: &SnpTcb,
    ) -> Result<Arc<Vec<u8>>, PcsError> {
        let key = (product, hw_id.to_vec(), *tcb);
        if let Some(der) = self.vceks.get(&key) {
            return Ok(der);
        }
        let mut url = format!(
            "{}/vcek/v1/{}/{}?blSPL={}&teeSPL={}&snpSPL={}&ucodeSPL={}",
            self.base,
            product.name(),
            hex::encode(hw_id),
            tcb.bootloader,
            tcb.tee,
            tcb.snp,
            tcb.microcode
        );
        if let Some(fmc) = tcb.fmc {
            url.push_str(&format!("&fmcSPL={fmc}"));
        }
        let (der, _) = get(&self.http, &url, None).await?;
        Ok(self.vceks.put(key, Arc::new(der)))
    }

    /// The ASK then the ARK (PEM) of `product`, fetched or reused. The verifier pins the ARK.
    pub async fn cert_chain(&self, product: Product) -> Result<Arc<Vec<u8>>, PcsError> {
        if let Some(pem) = self.chains.get(&product) {
            return Ok(pem);
        }
        let url = format!("{}/vcek/v1/{}/cert_chain", self.base, product.name());
        let (pem, _) = get(&self.http, &url, None).await?;
        Ok(self.chains.put(product, Arc::new(pem)))
    }
}

fn status_hint(status: u16) -> &'static str {
    match status {
        404 => {
            "no collateral for this platform: is it a production platform registered with Intel (or cached by this PCCS)?"
        }
        401 | 403 => "the service refused the request; a PCCS may need this client allowed",
        500..=599 => "the service failed; try again later",
        _ => "unexpected for the PCS v4 API",
    }
}

/// Both vendors' services: what evidence lacks, fetched.
#[derive(Debug)]
pub struct Services {
    /// Intel's PCS or a PCCS.
    pub pcs: PcsClient,
    /// AMD's KDS or a mirror.
    pub kds: KdsClient,
}

impl Services {
    /// Clients for `pcs_url` and `kds_url`, trusting the web PKI and `extra_roots` (DER).
    pub fn new(pcs_url: &str, kds_url: &str, extra_roots: &[Vec<u8>]) -> Result<Self, PcsError> {
        Ok(Self {
            pcs: PcsClient::new(pcs_url, extra_roots)?,
            kds: KdsClient::new(kds_url, extra_roots)?,
        })
    }

    /// Add what verifying `evidence` needs and `inputs` lacks: DCAP collateral for SGX and TDX
    /// quotes (also inside Azure TDX vTPM evidence); the VCEK and ASK/ARK chain for SNP
    /// evidence without them (CoCo guests whose host provisioned no certificates, Azure SNP
    /// vTPM evidence).
    pub async fn complete(&self, evidence: &[u8], inputs: &mut Inputs) -> Result<(), PcsError> {
        let needs = attest::evidence::needs(evidence, inputs.tee).map_err(PcsError::Evidence)?;
        if let (false, Some(quote)) = (inputs.has_dcap_collateral(), &needs.dcap_quote) {
            inputs.dcap_collateral = Some(self.pcs.collateral(quote).await?);
        }
        let Some(kds) = &needs.kds else {
            return Ok(());
        };
        if let (None, Some((hw_id, tcb))) = (&inputs.vek, &kds.vcek) {
            inputs.vek = Some(self.kds.vcek(kds.product, hw_id, tcb).await?.to_vec());
        }
        if inputs.chain.is_none() && kds.chain {
            inputs.chain = Some(self.kds.cert_chain(kds.product).await?.to_vec());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::Reuse;

    #[test]
    fn reuse_keeps_values_until_they_age_or_the_cache_fills() {
        let kept: Reuse<u8, Arc<&str>> = Reuse::new(Duration::from_secs(60), 2);
        let first = kept.put(1, Arc::new("one"));
        assert!(Arc::ptr_eq(&first, &kept.get(&1).unwrap_or_default()));
        assert_eq!(kept.get(&2), None);
        kept.put(2, Arc::new("two"));
        // Full: the next value starts the cache over.
        kept.put(3, Arc::new("three"));
        assert_eq!(kept.get(&1), None);
        assert_eq!(kept.get(&3).as_deref(), Some(&"three"));

        let aged: Reuse<u8, Arc<&str>> = Reuse::new(Duration::ZERO, 2);
        aged.put(1, Arc::new("one"));
        assert_eq!(aged.get(&1), None, "older than the maximum age");
    }
}
