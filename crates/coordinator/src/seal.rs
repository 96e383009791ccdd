//! Sealing: authenticated encryption of everything the coordinator stores, under a key only
//! this TEE (or, in simulation, this simulated platform) can derive, and a keyed MAC for the
//! store's commitment over its whole state.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use zeroize::Zeroizing;

/// Why sealing or unsealing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The sealed value was modified, moved to another place, or sealed under another key.
    #[error(
        "sealed state `{name}` does not open with this platform's key: it was tampered with, \
         moved, or sealed on another platform"
    )]
    Open {
        /// What did not open (a record name, an audit entry, the root).
        name: String,
    },
    /// The crypto provider failed.
    #[error("sealing failed in the crypto provider")]
    Crypto,
}

/// Where the sealing key comes from, for status output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealSource {
    /// Derived from the simulated platform's saved keys: protects nothing from the host.
    Simulation,
    /// Derived from a key the TEE itself derives for this software (SNP's derived key over
    /// measurement and policy; Gramine's MRSIGNER key on SGX).
    Tee(attest::TeeKind),
}

impl SealSource {
    /// Words for status output.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Simulation => {
                "SIMULATION: AES-256-GCM under a key derived from the simulated platform's files \
                 (not protected by hardware)"
            }
            Self::Tee(attest::TeeKind::Snp) => {
                "AES-256-GCM under a key the SEV-SNP firmware derives from the chip secret, this \
                 guest's launch measurement and policy"
            }
            Self::Tee(attest::TeeKind::Sgx) => {
                "AES-256-GCM under the enclave's MRSIGNER sealing key (EGETKEY through Gramine)"
            }
            Self::Tee(_) => "AES-256-GCM under a key the TEE derives for this software",
        }
    }
}

/// The key everything in the store is sealed under: random, and itself sealed under the
/// platform's key (so a replica or a recovery can be handed the state without the platform).
pub struct StateKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for StateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateKey(..)")
    }
}

impl StateKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, SealError> {
        let mut key = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(key.as_mut()).map_err(|_| SealError::Crypto)?;
        Ok(Self(key))
    }

    /// The key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let key: [u8; 32] = bytes.try_into().ok()?;
        Some(Self(Zeroizing::new(key)))
    }

    /// Its bytes (to be sealed or split, never logged).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The sealer of the state, reporting `source` as where its protection comes from.
    pub fn sealer(&self, source: SealSource) -> Result<Sealer, SealError> {
        Sealer::derive(self.0.as_ref(), source)
    }
}

/// AES-256-GCM with a random nonce per value; the caller's associated data (a record's name
/// and version, an audit entry's position) keeps a sealed value from being replayed anywhere
/// else. A second key, derived from the same seed, MACs stored values for the store's
/// commitment over its whole state.
pub struct Sealer {
    key: LessSafeKey,
    mac: hmac::Key,
    source: SealSource,
    rng: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// A sealer whose key is HKDF-SHA256 of `seed` (a platform sealing secret).
    pub fn derive(seed: &[u8], source: SealSource) -> Result<Self, SealError> {
        let prk = Salt::new(HKDF_SHA256, b"cloister coordinator sealing").extract(seed);
        let mut key = Zeroizing::new([0u8; 32]);
        prk.expand(&[b"state v1"], &AES_256_GCM)
            .and_then(|okm| okm.fill(key.as_mut()))
            .map_err(|_| SealError::Crypto)?;
        let key = UnboundKey::new(&AES_256_GCM, key.as_ref()).map_err(|_| SealError::Crypto)?;
        let mac = prk
            .expand(&[b"state commitment v1"], hmac::HMAC_SHA256)
            .map(hmac::Key::from)
            .map_err(|_| SealError::Crypto)?;
        Ok(Self {
            key: LessSafeKey::new(key),
            mac,
            source,
            rng: SystemRandom::new(),
        })
    }

    /// HMAC-SHA256 of `parts` (each length-prefixed) under the commitment key: a value the host
    /// can neither compute nor predict, so an XOR of them commits to a set of stored values.
    pub fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut context = hmac::Context::with_key(&self.mac);
        for part in parts {
            context.update(&(part.len() as u64).to_le_bytes());
            context.update(part);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(context.sign().as_ref());
        out
    }

    /// Where the key comes from.
    pub fn source(&self) -> SealSource {
        self.source
    }

    /// `nonce ‖ ciphertext ‖ tag`, bound to `aad`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| SealError::Crypto)?;
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + 16);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut out[NONCE_LEN..],
            )
            .map_err(|_| SealError::Crypto)?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Open a value sealed with `aad`; `what` names it in the error.
    pub fn open(
        &self,
        what: &str,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let fail = || SealError::Open {
            name: what.to_string(),
        };
        let (nonce, body) = sealed.split_at_checked(NONCE_LEN).ok_or_else(fail)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| fail())?;
        let mut buffer = Zeroizing::new(body.to_vec());
        let plain_len = self
            .key
            .open_in_place(nonce, Aad::from(aad), &mut buffer)
            .map_err(|_| fail())?
            .len();
        buffer.truncate(plain_len);
        Ok(buffer)
    }
}
