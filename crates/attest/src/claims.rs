//! Normalized claims: what a verifier vouches for once evidence has been checked.
//!
//! Every verifier produces the same [`Claims`] shape so that policy, the coordinator and the key
//! broker can reason over evidence without knowing its wire format.

use serde::{Deserialize, Serialize};

use crate::hexser;

/// The kind of TEE (and evidence format) a claim set came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum TeeKind {
    /// Intel SGX enclave, DCAP quote v3.
    Sgx,
    /// Intel TDX trust domain, DCAP quote v4 or v5.
    Tdx,
    /// AMD SEV-SNP guest, attestation report.
    Snp,
    /// Azure confidential VM on SEV-SNP, attested through the paravisor's vTPM.
    AzSnpVtpm,
    /// Azure confidential VM on TDX, attested through the paravisor's vTPM.
    AzTdxVtpm,
}

impl TeeKind {
    /// The name used on the command line and in CoCo's protocol (`sgx`, `az-snp-vtpm`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sgx => "sgx",
            Self::Tdx => "tdx",
            Self::Snp => "snp",
            Self::AzSnpVtpm => "az-snp-vtpm",
            Self::AzTdxVtpm => "az-tdx-vtpm",
        }
    }
}

impl std::fmt::Display for TeeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TeeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "sgx" => Self::Sgx,
            "tdx" => Self::Tdx,
            "snp" => Self::Snp,
            "az-snp-vtpm" => Self::AzSnpVtpm,
            "az-tdx-vtpm" => Self::AzTdxVtpm,
            other => {
                return Err(format!(
                    "unknown TEE kind {other:?}: expected sgx, tdx, snp, az-snp-vtpm or az-tdx-vtpm"
                ));
            }
        })
    }
}

/// Intel's TCB status of a platform (and QE), as named in PCS TCB info.
///
/// `Revoked` never appears in accepted claims: the verifier rejects revoked platforms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub enum TcbStatus {
    /// The platform is patched to the latest TCB.
    UpToDate,
    /// Patched, but software mitigations (SA-specific) are needed.
    SWHardeningNeeded,
    /// Patched, but the platform configuration needs changes.
    ConfigurationNeeded,
    /// Both of the above.
    ConfigurationAndSWHardeningNeeded,
    /// The platform TCB is older than the latest TCB recovery.
    OutOfDate,
    /// Out of date and configuration changes are needed.
    OutOfDateConfigurationNeeded,
    /// TD 1.5: the TDX module was updated in place; relaunching the TD brings it up to date.
    TDRelaunchAdvised,
    /// TD 1.5: relaunch advised and configuration changes needed.
    TDRelaunchAdvisedConfigurationNeeded,
    /// The TCB level (or the PCK) is revoked.
    Revoked,
}

impl TcbStatus {
    /// Intel's spelling, as in PCS JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UpToDate => "UpToDate",
            Self::SWHardeningNeeded => "SWHardeningNeeded",
            Self::ConfigurationNeeded => "ConfigurationNeeded",
            Self::ConfigurationAndSWHardeningNeeded => "ConfigurationAndSWHardeningNeeded",
            Self::OutOfDate => "OutOfDate",
            Self::OutOfDateConfigurationNeeded => "OutOfDateConfigurationNeeded",
            Self::TDRelaunchAdvised => "TDRelaunchAdvised",
            Self::TDRelaunchAdvisedConfigurationNeeded => "TDRelaunchAdvisedConfigurationNeeded",
            Self::Revoked => "Revoked",
        }
    }

    /// All statuses, in Intel's order.
    pub const ALL: [TcbStatus; 9] = [
        Self::UpToDate,
        Self::SWHardeningNeeded,
        Self::ConfigurationNeeded,
        Self::ConfigurationAndSWHardeningNeeded,
        Self::OutOfDate,
        Self::OutOfDateConfigurationNeeded,
        Self::TDRelaunchAdvised,
        Self::TDRelaunchAdvisedConfigurationNeeded,
        Self::Revoked,
    ];
}

impl std::fmt::Display for TcbStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TcbStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Intel's spelling (every TCB level of every TCB info) without allocating; then any
        // case, with or without `-` and `_` (operators' input).
        let folded = |t: &str| {
            t.bytes()
                .filter(|c| !matches!(c, b'-' | b'_'))
                .map(|c| c.to_ascii_lowercase())
                .collect::<Vec<u8>>()
        };
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .or_else(|| {
                let wanted = folded(s);
                Self::ALL
                    .into_iter()
                    .find(|st| folded(st.as_str()) == wanted)
            })
            .ok_or_else(|| format!("unknown TCB status {s:?}"))
    }
}

/// Claims about one piece of verified evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Which TEE produced the evidence.
    pub tee: TeeKind,
    /// True when the evidence rests on the local simulation root, not on hardware.
    pub simulated: bool,
    /// True when the TEE runs in debug mode (its memory is readable by the host).
    pub debug: bool,
    /// The 64 bytes the workload bound into the evidence.
    #[serde(with = "hexser")]
    pub report_data: [u8; 64],
    /// The platform's TCB status (DCAP evidence). `None` for SEV-SNP, which has no TCB info.
    pub tcb_status: Option<TcbStatus>,
    /// Intel security advisories that apply to the platform's TCB level.
    pub advisory_ids: Vec<String>,
    /// The date of the matched TCB level (RFC 3339), when known.
    pub tcb_date: Option<String>,
    /// The measurements of the workload and its TCB.
    pub measurements: Measurements,
    /// Facts about the platform (FMSPC, chip ID, ...).
    pub platform: Platform,
    /// vTPM facts, for Azure vTPM evidence.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub vtpm: Option<VtpmClaims>,
}

/// Measurements, per TEE kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Measurements {
    /// SGX enclave identity.
    Sgx(SgxMeasurements),
    /// TDX trust domain identity.
    Tdx(Box<TdxMeasurements>),
    /// SEV-SNP guest identity.
    Snp(Box<SnpMeasurements>),
}

/// The identity of an SGX enclave, from its report body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SgxMeasurements {
    /// MRENCLAVE: hash of the enclave's initial contents.
    #[serde(with = "hexser")]
    pub mr_enclave: [u8; 32],
    /// MRSIGNER: hash of the enclave signer's public key.
    #[serde(with = "hexser")]
    pub mr_signer: [u8; 32],
    /// ISVPRODID.
    pub isv_prod_id: u16,
    /// ISVSVN.
    pub isv_svn: u16,
    /// The enclave's CPUSVN.
    #[serde(with = "hexser")]
    pub cpu_svn: [u8; 16],
    /// MISCSELECT.
    pub misc_select: u32,
    /// ATTRIBUTES (flags then XFRM, as in the report).
    #[serde(with = "hexser")]
    pub attributes: [u8; 16],
    /// CONFIGID (SGX2 KSS).
    #[serde(with = "hexser")]
    pub config_id: [u8; 64],
    /// CONFIGSVN.
    pub config_svn: u16,
    /// ISVEXTPRODID.
    #[serde(with = "hexser")]
    pub isv_ext_prod_id: [u8; 16],
    /// ISVFAMILYID.
    #[serde(with = "hexser")]
    pub isv_family_id: [u8; 16],
}

/// The identity of a TDX trust domain, from its TD report (1.0 or 1.5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TdxMeasurements {
    /// MRTD: the initial contents of the TD.
    #[serde(with = "hexser")]
    pub mr_td: [u8; 48],
    /// RTMR0..RTMR3: runtime-extendable measurements.
    pub rtmr: [Rtmr; 4],
    /// MRCONFIGID: software-defined configuration (CoCo puts the init-data digest here).
    #[serde(with = "hexser")]
    pub mr_config_id: [u8; 48],
    /// MROWNER.
    #[serde(with = "hexser")]
    pub mr_owner: [u8; 48],
    /// MROWNERCONFIG.
    #[serde(with = "hexser")]
    pub mr_owner_config: [u8; 48],
    /// TD_ATTRIBUTES, 8 bytes in quote (little-endian) order.
    #[serde(with = "hexser")]
    pub td_attributes: [u8; 8],
    /// XFAM, 8 bytes in quote order.
    #[serde(with = "hexser")]
    pub xfam: [u8; 8],
    /// TEE_TCB_SVN.
    #[serde(with = "hexser")]
    pub tee_tcb_svn: [u8; 16],
    /// MRSEAM: measurement of the TDX module.
    #[serde(with = "hexser")]
    pub mr_seam: [u8; 48],
    /// MRSIGNERSEAM.
    #[serde(with = "hexser")]
    pub mr_signer_seam: [u8; 48],
    /// SEAM_ATTRIBUTES.
    #[serde(with = "hexser")]
    pub seam_attributes: [u8; 8],
    /// TEE_TCB_SVN2 (TD 1.5 only).
    #[serde(with = "hexser::option", default)]
    pub tee_tcb_svn2: Option<[u8; 16]>,
    /// MRSERVICETD (TD 1.5 only).
    #[serde(with = "hexser::option", default)]
    pub mr_service_td: Option<[u8; 48]>,
    /// TD_ATTRIBUTES bit 28: EPT violations are not converted to #VE.
    pub sept_ve_disable: bool,
}

/// One RTMR value (48 bytes), written as hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Rtmr(#[serde(with = "hexser")] pub [u8; 48]);

/// An SEV-SNP TCB version, decoded per product line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct SnpTcb {
    /// FMC SPL (Turin and later only).
    pub fmc: Option<u8>,
    /// Boot loader SPL.
    pub bootloader: u8,
    /// PSP OS (TEE) SPL.
    pub tee: u8,
    /// SNP firmware SPL.
    pub snp: u8,
    /// Microcode SPL.
    pub microcode: u8,
}

/// Which AMD key signed an SNP report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum SnpSigningKey {
    /// Versioned Chip Endorsement Key, per chip and TCB.
    Vcek,
    /// Versioned Loaded Endorsement Key, per cloud provider.
    Vlek,
}

/// The identity of an SEV-SNP guest, from its attestation report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnpMeasurements {
    /// Report version (2, 3 or 5).
    pub report_version: u32,
    /// MEASUREMENT: launch digest of the guest.
    #[serde(with = "hexser")]
    pub measurement: [u8; 48],
    /// HOST_DATA: data the host supplied at launch (CoCo puts the init-data digest here).
    #[serde(with = "hexser")]
    pub host_data: [u8; 32],
    /// ID_KEY_DIGEST: SHA-384 of the ID block's signing key.
    #[serde(with = "hexser")]
    pub id_key_digest: [u8; 48],
    /// AUTHOR_KEY_DIGEST: SHA-384 of the ID key's author key.
    #[serde(with = "hexser")]
    pub author_key_digest: [u8; 48],
    /// FAMILY_ID from the ID block.
    #[serde(with = "hexser")]
    pub family_id: [u8; 16],
    /// IMAGE_ID from the ID block.
    #[serde(with = "hexser")]
    pub image_id: [u8; 16],
    /// GUEST_SVN.
    pub guest_svn: u32,
    /// Guest POLICY.
    pub policy: u64,
    /// The VMPL the report was requested from.
    pub vmpl: u32,
    /// REPORTED_TCB: the TCB the VEK was derived for.
    pub reported_tcb: SnpTcb,
    /// PLATFORM_INFO.
    pub platform_info: u64,
    /// Which key signed the report.
    pub signing_key: SnpSigningKey,
}

/// Facts about the platform that produced the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Platform {
    /// DCAP: the platform's FMSPC (family-model-stepping-platform-custom SKU).
    #[serde(
        with = "hexser::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub fmspc: Option<[u8; 6]>,
    /// DCAP: the PCK certificate's CPUSVN.
    #[serde(
        with = "hexser::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub pck_cpu_svn: Option<[u8; 16]>,
    /// DCAP: the PCK certificate's PCESVN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pce_svn: Option<u16>,
    /// DCAP: the quoting enclave's TCB status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qe_tcb_status: Option<TcbStatus>,
    /// SNP: the chip ID (all zero when MASK_CHIP_ID is set).
    #[serde(
        with = "hexser::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub chip_id: Option<[u8; 64]>,
    /// SNP: the product line (Milan, Genoa, Turin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// SNP: the CURRENT_TCB of the platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_tcb: Option<SnpTcb>,
}

/// Facts from an Azure vTPM quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VtpmClaims {
    /// The TPM quote's extraData: the verifier's nonce.
    #[serde(with = "hexser")]
    pub nonce: Vec<u8>,
    /// The SHA-256 PCR bank, PCR0 first.
    pub pcrs: Vec<Pcr>,
    /// The HCL report's `user-data` (hex), which CoCo binds to its runtime data.
    #[serde(with = "hexser")]
    pub user_data: Vec<u8>,
}

/// One SHA-256 PCR value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Pcr(#[serde(with = "hexser")] pub [u8; 32]);

#[cfg(test)]
mod tests {
    use super::TcbStatus;

    #[test]
    fn tcb_statuses_parse_in_intels_spelling_and_loosely() {
        for status in TcbStatus::ALL {
            assert_eq!(status.as_str().parse::<TcbStatus>(), Ok(status));
        }
        assert_eq!("out-of-date".parse(), Ok(TcbStatus::OutOfDate));
        assert_eq!(
            "sw_hardening_needed".parse(),
            Ok(TcbStatus::SWHardeningNeeded)
        );
        assert!("up to date".parse::<TcbStatus>().is_err());
    }
}
