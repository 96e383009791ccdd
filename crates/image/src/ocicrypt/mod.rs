//! ocicrypt, the image-encryption format of containers/image, skopeo and Confidential
//! Containers: a layer is encrypted with AES-256-CTR under a fresh key and authenticated with
//! HMAC-SHA256 over its ciphertext; the key, the nonce and the clear layer's digest (the
//! "private options") are wrapped to each recipient and carried in the layer descriptor's
//! annotations, next to the public options (cipher, HMAC).
//!
//! Annotations of an encrypted layer:
//! - `org.opencontainers.image.enc.keys.jwe`: base64 of one JWE (JSON serialization) of the
//!   private options, to every JWE recipient;
//! - `org.opencontainers.image.enc.keys.provider.<name>`: base64 of what key provider `<name>`
//!   made of them (for `attestation-agent`, CoCo's annotation packet: see [`provider`]);
//! - `org.opencontainers.image.enc.pubopts`: base64 of the public options.

pub mod cipher;
pub mod jwe;
pub mod provider;

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The annotation of the public options.
pub const PUBOPTS: &str = "org.opencontainers.image.enc.pubopts";
/// The annotation of the JWE-wrapped private options.
pub const KEYS_JWE: &str = "org.opencontainers.image.enc.keys.jwe";
/// The prefix of key providers' annotations.
pub const KEYS_PROVIDER: &str = "org.opencontainers.image.enc.keys.provider.";
/// The prefix of every annotation ocicrypt adds.
pub const ENC_PREFIX: &str = "org.opencontainers.image.enc.";
/// The one layer cipher ocicrypt defines.
pub const AES_256_CTR_HMAC_SHA256: &str = "AES_256_CTR_HMAC_SHA256";

/// Why ocicrypt data is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptError {
    /// An annotation or options document does not decode.
    #[error("{what}: {reason}")]
    Malformed {
        /// Which annotation or document.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The layer uses a cipher other than AES-256-CTR with HMAC-SHA256.
    #[error("the layer's cipher {0:?} is not supported (only {AES_256_CTR_HMAC_SHA256})")]
    UnsupportedCipher(String),
    /// None of the layer's recipients is a key we hold.
    #[error(
        "none of the layer's recipients ({recipients}) can be opened with the keys given: {reason}"
    )]
    NoKey {
        /// The recipient schemes on the layer.
        recipients: String,
        /// Why each key we tried failed.
        reason: String,
    },
    /// A key or recipient could not be used.
    #[error("{0}")]
    Key(String),
    /// The decrypted layer's HMAC differs from the one in its annotations: the ciphertext or
    /// the annotations were changed.
    #[error("the layer's HMAC does not match: its ciphertext or annotations were changed")]
    Hmac,
    /// A cryptographic primitive failed.
    #[error("the layer cipher failed")]
    Cipher,
}

fn malformed(what: &'static str) -> impl Fn(String) -> CryptError {
    move |reason| CryptError::Malformed { what, reason }
}

/// Go's `[]byte` in JSON: standard base64 with padding.
mod bytes_b64 {
    use super::*;

    pub(super) fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = Option::<String>::deserialize(d)?.unwrap_or_default();
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

/// Go's `map[string][]byte` in JSON.
mod map_b64 {
    use super::*;

    pub(super) fn serialize<S: serde::Serializer>(
        map: &BTreeMap<String, Vec<u8>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let encoded: BTreeMap<&str, String> = map
            .iter()
            .map(|(k, v)| (k.as_str(), STANDARD.encode(v)))
            .collect();
        encoded.serialize(s)
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, Vec<u8>>, D::Error> {
        let encoded = Option::<BTreeMap<String, String>>::deserialize(d)?.unwrap_or_default();
        encoded
            .into_iter()
            .map(|(k, v)| Ok((k, STANDARD.decode(v).map_err(serde::de::Error::custom)?)))
            .collect()
    }
}

/// The options anyone may read: the cipher and the HMAC of the ciphertext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicOptions {
    /// The cipher, [`AES_256_CTR_HMAC_SHA256`].
    pub cipher: String,
    /// HMAC-SHA256 of the ciphertext under the layer key.
    #[serde(with = "bytes_b64")]
    pub hmac: Vec<u8>,
    /// Cipher options (none for AES-CTR).
    #[serde(with = "map_b64", default)]
    pub cipheroptions: BTreeMap<String, Vec<u8>>,
}

/// The options only recipients read: the layer key, the clear layer's digest and the nonce.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivateOptions {
    /// The AES-256 key, also the HMAC key.
    #[serde(with = "bytes_b64")]
    pub symkey: Vec<u8>,
    /// The digest of the clear (compressed) layer.
    pub digest: String,
    /// Cipher options: `nonce`, the 16-byte initial counter block.
    #[serde(with = "map_b64", default)]
    pub cipheroptions: BTreeMap<String, Vec<u8>>,
}

impl std::fmt::Debug for PrivateOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateOptions")
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

impl Drop for PrivateOptions {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        self.symkey.zeroize();
    }
}

impl PrivateOptions {
    /// The JSON recipients receive, in a zeroizing buffer.
    pub fn to_json(&self) -> Zeroizing<Vec<u8>> {
        // Serializing a struct of strings and byte maps cannot fail.
        Zeroizing::new(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Parse what a recipient unwrapped.
    pub fn from_json(json: &[u8]) -> Result<Self, CryptError> {
        serde_json::from_slice(json).map_err(|e| malformed("the private options")(e.to_string()))
    }
}

/// Encode the public options as their annotation.
pub fn encode_public(options: &PublicOptions) -> String {
    STANDARD.encode(serde_json::to_vec(options).unwrap_or_default())
}

/// Decode the public options annotation.
pub fn decode_public(annotation: &str) -> Result<PublicOptions, CryptError> {
    let json = STANDARD
        .decode(annotation)
        .map_err(|e| malformed(PUBOPTS)(e.to_string()))?;
    let options: PublicOptions =
        serde_json::from_slice(&json).map_err(|e| malformed(PUBOPTS)(e.to_string()))?;
    if options.cipher != AES_256_CTR_HMAC_SHA256 {
        return Err(CryptError::UnsupportedCipher(options.cipher));
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_round_trip_as_go_writes_them() {
        let private = PrivateOptions {
            symkey: vec![1; 32],
            digest: "sha256:00".into(),
            cipheroptions: [("nonce".to_string(), vec![2; 16])].into(),
        };
        let json = String::from_utf8(private.to_json().to_vec()).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"symkey":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=","digest":"sha256:00","cipheroptions":{"nonce":"AgICAgICAgICAgICAgICAg=="}}"#
        );
        assert_eq!(
            PrivateOptions::from_json(json.as_bytes()).ok(),
            Some(private.clone())
        );
        assert!(!format!("{private:?}").contains("AQEB"));

        let public = PublicOptions {
            cipher: AES_256_CTR_HMAC_SHA256.into(),
            hmac: vec![3; 32],
            cipheroptions: BTreeMap::new(),
        };
        assert_eq!(decode_public(&encode_public(&public)).ok(), Some(public));
        let other = PublicOptions {
            cipher: "AES_128_GCM".into(),
            hmac: vec![],
            cipheroptions: BTreeMap::new(),
        };
        assert!(matches!(
            decode_public(&encode_public(&other)),
            Err(CryptError::UnsupportedCipher(_))
        ));
    }
}
