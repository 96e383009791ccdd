//! Fixed-size byte strings written as hex (measurements, IDs), the way every TEE tool prints them.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _};

/// `N` bytes, read from hex (either case, optional `0x`) and written as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hex<const N: usize>(pub [u8; N]);

/// 8 bytes (TD_ATTRIBUTES, XFAM).
pub type Hex8 = Hex<8>;
/// 16 bytes (TEE_TCB_SVN).
pub type Hex16 = Hex<16>;
/// 32 bytes (MRENCLAVE, MRSIGNER, HOST_DATA, PCRs).
pub type Hex32 = Hex<32>;
/// 48 bytes (MRTD, RTMRs, SNP MEASUREMENT).
pub type Hex48 = Hex<48>;

impl<const N: usize> Hex<N> {
    /// Parse hex text of exactly `N` bytes.
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        let digits = trimmed
            .strip_prefix("0x")
            .or_else(|| trimmed.strip_prefix("0X"))
            .unwrap_or(trimmed);
        let bytes = hex::decode(digits).map_err(|e| format!("invalid hex {text:?}: {e}"))?;
        let len = bytes.len();
        bytes
            .try_into()
            .map(Self)
            .map_err(|_| format!("expected {N} bytes of hex, got {len}"))
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8; N] {
        &self.0
    }
}

impl<const N: usize> fmt::Display for Hex<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl<const N: usize> fmt::Debug for Hex<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hex({self})")
    }
}

impl<const N: usize> Serialize for Hex<N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de, const N: usize> Deserialize<'de> for Hex<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(D::Error::custom)
    }
}
