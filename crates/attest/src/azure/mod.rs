//! Azure confidential VMs: HCL report, vTPM quote, and the SNP report or TD quote inside.
//!
//! Azure's paravisor (HCL) asks the hardware for a report whose REPORT_DATA[0..32] is the
//! SHA-256 of a JSON document (`var_data`) holding the vTPM's attestation key; the vTPM then
//! signs a quote over the PCRs and the verifier's nonce with that key. Verifying the evidence
//! therefore means: the hardware report (SNP or TDX) verifies; it binds `var_data`; `var_data`
//! names the key that signed the TPM quote; the quote's PCR digest matches the PCR values; and
//! the quote carries the expected nonce.

mod hcl;
mod tpm;

use serde::Serialize;
use time::OffsetDateTime;

pub use hcl::{HclReport, HwReport};
pub use tpm::TpmQuote;

use crate::claims::{Claims, Pcr, TeeKind, VtpmClaims};
use crate::crypto::sha256;
use crate::dcap::{Collateral, DcapError, DcapVerifier};
use crate::encoding::decode_base64_any;
use crate::hexser;
use crate::snp::{SnpError, SnpVerifier};

/// Why Azure vTPM evidence was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AzureError {
    /// The evidence JSON is not one of the known forms.
    #[error("the Azure vTPM evidence is malformed: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// The HCL report is malformed.
    #[error("the HCL report is malformed: {reason}")]
    Hcl {
        /// What is wrong.
        reason: String,
    },
    /// The TPM quote is malformed.
    #[error("the TPM quote is malformed: {reason}")]
    Tpm {
        /// What is wrong.
        reason: String,
    },
    /// The hardware report does not bind the HCL's variable data.
    #[error(
        "the hardware report's REPORT_DATA does not bind the HCL variable data (SHA-256 mismatch): the vTPM key is not the one the hardware attested"
    )]
    HclBinding,
    /// The TPM quote is not signed by the attestation key named in the HCL report.
    #[error(
        "the TPM quote signature does not verify under HCLAkPub: the quote was altered or comes from another VM"
    )]
    TpmSignature,
    /// The PCR values do not hash to the quote's PCR digest.
    #[error("the PCR values do not match the TPM quote's PCR digest")]
    PcrDigest,
    /// The nonce in the TPM quote is not the expected one.
    #[error(
        "the TPM quote carries nonce {found}, not the expected {expected}: the quote is stale or replayed"
    )]
    Nonce {
        /// Expected (hex).
        expected: String,
        /// Found (hex).
        found: String,
    },
    /// The hardware report is of the other kind (SNP vs TDX).
    #[error("the HCL report holds a {found} report, but {expected} evidence was expected")]
    WrongHardware {
        /// Expected.
        expected: &'static str,
        /// Found.
        found: &'static str,
    },
    /// The TD quote does not carry the TDREPORT's REPORTDATA.
    #[error(
        "the TD quote's REPORTDATA differs from the HCL TDREPORT's: the quote belongs to another report"
    )]
    TdQuoteBinding,
    /// The SNP report failed verification.
    #[error(transparent)]
    Snp(#[from] SnpError),
    /// The TD quote failed verification.
    #[error(transparent)]
    Dcap(#[from] DcapError),
}

/// Azure vTPM evidence, in any of trustee's forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VtpmEvidence {
    /// The HCL report.
    pub hcl: HclReport,
    /// The TPM quote and PCR values.
    pub quote: TpmQuote,
    /// The VCEK (DER or PEM), for SNP.
    pub vcek: Option<Vec<u8>>,
    /// The TD quote, for TDX.
    pub td_quote: Option<Vec<u8>>,
}

fn malformed(reason: impl Into<String>) -> AzureError {
    AzureError::Malformed {
        reason: reason.into(),
    }
}

/// Bytes given as base64 (either alphabet), hex, or a JSON array of numbers.
fn bytes_field(v: &serde_json::Value, what: &str) -> Result<Vec<u8>, AzureError> {
    match v {
        serde_json::Value::String(s) => {
            if s.len() % 2 == 0
                && s.bytes().all(|b| b.is_ascii_hexdigit())
                && let Ok(b) = hex::decode(s)
            {
                return Ok(b);
            }
            decode_base64_any(s)
                .ok_or_else(|| malformed(format!("{what} is neither hex nor base64")))
        }
        serde_json::Value::Array(items) => items
            .iter()
            .map(|i| {
                i.as_u64()
                    .and_then(|n| u8::try_from(n).ok())
                    .ok_or_else(|| malformed(format!("{what} holds a non-byte")))
            })
            .collect(),
        _ => Err(malformed(format!(
            "{what} is neither a string nor a byte array"
        ))),
    }
}

/// Like [`bytes_field`] but PEM text is kept as is.
fn cert_field(v: &serde_json::Value) -> Result<Vec<u8>, AzureError> {
    match v.as_str() {
        Some(pem) if pem.contains("-----BEGIN") => Ok(pem.as_bytes().to_vec()),
        _ => bytes_field(v, "vcek"),
    }
}

impl VtpmEvidence {
    /// Parse trustee's `az-snp-vtpm` / `az-tdx-vtpm` evidence JSON (v1/v2, and the older form
    /// with byte arrays).
    pub fn parse(json: &[u8]) -> Result<Self, AzureError> {
        let v: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| malformed(e.to_string()))?;
        let field = |k: &str| v.get(k);
        let hcl_bytes = field("hcl_report")
            .or_else(|| field("report"))
            .ok_or_else(|| malformed("no hcl_report"))?;
        let quote = field("tpm_quote")
            .or_else(|| field("quote"))
            .ok_or_else(|| malformed("no tpm_quote"))?;
        let pcrs = quote
            .get("pcrs")
            .and_then(|p| p.as_array())
            .ok_or_else(|| malformed("the TPM quote has no pcrs"))?
            .iter()
            .map(|p| {
                let b = bytes_field(p, "pcr")?;
                b.try_into()
                    .map_err(|_| malformed("a PCR value is not 32 bytes"))
            })
            .collect::<Result<Vec<[u8; 32]>, _>>()?;
        let tpm = TpmQuote::parse(
            &bytes_field(
                quote
                    .get("message")
                    .ok_or_else(|| malformed("no quote message"))?,
                "message",
            )?,
            &bytes_field(
                quote
                    .get("signature")
                    .ok_or_else(|| malformed("no quote signature"))?,
                "signature",
            )?,
            pcrs,
        )?;
        Ok(Self {
            hcl: HclReport::parse(&bytes_field(hcl_bytes, "hcl_report")?)?,
            quote: tpm,
            vcek: field("vcek").map(cert_field).transpose()?,
            td_quote: field("td_quote")
                .map(|q| bytes_field(q, "td_quote"))
                .transpose()?,
        })
    }

    /// The decoded fields, for `inspect`.
    pub fn inspect(&self) -> Inspected<'_> {
        Inspected {
            hcl_version: self.hcl.version,
            hardware: self.hcl.hw_kind(),
            var_data: serde_json::from_slice(&self.hcl.var_data).unwrap_or(serde_json::Value::Null),
            var_data_sha256: sha256(&self.hcl.var_data),
            quote: &self.quote,
        }
    }

    /// Check the vTPM side: TPM signature by HCLAkPub, PCR digest, nonce, and that the
    /// hardware report data binds `var_data`.
    fn check_vtpm(
        &self,
        hw_report_data: &[u8],
        nonce: Option<&[u8]>,
    ) -> Result<VtpmClaims, AzureError> {
        if hw_report_data.get(..32) != Some(&sha256(&self.hcl.var_data)[..]) {
            return Err(AzureError::HclBinding);
        }
        let (n, e) = self.hcl.attestation_key()?;
        crate::crypto::verify_rsa_pkcs1_sha256(&n, &e, &self.quote.message, &self.quote.signature)
            .map_err(|_| AzureError::TpmSignature)?;
        self.quote.check_pcr_digest()?;
        if let Some(expected) = nonce
            && expected != self.quote.extra_data.as_slice()
        {
            return Err(AzureError::Nonce {
                expected: hex::encode(expected),
                found: hex::encode(&self.quote.extra_data),
            });
        }
        Ok(VtpmClaims {
            nonce: self.quote.extra_data.clone(),
            pcrs: self.quote.pcrs.iter().map(|p| Pcr(*p)).collect(),
            user_data: self.hcl.user_data(),
        })
    }
}

/// What `inspect` shows of vTPM evidence.
#[derive(Debug, Serialize)]
pub struct Inspected<'a> {
    hcl_version: u32,
    hardware: &'static str,
    var_data: serde_json::Value,
    #[serde(with = "hexser")]
    var_data_sha256: [u8; 32],
    quote: &'a TpmQuote,
}

/// Verify Azure SNP vTPM evidence: the SNP report (VCEK from the evidence, `chain` given)
/// and the vTPM binding.
pub fn verify_snp(
    evidence: &VtpmEvidence,
    snp: &SnpVerifier,
    chain: &[u8],
    nonce: Option<&[u8]>,
    now: OffsetDateTime,
) -> Result<Claims, AzureError> {
    let HwReport::Snp(report) = &evidence.hcl.hw_report else {
        return Err(AzureError::WrongHardware {
            expected: "SNP",
            found: "TDX",
        });
    };
    let vcek = evidence
        .vcek
        .as_deref()
        .ok_or_else(|| malformed("no vcek in the evidence"))?;
    let mut claims = snp.verify(report, vcek, chain, now)?;
    claims.vtpm = Some(evidence.check_vtpm(&claims.report_data, nonce)?);
    claims.tee = TeeKind::AzSnpVtpm;
    Ok(claims)
}

/// Verify Azure TDX vTPM evidence: the TD quote (DCAP), its binding to the HCL TDREPORT, and
/// the vTPM binding.
pub fn verify_tdx(
    evidence: &VtpmEvidence,
    dcap: &DcapVerifier,
    collateral: &Collateral,
    nonce: Option<&[u8]>,
    now: OffsetDateTime,
) -> Result<Claims, AzureError> {
    let HwReport::Tdx(td_report) = &evidence.hcl.hw_report else {
        return Err(AzureError::WrongHardware {
            expected: "TDX",
            found: "SNP",
        });
    };
    let quote = evidence
        .td_quote
        .as_deref()
        .ok_or_else(|| malformed("no td_quote in the evidence"))?;
    let mut claims = dcap.verify(quote, collateral, now)?;
    let report_data = td_report.get(128..192).ok_or_else(|| AzureError::Hcl {
        reason: "the TDREPORT is too short".into(),
    })?;
    if report_data != claims.report_data.as_slice() {
        return Err(AzureError::TdQuoteBinding);
    }
    claims.vtpm = Some(evidence.check_vtpm(report_data, nonce)?);
    claims.tee = TeeKind::AzTdxVtpm;
    Ok(claims)
}
