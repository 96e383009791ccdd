//! The SEV-SNP `ATTESTATION_REPORT` structure (SEV-SNP ABI, table "ATTESTATION_REPORT").

use serde::Serialize;

use super::SnpError;
use crate::claims::SnpTcb;
use crate::hexser;

/// Size of an attestation report.
pub const REPORT_LEN: usize = 0x4A0;
/// The signed part of a report: everything before the signature.
pub const SIGNED_LEN: usize = 0x2A0;

/// The AMD EPYC product line, which decides how TCB versions are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub enum Product {
    /// EPYC 7003 (Zen 3).
    Milan,
    /// EPYC 9004 / 8004 (Zen 4).
    Genoa,
    /// EPYC 9005 (Zen 5): TCB layout with an FMC SPL.
    Turin,
}

impl Product {
    /// AMD's name, as in KDS URLs and certificate names.
    pub fn name(self) -> &'static str {
        match self {
            Self::Milan => "Milan",
            Self::Genoa => "Genoa",
            Self::Turin => "Turin",
        }
    }

    /// From CPUID family and model (report v3 and later).
    pub fn from_cpuid(family: u8, model: u8) -> Option<Self> {
        match (family, model) {
            (0x19, 0x00..=0x0F) => Some(Self::Milan),
            (0x19, 0x10..=0x1F | 0xA0..=0xAF) => Some(Self::Genoa),
            (0x1A, 0x00..=0x11) => Some(Self::Turin),
            _ => None,
        }
    }

    /// From a VEK's productName extension or an ASK's common name ("Milan-B0", "SEV-Genoa").
    pub fn from_name(name: &str) -> Option<Self> {
        let lower = name.to_ascii_lowercase();
        [Self::Milan, Self::Genoa, Self::Turin]
            .into_iter()
            .find(|p| lower.contains(&p.name().to_ascii_lowercase()))
    }
}

/// A raw 8-byte TCB_VERSION; its layout depends on the product line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct TcbVersion(#[serde(with = "hexser")] pub [u8; 8]);

impl TcbVersion {
    /// Decode per product: Milan/Genoa `[bl, tee, 0, 0, 0, 0, snp, ucode]`,
    /// Turin `[fmc, bl, tee, snp, 0, 0, 0, ucode]`.
    pub fn decode(self, product: Product) -> SnpTcb {
        let b = self.0;
        match product {
            Product::Turin => SnpTcb {
                fmc: Some(b[0]),
                bootloader: b[1],
                tee: b[2],
                snp: b[3],
                microcode: b[7],
            },
            Product::Milan | Product::Genoa => SnpTcb {
                fmc: None,
                bootloader: b[0],
                tee: b[1],
                snp: b[6],
                microcode: b[7],
            },
        }
    }
}

/// Which key signed the report (KEY_INFO.SIGNING_KEY).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum SigningKey {
    /// The chip's VCEK.
    Vcek,
    /// The cloud provider's VLEK.
    Vlek,
    /// Not signed.
    None,
    /// A value the ABI reserves.
    Reserved(u32),
}

/// A parsed attestation report. Byte fields are copied out; `raw` keeps the exact bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The report's bytes (exactly 1184).
    #[serde(skip)]
    pub raw: Vec<u8>,
    /// VERSION.
    pub version: u32,
    /// GUEST_SVN.
    pub guest_svn: u32,
    /// POLICY.
    pub policy: u64,
    /// FAMILY_ID.
    #[serde(with = "hexser")]
    pub family_id: [u8; 16],
    /// IMAGE_ID.
    #[serde(with = "hexser")]
    pub image_id: [u8; 16],
    /// VMPL.
    pub vmpl: u32,
    /// SIGNATURE_ALGO.
    pub sig_algo: u32,
    /// CURRENT_TCB.
    pub current_tcb: TcbVersion,
    /// PLATFORM_INFO.
    pub platform_info: u64,
    /// KEY_INFO (bit 0 AUTHOR_KEY_EN, bit 1 MASK_CHIP_KEY, bits 4:2 SIGNING_KEY).
    pub key_info: u32,
    /// REPORT_DATA.
    #[serde(with = "hexser")]
    pub report_data: [u8; 64],
    /// MEASUREMENT.
    #[serde(with = "hexser")]
    pub measurement: [u8; 48],
    /// HOST_DATA.
    #[serde(with = "hexser")]
    pub host_data: [u8; 32],
    /// ID_KEY_DIGEST.
    #[serde(with = "hexser")]
    pub id_key_digest: [u8; 48],
    /// AUTHOR_KEY_DIGEST.
    #[serde(with = "hexser")]
    pub author_key_digest: [u8; 48],
    /// REPORT_ID.
    #[serde(with = "hexser")]
    pub report_id: [u8; 32],
    /// REPORT_ID_MA.
    #[serde(with = "hexser")]
    pub report_id_ma: [u8; 32],
    /// REPORTED_TCB.
    pub reported_tcb: TcbVersion,
    /// CPUID family, model, stepping (version 3 and later).
    pub cpuid: Option<[u8; 3]>,
    /// CHIP_ID.
    #[serde(with = "hexser")]
    pub chip_id: [u8; 64],
    /// COMMITTED_TCB.
    pub committed_tcb: TcbVersion,
    /// CURRENT build, minor, major.
    pub current_version: [u8; 3],
    /// COMMITTED build, minor, major.
    pub committed_version: [u8; 3],
    /// LAUNCH_TCB.
    pub launch_tcb: TcbVersion,
    /// LAUNCH_MIT_VECTOR (version 5).
    pub launch_mit_vector: Option<u64>,
    /// CURRENT_MIT_VECTOR (version 5).
    pub current_mit_vector: Option<u64>,
    /// Signature R, little-endian, 72 bytes.
    #[serde(with = "hexser")]
    pub signature_r: [u8; 72],
    /// Signature S, little-endian, 72 bytes.
    #[serde(with = "hexser")]
    pub signature_s: [u8; 72],
}

/// Reserved ranges that must be zero, per version: `(start, end)`.
fn reserved_ranges(version: u32) -> &'static [(usize, usize)] {
    match version {
        2 => &[
            (0x4C, 0x50),
            (0x188, 0x1A0),
            (0x1EB, 0x1EC),
            (0x1EF, 0x1F0),
            (0x1F8, 0x2A0),
        ],
        3 | 4 => &[
            (0x4C, 0x50),
            (0x18B, 0x1A0),
            (0x1EB, 0x1EC),
            (0x1EF, 0x1F0),
            (0x1F8, 0x2A0),
        ],
        _ => &[
            (0x4C, 0x50),
            (0x18B, 0x1A0),
            (0x1EB, 0x1EC),
            (0x1EF, 0x1F0),
            (0x208, 0x2A0),
        ],
    }
}

/// Bounds-checked little-endian reads over a report-sized buffer.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn array<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(src) = self.0.get(at..at + N) {
            out.copy_from_slice(src);
        }
        out
    }
    fn u32(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.array(at))
    }
    fn u64(&self, at: usize) -> u64 {
        u64::from_le_bytes(self.array(at))
    }
}

impl Report {
    /// Parse a report. Trailing bytes after the 1184-byte structure are refused unless zero
    /// (some tools pad buffers).
    pub fn parse(bytes: &[u8]) -> Result<Self, SnpError> {
        let raw = bytes
            .get(..REPORT_LEN)
            .ok_or(SnpError::TooShort { len: bytes.len() })?;
        if let Some(pos) = bytes[REPORT_LEN..].iter().position(|&b| b != 0) {
            return Err(SnpError::ReservedNotZero {
                offset: REPORT_LEN + pos,
            });
        }
        let f = Fields(raw);
        let version = f.u32(0x00);
        if !matches!(version, 2..=5) {
            return Err(SnpError::UnsupportedVersion { version });
        }
        for &(start, end) in reserved_ranges(version) {
            if let Some(pos) = raw[start..end].iter().position(|&b| b != 0) {
                return Err(SnpError::ReservedNotZero {
                    offset: start + pos,
                });
            }
        }
        let v5 = version >= 5;
        Ok(Self {
            raw: raw.to_vec(),
            version,
            guest_svn: f.u32(0x04),
            policy: f.u64(0x08),
            family_id: f.array(0x10),
            image_id: f.array(0x20),
            vmpl: f.u32(0x30),
            sig_algo: f.u32(0x34),
            current_tcb: TcbVersion(f.array(0x38)),
            platform_info: f.u64(0x40),
            key_info: f.u32(0x48),
            report_data: f.array(0x50),
            measurement: f.array(0x90),
            host_data: f.array(0xC0),
            id_key_digest: f.array(0xE0),
            author_key_digest: f.array(0x110),
            report_id: f.array(0x140),
            report_id_ma: f.array(0x160),
            reported_tcb: TcbVersion(f.array(0x180)),
            cpuid: (version >= 3).then(|| f.array(0x188)),
            chip_id: f.array(0x1A0),
            committed_tcb: TcbVersion(f.array(0x1E0)),
            current_version: f.array(0x1E8),
            committed_version: f.array(0x1EC),
            launch_tcb: TcbVersion(f.array(0x1F0)),
            launch_mit_vector: v5.then(|| f.u64(0x1F8)),
            current_mit_vector: v5.then(|| f.u64(0x200)),
            signature_r: f.array(0x2A0),
            signature_s: f.array(0x2E8),
        })
    }

    /// The bytes the signature covers.
    pub fn signed_bytes(&self) -> &[u8] {
        &self.raw[..SIGNED_LEN]
    }

    /// KEY_INFO.SIGNING_KEY.
    pub fn signing_key(&self) -> SigningKey {
        match (self.key_info >> 2) & 0x7 {
            0 => SigningKey::Vcek,
            1 => SigningKey::Vlek,
            7 => SigningKey::None,
            other => SigningKey::Reserved(other),
        }
    }

    /// KEY_INFO.MASK_CHIP_KEY: CHIP_ID is zeroed.
    pub fn chip_id_masked(&self) -> bool {
        self.key_info & 0b10 != 0
    }

    /// POLICY.DEBUG (bit 19).
    pub fn debug_allowed(&self) -> bool {
        self.policy & (1 << 19) != 0
    }

    /// The product line, from CPUID (report version 3 and later).
    pub fn product(&self) -> Option<Product> {
        self.cpuid.and_then(|c| Product::from_cpuid(c[0], c[1]))
    }

    /// The signature as big-endian `r || s` (96 bytes), refusing R or S wider than P-384.
    pub fn signature_rs(&self) -> Result<[u8; 96], SnpError> {
        let mut out = [0u8; 96];
        for (le, dst) in [(&self.signature_r, 0), (&self.signature_s, 48)] {
            if le[48..].iter().any(|&b| b != 0) {
                return Err(SnpError::MalformedSignature);
            }
            for i in 0..48 {
                out[dst + i] = le[47 - i];
            }
        }
        Ok(out)
    }
}
