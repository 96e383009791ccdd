//! Simulated Azure confidential VM evidence (`az-snp-vtpm`, `az-tdx-vtpm`), in trustee's JSON
//! form (v1).
//!
//! As on Azure: a vTPM attestation key (RSA-2048) is named in the HCL variable data, the
//! hardware report (SNP report, or TDREPORT with its TD quote) binds the SHA-256 of that data in
//! its report data, and the key signs a TPM quote over the PCRs and the verifier's nonce.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde_json::json;

use super::SimError;
use super::amd::{AmdPki, SnpParams};
use super::intel::{IntelPki, TdxParams};
use crate::crypto::sha256;

/// The PCRs of the simulated vTPM: 24 SHA-256 values, each derived from its index.
pub fn simulated_pcrs() -> Vec<[u8; 32]> {
    (0u8..24)
        .map(|i| sha256(&[b"cloister simulated PCR ".as_slice(), &[i]].concat()))
        .collect()
}

fn key_error(e: impl std::fmt::Display) -> SimError {
    SimError::Key(e.to_string())
}

/// The vTPM side: its key named in the HCL variable data, and its quote over `nonce`.
struct Vtpm {
    var_data: Vec<u8>,
    tpm_quote: serde_json::Value,
}

impl Vtpm {
    fn new(nonce: &[u8]) -> Result<Self, SimError> {
        if nonce.len() > 64 {
            return Err(SimError::Param(format!(
                "a TPM nonce holds at most 64 bytes, not {}",
                nonce.len()
            )));
        }
        let ak = RsaKeyPair::generate(KeySize::Rsa2048).map_err(key_error)?;
        let public = ak.public_key();
        let var_data = json!({
            "keys": [{
                "kid": "HCLAkPub",
                "kty": "RSA",
                "key_ops": ["sign"],
                "n": B64URL.encode(public.modulus().big_endian_without_leading_zero()),
                "e": B64URL.encode(public.exponent().big_endian_without_leading_zero()),
            }],
            "vm-configuration": { "secure-boot": true, "tpm-enabled": true },
            "user-data": "",
        })
        .to_string()
        .into_bytes();
        let pcrs = simulated_pcrs();
        let message = tpm_quote_message(nonce, &pcrs);
        let mut signature = vec![0u8; ak.public_modulus_len()];
        ak.sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            &message,
            &mut signature,
        )
        .map_err(key_error)?;
        Ok(Self {
            var_data,
            tpm_quote: json!({
                "signature": hex::encode(&signature),
                "message": hex::encode(&message),
                "pcrs": pcrs.iter().map(hex::encode).collect::<Vec<_>>(),
            }),
        })
    }

    /// The hardware report data that binds the variable data.
    fn report_data(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&sha256(&self.var_data));
        out
    }

    /// Trustee's evidence JSON: the TPM quote, the HCL report around `hw_report`, and the
    /// kind's own member (`vcek` or `td_quote`).
    fn evidence(
        self,
        report_type: u32,
        hw_report: &[u8],
        (member, value): (&str, &[u8]),
    ) -> Result<Vec<u8>, SimError> {
        let mut evidence = json!({
            "version": 1,
            "tpm_quote": self.tpm_quote,
            "hcl_report": B64URL.encode(hcl_report(report_type, hw_report, &self.var_data)?),
        });
        evidence[member] = B64URL.encode(value).into();
        Ok(evidence.to_string().into_bytes())
    }
}

/// `az-snp-vtpm` evidence JSON whose TPM quote carries `nonce` (at most 64 bytes).
pub fn az_snp_vtpm(pki: &AmdPki, snp: &SnpParams, nonce: &[u8]) -> Result<Vec<u8>, SimError> {
    let vtpm = Vtpm::new(nonce)?;
    let (report, vcek) = pki.report(&SnpParams {
        report_data: vtpm.report_data(),
        ..snp.clone()
    })?;
    vtpm.evidence(REPORT_TYPE_SNP, &report, ("vcek", &vcek))
}

/// `az-tdx-vtpm` evidence JSON whose TPM quote carries `nonce` (at most 64 bytes).
pub fn az_tdx_vtpm(pki: &IntelPki, tdx: &TdxParams, nonce: &[u8]) -> Result<Vec<u8>, SimError> {
    let vtpm = Vtpm::new(nonce)?;
    let report_data = vtpm.report_data();
    let quote = pki.tdx_quote(&TdxParams {
        report_data,
        ..tdx.clone()
    })?;
    // The TDREPORT the paravisor got: only its REPORTDATA (bytes 128..192) is checked, against
    // the quote's.
    let mut td_report = vec![0u8; 1024];
    td_report[128..192].copy_from_slice(&report_data);
    vtpm.evidence(REPORT_TYPE_TDX, &td_report, ("td_quote", &quote))
}

const REPORT_TYPE_SNP: u32 = 2;
const REPORT_TYPE_TDX: u32 = 4;

/// An HCL report: `HCLA` header, the hardware report area (0x4A0 bytes), then the IGVM request
/// data (size, version, report type, hash type 1 = SHA-256, variable data length) and the
/// variable data.
fn hcl_report(report_type: u32, hw_report: &[u8], var_data: &[u8]) -> Result<Vec<u8>, SimError> {
    const HEADER_LEN: usize = 0x20;
    const HW_REPORT_LEN: usize = 0x4A0;
    const IGVM_HEADER_LEN: u32 = 20;
    let var_len = u32::try_from(var_data.len())
        .map_err(|_| SimError::Param("the HCL variable data is too long".into()))?;
    let mut out = Vec::with_capacity(HEADER_LEN + HW_REPORT_LEN + 20 + var_data.len());
    out.extend(b"HCLA");
    out.extend(2u32.to_le_bytes());
    out.resize(HEADER_LEN, 0);
    out.extend(hw_report);
    out.resize(HEADER_LEN + HW_REPORT_LEN, 0);
    for field in [IGVM_HEADER_LEN + var_len, 1, report_type, 1, var_len] {
        out.extend(field.to_le_bytes());
    }
    out.extend(var_data);
    Ok(out)
}

/// `TPMS_ATTEST` of a quote over all 24 SHA-256 PCRs (TPM big-endian encoding).
fn tpm_quote_message(nonce: &[u8], pcrs: &[[u8; 32]]) -> Vec<u8> {
    fn sized(out: &mut Vec<u8>, bytes: &[u8]) {
        // Callers pass at most 64 bytes.
        out.extend(u16::try_from(bytes.len()).unwrap_or(u16::MAX).to_be_bytes());
        out.extend(bytes);
    }
    let mut m = Vec::new();
    m.extend(0xff54_4347u32.to_be_bytes()); // TPM_GENERATED_VALUE
    m.extend(0x8018u16.to_be_bytes()); // TPM_ST_ATTEST_QUOTE
    sized(&mut m, &sha256(b"cloister simulated vTPM AK")); // qualifiedSigner
    sized(&mut m, nonce); // extraData
    m.extend([0u8; 17]); // clockInfo
    m.extend([0u8; 8]); // firmwareVersion
    m.extend(1u32.to_be_bytes()); // one PCR selection:
    m.extend(0x000Bu16.to_be_bytes()); // the SHA-256 bank,
    m.extend([3, 0xff, 0xff, 0xff]); // PCRs 0–23
    let all: Vec<u8> = pcrs.iter().flatten().copied().collect();
    sized(&mut m, &sha256(&all)); // pcrDigest
    m
}
