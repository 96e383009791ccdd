//! Serde helpers that write byte strings as lowercase hex, the way every TEE tool prints them.

use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

/// Serialize any byte slice as hex.
pub fn serialize<S: Serializer, T: AsRef<[u8]>>(bytes: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(bytes.as_ref()))
}

/// Deserialize a fixed-size array (or a `Vec<u8>`) from hex.
pub fn deserialize<'de, D: Deserializer<'de>, T: FromHexBytes>(d: D) -> Result<T, D::Error> {
    let text = String::deserialize(d)?;
    let bytes = hex::decode(&text).map_err(D::Error::custom)?;
    T::from_bytes(bytes).map_err(D::Error::custom)
}

/// Byte containers that can be built from decoded hex.
pub trait FromHexBytes: Sized {
    /// Build from decoded bytes, failing on a length mismatch.
    fn from_bytes(bytes: Vec<u8>) -> Result<Self, String>;
}

impl FromHexBytes for Vec<u8> {
    fn from_bytes(bytes: Vec<u8>) -> Result<Self, String> {
        Ok(bytes)
    }
}

impl<const N: usize> FromHexBytes for [u8; N] {
    fn from_bytes(bytes: Vec<u8>) -> Result<Self, String> {
        let len = bytes.len();
        bytes
            .try_into()
            .map_err(|_| format!("expected {N} bytes of hex, got {len}"))
    }
}

/// The same for `Option<[u8; N]>` fields.
pub mod option {
    use super::FromHexBytes;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    /// Serialize `Some(bytes)` as hex and `None` as null.
    pub fn serialize<S: Serializer, T: AsRef<[u8]>>(
        v: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => s.serialize_str(&hex::encode(bytes.as_ref())),
            None => s.serialize_none(),
        }
    }

    /// Deserialize null as `None` and hex as `Some(bytes)`.
    pub fn deserialize<'de, D: Deserializer<'de>, T: FromHexBytes>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => {
                let bytes = hex::decode(&text).map_err(D::Error::custom)?;
                T::from_bytes(bytes).map(Some).map_err(D::Error::custom)
            }
        }
    }
}
