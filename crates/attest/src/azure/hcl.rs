//! The HCL (paravisor) attestation report.

use super::AzureError;

const HEADER_LEN: usize = 0x20;
const HW_REPORT_LEN: usize = 0x4A0;
const TD_REPORT_LEN: usize = 1024;
const IGVM_HEADER_LEN: usize = 20;
const REPORT_TYPE_SNP: u32 = 2;
const REPORT_TYPE_TDX: u32 = 4;

/// The hardware report inside an HCL report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HwReport {
    /// A 1184-byte SEV-SNP attestation report.
    Snp(Vec<u8>),
    /// A 1024-byte TDREPORT.
    Tdx(Vec<u8>),
}

/// A parsed HCL report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HclReport {
    /// HCL report version.
    pub version: u32,
    /// The hardware report.
    pub hw_report: HwReport,
    /// The variable data (JSON) whose SHA-256 the hardware report binds.
    pub var_data: Vec<u8>,
}

fn bad(reason: impl Into<String>) -> AzureError {
    AzureError::Hcl {
        reason: reason.into(),
    }
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, AzureError> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| bad(format!("truncated at offset {at:#x}")))
}

impl HclReport {
    /// Parse an HCL report: `HCLA` header, hardware report area, IGVM request data.
    pub fn parse(b: &[u8]) -> Result<Self, AzureError> {
        if !b.starts_with(b"HCLA") {
            return Err(bad("no HCLA signature"));
        }
        let version = u32_at(b, 4)?;
        let igvm = HEADER_LEN + HW_REPORT_LEN;
        let report_type = u32_at(b, igvm + 8)?;
        let var_len = u32_at(b, igvm + 16)? as usize;
        let var_start = igvm + IGVM_HEADER_LEN;
        let var_data = b
            .get(var_start..var_start.saturating_add(var_len))
            .ok_or_else(|| bad("the variable data runs past the end"))?
            .to_vec();
        let hw = &b[HEADER_LEN..igvm];
        let hw_report = match report_type {
            REPORT_TYPE_SNP => HwReport::Snp(hw.to_vec()),
            REPORT_TYPE_TDX => HwReport::Tdx(hw[..TD_REPORT_LEN].to_vec()),
            other => return Err(bad(format!("unknown hardware report type {other}"))),
        };
        Ok(Self {
            version,
            hw_report,
            var_data,
        })
    }

    /// "SNP" or "TDX".
    pub fn hw_kind(&self) -> &'static str {
        match self.hw_report {
            HwReport::Snp(_) => "SNP",
            HwReport::Tdx(_) => "TDX",
        }
    }

    /// The vTPM attestation key (`HCLAkPub`): RSA modulus and exponent.
    pub fn attestation_key(&self) -> Result<(Vec<u8>, Vec<u8>), AzureError> {
        let doc: serde_json::Value = serde_json::from_slice(&self.var_data)
            .map_err(|e| bad(format!("variable data: {e}")))?;
        let key = doc
            .get("keys")
            .and_then(|k| k.as_array())
            .and_then(|keys| {
                keys.iter()
                    .find(|k| k.get("kid").and_then(|v| v.as_str()) == Some("HCLAkPub"))
            })
            .ok_or_else(|| bad("no HCLAkPub key in the variable data"))?;
        let part = |name: &str| {
            key.get(name)
                .and_then(|v| v.as_str())
                .and_then(crate::encoding::decode_base64_any)
                .ok_or_else(|| bad(format!("HCLAkPub has no usable {name:?}")))
        };
        Ok((part("n")?, part("e")?))
    }

    /// The `user-data` the guest put in the variable data (hex), if any.
    pub fn user_data(&self) -> Vec<u8> {
        serde_json::from_slice::<serde_json::Value>(&self.var_data)
            .ok()
            .and_then(|d| {
                d.get("user-data")
                    .and_then(|u| u.as_str())
                    .and_then(|u| hex::decode(u).ok())
            })
            .unwrap_or_default()
    }
}
