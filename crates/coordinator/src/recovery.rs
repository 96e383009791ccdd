//! Multi-party recovery. When a manifest names recovery keys, the state key is split (Shamir
//! over GF(2^8), any `threshold` of the shares recover it and fewer learn nothing) and each
//! share is encrypted to its holder's RSA key (RSA-OAEP-SHA256), as MarbleRun does. A
//! coordinator whose platform can no longer unseal the state key collects shares, each signed
//! by its holder over the recovery session, until `threshold` of them rebuild the key.
//!
//! Beside the state, in the clear (it must be readable when the state is not), lie the
//! [`Commitments`]: the threshold, each holder's public key and the SHA-256 of their share.
//! A wrong share is refused when it arrives. The host can rewrite the commitments, but that
//! only refuses good shares: a rebuilt key that does not open the state opens nothing, and the
//! recovered state's own sealed copy of the commitments must equal the ones used.

use std::collections::BTreeMap;

use attest::crypto::sha256;
use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PublicEncryptingKey};
use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use rustls::pki_types::SubjectPublicKeyInfoDer;
use rustls::pki_types::pem::PemObject as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::seal::StateKey;

/// Why recovery material could not be made, or a share was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecoveryError {
    /// A recovery key is not an RSA public key aws-lc accepts for OAEP.
    #[error(
        "recovery key {holder} is not a usable RSA public key (PEM PUBLIC KEY, 2048 to 8192 bits)"
    )]
    BadKey {
        /// The holder.
        holder: String,
    },
    /// More holders than shares can be made for (255).
    #[error("{holders} recovery keys: at most 255 are supported")]
    TooManyHolders {
        /// How many were named.
        holders: usize,
    },
    /// The crypto provider failed.
    #[error("recovery material could not be made in the crypto provider")]
    Crypto,
    /// No recovery keys were set before the state was sealed away.
    #[error(
        "this state was sealed without recovery keys: it cannot be recovered; start the \
         coordinator on the platform that sealed it, or move the data directory away to start \
         afresh"
    )]
    NotRecoverable,
    /// The commitments beside the state are malformed.
    #[error("the recovery commitments beside the state are malformed: {0}")]
    Malformed(String),
    /// The uploader names no recovery key holder.
    #[error("{holder:?} holds no recovery key; holders are: {known}")]
    UnknownHolder {
        /// The name given.
        holder: String,
        /// The holders' names.
        known: String,
    },
    /// The signature is not the holder's over this session and share.
    #[error(
        "the signature is not {holder}'s over this share in this recovery session (a share \
         signed for an earlier session cannot be replayed): sign it again with `cloister recover`"
    )]
    BadSignature {
        /// The holder.
        holder: String,
    },
    /// The share is not the one made for the holder.
    #[error("this is not the share made for {holder}: check that the secret file is theirs")]
    WrongShare {
        /// The holder.
        holder: String,
    },
    /// The holder's share already arrived in this session.
    #[error("{holder}'s share was already received in this recovery session")]
    Duplicate {
        /// The holder.
        holder: String,
    },
}

/// What lies beside the state in the clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commitments {
    /// How many shares rebuild the key.
    pub threshold: u8,
    /// Each holder's public key and share digest.
    pub holders: BTreeMap<String, Holder>,
}

/// One recovery key holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// Their RSA public key (SubjectPublicKeyInfo DER, hex).
    pub public_key: String,
    /// SHA-256 of their share, hex.
    pub share_sha256: String,
}

impl Commitments {
    /// Read the stored form.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RecoveryError> {
        let parsed: Self =
            serde_json::from_slice(bytes).map_err(|e| RecoveryError::Malformed(e.to_string()))?;
        if parsed.threshold == 0 || usize::from(parsed.threshold) > parsed.holders.len() {
            return Err(RecoveryError::Malformed(format!(
                "threshold {} with {} holders",
                parsed.threshold,
                parsed.holders.len()
            )));
        }
        Ok(parsed)
    }

    /// The stored form.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Recovery material: the commitments to store, and each holder's encrypted share to hand out.
#[derive(Debug)]
pub struct Split {
    /// What goes beside the state.
    pub commitments: Commitments,
    /// Each holder's share, RSA-OAEP-SHA256 encrypted to their key.
    pub encrypted: BTreeMap<String, Vec<u8>>,
}

/// Split `key` among `keys` (holder → PEM public key) so that `threshold` of them (0: all)
/// rebuild it.
pub fn split(
    key: &StateKey,
    keys: &BTreeMap<String, String>,
    threshold: u64,
) -> Result<Split, RecoveryError> {
    let holders =
        u8::try_from(keys.len())
            .ok()
            .filter(|n| *n > 0)
            .ok_or(RecoveryError::TooManyHolders {
                holders: keys.len(),
            })?;
    let threshold = match u8::try_from(threshold) {
        Ok(t) if t > 0 && t <= holders => t,
        _ => holders,
    };
    let shares: Vec<blahaj::Share> = blahaj::Sharks(threshold)
        .dealer(key.as_bytes())
        .take(keys.len())
        .collect();
    let mut commitments = BTreeMap::new();
    let mut encrypted = BTreeMap::new();
    for ((holder, pem), share) in keys.iter().zip(&shares) {
        let bad = || RecoveryError::BadKey {
            holder: holder.clone(),
        };
        let spki = SubjectPublicKeyInfoDer::from_pem_slice(pem.trim_start().as_bytes())
            .map_err(|_| bad())?;
        let public = PublicEncryptingKey::from_der(spki.as_ref()).map_err(|_| bad())?;
        let oaep = OaepPublicEncryptingKey::new(public).map_err(|_| bad())?;
        let share = Zeroizing::new(Vec::from(share));
        let mut out = vec![0u8; oaep.ciphertext_size()];
        let sealed = oaep
            .encrypt(&OAEP_SHA256_MGF1SHA256, &share, &mut out, None)
            .map_err(|_| RecoveryError::Crypto)?;
        encrypted.insert(holder.clone(), sealed.to_vec());
        commitments.insert(
            holder.clone(),
            Holder {
                public_key: hex::encode(spki.as_ref()),
                share_sha256: hex::encode(sha256(&share)),
            },
        );
    }
    Ok(Split {
        commitments: Commitments {
            threshold,
            holders: commitments,
        },
        encrypted,
    })
}

/// Shares collected in one recovery session.
pub struct Collector {
    commitments: Commitments,
    session: [u8; 32],
    received: BTreeMap<String, blahaj::Share>,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("threshold", &self.commitments.threshold)
            .field("received", &self.received.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Where a session stands after a share.
#[derive(Debug)]
pub enum Progress {
    /// More shares are needed.
    Waiting {
        /// How many.
        remaining: u64,
    },
    /// Enough arrived: the rebuilt key (still to be tried on the state).
    Complete(StateKey),
}

impl Collector {
    /// A new session (a fresh random session id) over `commitments`.
    pub fn new(commitments: Commitments) -> Result<Self, RecoveryError> {
        let mut session = [0u8; 32];
        aws_lc_rs::rand::fill(&mut session).map_err(|_| RecoveryError::Crypto)?;
        Ok(Self {
            commitments,
            session,
            received: BTreeMap::new(),
        })
    }

    /// The commitments this session checks shares against.
    pub fn commitments(&self) -> &Commitments {
        &self.commitments
    }

    /// What the status endpoint says.
    pub fn status(&self) -> api::RecoveryStatus {
        api::RecoveryStatus {
            threshold: u64::from(self.commitments.threshold),
            holders: self
                .commitments
                .holders
                .iter()
                .map(|(name, h)| {
                    let der = hex::decode(&h.public_key).unwrap_or_default();
                    (name.clone(), hex::encode(sha256(&der)))
                })
                .collect(),
            received: self.received.keys().cloned().collect(),
            session: hex::encode(self.session),
        }
    }

    /// Take `holder`'s `share` if `signature` is theirs over this session and the share is the
    /// one committed to; return where the session stands.
    pub fn submit(
        &mut self,
        holder: &str,
        share: &[u8],
        signature: &[u8],
    ) -> Result<Progress, RecoveryError> {
        let committed =
            self.commitments
                .holders
                .get(holder)
                .ok_or_else(|| RecoveryError::UnknownHolder {
                    holder: holder.to_string(),
                    known: self
                        .commitments
                        .holders
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
        let public = hex::decode(&committed.public_key)
            .map_err(|_| RecoveryError::Malformed(format!("{holder}'s public key")))?;
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public)
            .verify(&api::recovery_message(&self.session, share), signature)
            .map_err(|_| RecoveryError::BadSignature {
                holder: holder.to_string(),
            })?;
        if hex::encode(sha256(share)) != committed.share_sha256 {
            return Err(RecoveryError::WrongShare {
                holder: holder.to_string(),
            });
        }
        if self.received.contains_key(holder) {
            return Err(RecoveryError::Duplicate {
                holder: holder.to_string(),
            });
        }
        let parsed = blahaj::Share::try_from(share).map_err(|_| RecoveryError::WrongShare {
            holder: holder.to_string(),
        })?;
        self.received.insert(holder.to_string(), parsed);
        let needed = usize::from(self.commitments.threshold);
        if self.received.len() < needed {
            return Ok(Progress::Waiting {
                remaining: (needed - self.received.len()) as u64,
            });
        }
        let shares: Vec<blahaj::Share> = self.received.values().cloned().collect();
        let key = blahaj::Sharks(self.commitments.threshold)
            .recover(&shares)
            .ok()
            .map(Zeroizing::new)
            .and_then(|bytes| StateKey::from_bytes(&bytes))
            .ok_or(RecoveryError::Crypto)?;
        Ok(Progress::Complete(key))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use aws_lc_rs::rsa::{KeyPair, KeySize, OaepPrivateDecryptingKey, PrivateDecryptingKey};
    use aws_lc_rs::signature::RSA_PKCS1_SHA256;

    use super::*;

    struct TestHolder {
        pkcs8: Vec<u8>,
        pem: String,
    }

    fn holder() -> TestHolder {
        use aws_lc_rs::encoding::AsDer as _;
        let key = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let pkcs8 = key.as_der().unwrap().as_ref().to_vec();
        let public = PrivateDecryptingKey::from_pkcs8(&pkcs8)
            .unwrap()
            .public_key()
            .as_der()
            .unwrap()
            .as_ref()
            .to_vec();
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &public);
        TestHolder {
            pkcs8,
            pem: format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n"),
        }
    }

    fn open(h: &TestHolder, encrypted: &[u8]) -> Vec<u8> {
        let key =
            OaepPrivateDecryptingKey::new(PrivateDecryptingKey::from_pkcs8(&h.pkcs8).unwrap())
                .unwrap();
        let mut out = vec![0u8; key.min_output_size()];
        key.decrypt(&OAEP_SHA256_MGF1SHA256, encrypted, &mut out, None)
            .unwrap()
            .to_vec()
    }

    fn sign(h: &TestHolder, session: &str, share: &[u8]) -> Vec<u8> {
        let key = KeyPair::from_pkcs8(&h.pkcs8).unwrap();
        let mut sig = vec![0u8; key.public_modulus_len()];
        key.sign(
            &RSA_PKCS1_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
            &api::recovery_message(&hex::decode(session).unwrap(), share),
            &mut sig,
        )
        .unwrap();
        sig
    }

    #[test]
    fn two_of_three_shares_rebuild_the_key_and_wrong_ones_are_refused() {
        let holders: Vec<TestHolder> = (0..3).map(|_| holder()).collect();
        let keys: BTreeMap<String, String> = ["a", "b", "c"]
            .iter()
            .zip(&holders)
            .map(|(n, h)| (n.to_string(), h.pem.clone()))
            .collect();
        let state_key = StateKey::generate().unwrap();
        let split = split(&state_key, &keys, 2).unwrap();
        assert_eq!(split.commitments.threshold, 2);
        let shares: Vec<Vec<u8>> = ["a", "b", "c"]
            .iter()
            .zip(&holders)
            .map(|(n, h)| open(h, &split.encrypted[*n]))
            .collect();
        assert!(shares.iter().all(|s| s.len() == 33));

        let stored = Commitments::from_bytes(&split.commitments.to_bytes()).unwrap();
        let mut c = Collector::new(stored).unwrap();
        let session = c.status().session;
        // Another holder's signature, another session's signature, another holder's share.
        let other = sign(&holders[1], &session, &shares[0]);
        assert!(matches!(
            c.submit("a", &shares[0], &other),
            Err(RecoveryError::BadSignature { .. })
        ));
        let stale = sign(&holders[0], &"00".repeat(32), &shares[0]);
        assert!(matches!(
            c.submit("a", &shares[0], &stale),
            Err(RecoveryError::BadSignature { .. })
        ));
        let swapped = sign(&holders[0], &session, &shares[1]);
        assert!(matches!(
            c.submit("a", &shares[1], &swapped),
            Err(RecoveryError::WrongShare { .. })
        ));
        assert!(matches!(
            c.submit("nobody", &shares[0], &other),
            Err(RecoveryError::UnknownHolder { .. })
        ));
        let good = sign(&holders[0], &session, &shares[0]);
        assert!(matches!(
            c.submit("a", &shares[0], &good).unwrap(),
            Progress::Waiting { remaining: 1 }
        ));
        assert!(matches!(
            c.submit("a", &shares[0], &good),
            Err(RecoveryError::Duplicate { .. })
        ));
        let third = sign(&holders[2], &session, &shares[2]);
        match c.submit("c", &shares[2], &third).unwrap() {
            Progress::Complete(key) => assert_eq!(key.as_bytes(), state_key.as_bytes()),
            other => panic!("not complete: {other:?}"),
        }
    }

    #[test]
    fn threshold_zero_needs_every_key() {
        let holders: Vec<TestHolder> = (0..2).map(|_| holder()).collect();
        let keys: BTreeMap<String, String> = ["a", "b"]
            .iter()
            .zip(&holders)
            .map(|(n, h)| (n.to_string(), h.pem.clone()))
            .collect();
        let split = split(&StateKey::generate().unwrap(), &keys, 0).unwrap();
        assert_eq!(split.commitments.threshold, 2);
        let mut c = Collector::new(split.commitments).unwrap();
        let session = c.status().session;
        let share = open(&holders[0], &split.encrypted["a"]);
        let signature = sign(&holders[0], &session, &share);
        assert!(matches!(
            c.submit("a", &share, &signature).unwrap(),
            Progress::Waiting { remaining: 1 }
        ));
    }
}
