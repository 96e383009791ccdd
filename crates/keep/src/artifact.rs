//! Precompiled code that the host cannot forge.
//!
//! `keep compile` output is machine code: a host that could swap it would run code of its
//! choosing inside the TEE. An artifact therefore carries a MAC under a key derived inside
//! the TEE (from its sealing key, so only this TEE running this keep runtime derives it), and
//! the keep checks the MAC before wasmtime sees a byte. The artifact also names the SHA-256 of
//! the original module, which is what the keep attests: the digest is always the `.wasm`'s.
//!
//! The MAC is GMAC (AES-256-GCM over no plaintext, the artifact as associated data, a random
//! 96-bit nonce per artifact): a start checks every byte of code, and GMAC does that at more
//! than twice the speed of HMAC-SHA256 here (AES-NI and carry-less multiply).
//!
//! Layout: `MAGIC ‖ module SHA-256 (32) ‖ kind (1: 0 module, 1 component) ‖ code length
//! (u64 LE) ‖ nonce (12) ‖ wasmtime's serialized code ‖ GMAC tag over everything before it
//! (16)`.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use wasmtime::Engine;
use wasmtime::Module;
use wasmtime::component::Component;
use zeroize::Zeroizing;

use crate::{KeepError, Kind};

/// The artifact's first bytes, with its format version.
const MAGIC: &[u8; 16] = b"cloister-cwasm\x00\x02";
const HEADER: usize = MAGIC.len() + 32 + 1 + 8 + NONCE_LEN;
const MAC_LEN: usize = 16;

/// The key that authenticates artifacts, derived from a TEE's sealing key.
pub struct ArtifactKey(LessSafeKey);

impl std::fmt::Debug for ArtifactKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ArtifactKey(..)")
    }
}

impl ArtifactKey {
    /// HKDF-SHA256 of the TEE's sealing key (or the simulated platform's seed), under a label
    /// of its own so it shares nothing with the coordinator's sealing keys. One output block,
    /// written out (RFC 5869: PRK = HMAC(salt, IKM), OKM = HMAC(PRK, info ‖ 0x01)), so there is
    /// no length to get wrong.
    pub fn derive(sealing_key: &Zeroizing<Vec<u8>>) -> Self {
        let salt = hmac::Key::new(hmac::HMAC_SHA256, b"cloister keep");
        let prk = hmac::sign(&salt, sealing_key);
        let prk = hmac::Key::new(hmac::HMAC_SHA256, prk.as_ref());
        let okm = Zeroizing::new(
            hmac::sign(&prk, b"precompiled code gmac v2\x01")
                .as_ref()
                .to_vec(),
        );
        match UnboundKey::new(&AES_256_GCM, &okm) {
            Ok(key) => Self(LessSafeKey::new(key)),
            // 32 bytes is AES-256's key length; aws-lc refuses no other.
            Err(_) => unreachable_key(),
        }
    }

    fn tag(&self, nonce: [u8; NONCE_LEN], signed: &[u8]) -> Option<[u8; MAC_LEN]> {
        let tag = self
            .0
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(signed),
                &mut [],
            )
            .ok()?;
        tag.as_ref().try_into().ok()
    }
}

#[allow(clippy::panic)]
fn unreachable_key() -> ! {
    panic!("AES-256-GCM refused a 32-byte key")
}

/// Whether `bytes` start like an artifact.
pub(crate) fn is_artifact(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// Make an artifact of `code`, compiled from the module with digest `module_sha256`.
pub(crate) fn seal(
    key: &ArtifactKey,
    module_sha256: &[u8; 32],
    kind: Kind,
    code: &[u8],
) -> Result<Vec<u8>, KeepError> {
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| KeepError::ArtifactRejected {
        reason: "no randomness for its nonce".into(),
    })?;
    let mut out = Vec::with_capacity(HEADER + code.len() + MAC_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(module_sha256);
    out.push(match kind {
        Kind::Module => 0,
        Kind::Component => 1,
    });
    out.extend_from_slice(&(code.len() as u64).to_le_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(code);
    let tag = key
        .tag(nonce, &out)
        .ok_or_else(|| KeepError::ArtifactRejected {
            reason: "it is too large to authenticate".into(),
        })?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// An artifact whose MAC held.
pub(crate) struct Opened<'a> {
    pub(crate) module_sha256: [u8; 32],
    pub(crate) kind: Kind,
    pub(crate) code: &'a [u8],
}

/// Check `bytes`' MAC under `key` and return what it authenticates.
pub(crate) fn open<'a>(key: &ArtifactKey, bytes: &'a [u8]) -> Result<Opened<'a>, KeepError> {
    let reject = |reason: &str| KeepError::ArtifactRejected {
        reason: reason.to_string(),
    };
    if bytes.len() < HEADER + MAC_LEN || !is_artifact(bytes) {
        return Err(reject("it is truncated"));
    }
    let (signed, tag) = bytes.split_at(bytes.len() - MAC_LEN);
    let (header, code) = signed.split_at(HEADER);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&header[HEADER - NONCE_LEN..]);
    let expected = key.tag(nonce, signed);
    if !expected.is_some_and(|expected| {
        aws_lc_rs::constant_time::verify_slices_are_equal(&expected, tag).is_ok()
    }) {
        return Err(reject(
            "its MAC does not verify (changed since it was compiled, or compiled in another TEE)",
        ));
    }
    let mut module_sha256 = [0u8; 32];
    module_sha256.copy_from_slice(&header[MAGIC.len()..MAGIC.len() + 32]);
    let kind = match header[MAGIC.len() + 32] {
        0 => Kind::Module,
        1 => Kind::Component,
        _ => return Err(reject("its kind byte is unknown")),
    };
    let mut length = [0u8; 8];
    length.copy_from_slice(&header[MAGIC.len() + 33..MAGIC.len() + 41]);
    if u64::from_le_bytes(length) != code.len() as u64 {
        return Err(reject("its length field is wrong"));
    }
    Ok(Opened {
        module_sha256,
        kind,
        code,
    })
}

/// Load authenticated module code.
#[allow(unsafe_code)]
pub(crate) fn deserialize_module(engine: &Engine, code: &[u8]) -> Result<Module, KeepError> {
    // SAFETY: wasmtime requires that serialized code come from a trusted `serialize` of a
    // compatible engine. `code` passed `open`: its MAC is under a key only this TEE running
    // this keep runtime derives, and only `KeepEngine::precompile` MACs code, so these are the
    // bytes wasmtime produced in this TEE. wasmtime checks engine compatibility itself.
    unsafe { Module::deserialize(engine, code) }.map_err(|e| KeepError::ArtifactRejected {
        reason: format!("wasmtime cannot load it ({e:#})"),
    })
}

/// Load authenticated component code.
#[allow(unsafe_code)]
pub(crate) fn deserialize_component(engine: &Engine, code: &[u8]) -> Result<Component, KeepError> {
    // SAFETY: as in `deserialize_module`: the code is authenticated as produced by
    // `KeepEngine::precompile` in this TEE.
    unsafe { Component::deserialize(engine, code) }.map_err(|e| KeepError::ArtifactRejected {
        reason: format!("wasmtime cannot load it ({e:#})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> ArtifactKey {
        ArtifactKey::derive(&Zeroizing::new(vec![seed; 32]))
    }

    #[test]
    fn a_sealed_artifact_opens_under_its_key_only() {
        let artifact = seal(&key(1), &[7; 32], Kind::Component, b"code").unwrap();
        let opened = open(&key(1), &artifact).unwrap();
        assert_eq!(opened.module_sha256, [7; 32]);
        assert_eq!(opened.kind, Kind::Component);
        assert_eq!(opened.code, b"code");
        assert!(matches!(
            open(&key(2), &artifact),
            Err(KeepError::ArtifactRejected { .. })
        ));
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let artifact = seal(&key(1), &[7; 32], Kind::Module, b"some machine code").unwrap();
        for at in 0..artifact.len() {
            let mut tampered = artifact.clone();
            tampered[at] ^= 0x01;
            assert!(open(&key(1), &tampered).is_err(), "byte {at}");
        }
        for len in 0..artifact.len() {
            assert!(open(&key(1), &artifact[..len]).is_err(), "cut at {len}");
        }
    }
}
