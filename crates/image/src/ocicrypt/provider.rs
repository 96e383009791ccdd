//! The `attestation-agent` key provider of Confidential Containers: the private options are
//! sealed with AES-256-GCM under a key-encryption key (KEK) that the key broker holds as a
//! resource, and the annotation names that resource. A guest opens the layer by attesting to
//! the broker, which releases the KEK only to evidence its policy accepts.
//!
//! The annotation `org.opencontainers.image.enc.keys.provider.attestation-agent` is base64 of
//! the "annotation packet" `{"kid": "kbs:///repo/type/tag", "wrapped_data": b64(ciphertext ‖
//! tag), "iv": b64(12 bytes), "wrap_type": "A256GCM"}` (standard base64).

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::CryptError;

/// The annotation the provider's packets go in.
pub const ANNOTATION: &str = "org.opencontainers.image.enc.keys.provider.attestation-agent";
/// The one wrapping the packet uses here.
pub const A256GCM: &str = "A256GCM";
const IV_LEN: usize = 12;

/// A KEK's location at the key broker: `kbs:///repo/type/tag` (or `kbs://host/repo/type/tag`;
/// the host is the guest's broker either way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyId {
    /// `repo/type/tag`.
    pub path: String,
}

impl KeyId {
    /// Parse `kid`.
    pub fn parse(kid: &str) -> Result<Self, CryptError> {
        let bad = || {
            CryptError::Key(format!(
                "{kid:?} is not a key-broker resource: write kbs:///REPOSITORY/TYPE/TAG"
            ))
        };
        let rest = kid.strip_prefix("kbs://").ok_or_else(bad)?;
        let (_host, path) = rest.split_once('/').ok_or_else(bad)?;
        let parts: Vec<&str> = path.split('/').collect();
        let valid = |part: &&str| {
            !part.is_empty()
                && *part != "."
                && *part != ".."
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        if parts.len() != 3 || !parts.iter().all(valid) {
            return Err(bad());
        }
        Ok(Self {
            path: path.to_string(),
        })
    }

    /// The URI, `kbs:///repo/type/tag`.
    pub fn uri(&self) -> String {
        format!("kbs:///{}", self.path)
    }
}

/// What the annotation carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnotationPacket {
    /// The KEK's resource URI.
    pub kid: String,
    /// The sealed private options and the GCM tag, base64.
    pub wrapped_data: String,
    /// The GCM nonce, base64.
    pub iv: String,
    /// How it is sealed, `A256GCM`.
    #[serde(default = "default_wrap_type")]
    pub wrap_type: String,
}

fn default_wrap_type() -> String {
    A256GCM.into()
}

impl AnnotationPacket {
    /// Seal `plaintext` (the private options) under `kek`, to be opened with the KEK at `kid`.
    pub fn seal(plaintext: &[u8], kid: &KeyId, kek: &[u8]) -> Result<Self, CryptError> {
        let key = gcm_key(kek)?;
        let mut iv = [0; IV_LEN];
        aws_lc_rs::rand::fill(&mut iv).map_err(|_| CryptError::Cipher)?;
        let mut sealed = plaintext.to_vec();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(iv), Aad::empty(), &mut sealed)
            .map_err(|_| CryptError::Cipher)?;
        Ok(Self {
            kid: kid.uri(),
            wrapped_data: STANDARD.encode(sealed),
            iv: STANDARD.encode(iv),
            wrap_type: A256GCM.into(),
        })
    }

    /// Parse a packet (the annotation's value, base64-decoded).
    pub fn parse(json: &[u8]) -> Result<Self, CryptError> {
        serde_json::from_slice(json).map_err(|e| CryptError::Malformed {
            what: "the attestation-agent annotation packet",
            reason: e.to_string(),
        })
    }

    /// The KEK's location.
    pub fn key_id(&self) -> Result<KeyId, CryptError> {
        KeyId::parse(&self.kid)
    }

    /// Open the packet with the KEK: the private options.
    pub fn open(&self, kek: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptError> {
        if self.wrap_type != A256GCM {
            return Err(CryptError::Key(format!(
                "the annotation packet is wrapped with {:?}; only {A256GCM} is supported",
                self.wrap_type
            )));
        }
        let bad = |reason: String| CryptError::Malformed {
            what: "the attestation-agent annotation packet",
            reason,
        };
        let iv: [u8; IV_LEN] = STANDARD
            .decode(&self.iv)
            .map_err(|e| bad(format!("iv: {e}")))?
            .try_into()
            .map_err(|_| bad("the iv is not 12 bytes".into()))?;
        let mut sealed = Zeroizing::new(
            STANDARD
                .decode(&self.wrapped_data)
                .map_err(|e| bad(format!("wrapped_data: {e}")))?,
        );
        let key = gcm_key(kek)?;
        let opened = key
            .open_in_place(Nonce::assume_unique_for_key(iv), Aad::empty(), &mut sealed)
            .map_err(|_| {
                CryptError::Key(format!(
                    "the key at {} does not open this layer's packet (a different key, or a \
                     changed packet)",
                    self.kid
                ))
            })?;
        Ok(Zeroizing::new(opened.to_vec()))
    }
}

fn gcm_key(kek: &[u8]) -> Result<LessSafeKey, CryptError> {
    UnboundKey::new(&AES_256_GCM, kek)
        .map(LessSafeKey::new)
        .map_err(|_| CryptError::Key(format!("a KEK must be 32 bytes, not {}", kek.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_round_trip_and_refuse_other_keys() {
        let kid = KeyId::parse("kbs:///default/image-key/1").unwrap();
        let packet = AnnotationPacket::seal(b"{\"symkey\":\"\"}", &kid, &[7; 32]).unwrap();
        let json = serde_json::to_vec(&packet).unwrap();
        let parsed = AnnotationPacket::parse(&json).unwrap();
        assert_eq!(parsed.key_id().unwrap(), kid);
        assert_eq!(&parsed.open(&[7; 32]).unwrap()[..], b"{\"symkey\":\"\"}");
        assert!(parsed.open(&[8; 32]).is_err());
        assert!(parsed.open(&[7; 16]).is_err());
        for bad in [
            "kbs:///a/b",
            "http:///a/b/c",
            "kbs:///a/../c",
            "kbs:///a/b/c/d",
            "kbs:///a//c",
        ] {
            assert!(KeyId::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            KeyId::parse("kbs://broker:8080/a/b/c").unwrap().uri(),
            "kbs:///a/b/c"
        );
    }
}
