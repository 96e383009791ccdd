//! CoCo init-data: a TOML document (`version`, `algorithm`, `[data]`) whose digest the host
//! bound into the TEE at launch (TDX MRCONFIGID, SNP HOST_DATA, SGX CONFIGID).

use aws_lc_rs::digest;
use serde_json::Value;

use crate::KbsError;

/// Parsed init-data.
#[derive(Debug, Clone, PartialEq)]
pub struct InitData {
    /// The digest over the exact TOML bytes, with the document's algorithm.
    pub digest: Vec<u8>,
    /// `[data]` as JSON, for policies.
    pub claims: Value,
}

/// Parse `body` (format `toml`) and digest it.
pub fn parse(format: &str, body: &str) -> Result<InitData, KbsError> {
    if format != "toml" {
        return Err(KbsError::InitData(format!(
            "format {format} (toml is supported)"
        )));
    }
    let document: toml::Table =
        toml::from_str(body).map_err(|e| KbsError::InitData(format!("TOML: {e}")))?;
    let algorithm = match document.get("algorithm").and_then(toml::Value::as_str) {
        Some("sha256") => &digest::SHA256,
        Some("sha384") => &digest::SHA384,
        Some("sha512") => &digest::SHA512,
        Some(other) => {
            return Err(KbsError::InitData(format!(
                "algorithm {other} (sha256, sha384 and sha512 are supported)"
            )));
        }
        None => return Err(KbsError::InitData("no algorithm".into())),
    };
    let claims = document
        .get("data")
        .map(|d| serde_json::to_value(d).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    Ok(InitData {
        digest: digest::digest(algorithm, body.as_bytes()).as_ref().to_vec(),
        claims,
    })
}

/// Whether `field` (MRCONFIGID, HOST_DATA, CONFIGID) holds `digest`, zero-padded or truncated
/// to the field's size as CoCo does.
pub fn binds(field: &[u8], digest: &[u8]) -> bool {
    let mut expected = vec![0u8; field.len()];
    let n = digest.len().min(field.len());
    expected[..n].copy_from_slice(&digest[..n]);
    expected == field
}
