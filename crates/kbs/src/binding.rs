//! The runtime data a TEE's evidence binds, computed exactly as CoCo's client does: RFC 8785
//! canonical JSON of `{"additional-evidence", "nonce", "tee-pubkey"}`, hashed with SHA-384, and
//! zero-padded into the hardware's report-data field.

use kbs_types::TeePubKey;
use serde_json::json;

use crate::KbsError;

/// SHA-384 over the canonical runtime data.
pub fn runtime_data_digest(
    nonce: &str,
    tee_pubkey: &TeePubKey,
    additional_evidence: &str,
) -> Result<[u8; 48], KbsError> {
    let value = json!({
        "additional-evidence": additional_evidence,
        "nonce": nonce,
        "tee-pubkey": tee_pubkey,
    });
    let canonical = serde_json_canonicalizer::to_vec(&value)
        .map_err(|e| KbsError::Internal(format!("canonical JSON: {e}")))?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA384, &canonical);
    let mut out = [0u8; 48];
    out.copy_from_slice(digest.as_ref());
    Ok(out)
}

/// The digest zero-padded to a 64-byte report-data field (SGX, TDX, SNP).
pub fn report_data(digest: &[u8; 48]) -> [u8; 64] {
    let mut out = [0u8; 64];
    out[..48].copy_from_slice(digest);
    out
}
