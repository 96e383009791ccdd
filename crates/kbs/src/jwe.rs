//! Resources encrypted to the TEE's key as CoCo clients decrypt them: flattened JSON JWE,
//! `enc` A256GCM, key management ECDH-ES+A256KW (P-256, P-521) or RSA-OAEP-256.
//!
//! The JSON structures are `kbs_types`' own, so the protected header is serialized by the same
//! code that CoCo's clients use to recompute the AAD; we insert the `epk` members in sorted
//! order so the bytes agree whether or not a client's JSON maps preserve insertion order.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::agreement::{self, ECDH_P256, ECDH_P521, PrivateKey, UnparsedPublicKey};
use aws_lc_rs::key_wrap::{AES_256, KeyEncryptionKey, KeyWrap as _};
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    PrivateDecryptingKey, PublicEncryptingKey, PublicKeyComponents,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use kbs_types::{ProtectedHeader, Response, TeePubKey};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::KbsError;

const ECDH_ES_A256KW: &str = "ECDH-ES+A256KW";
const RSA_OAEP_256: &str = "RSA-OAEP-256";
const A256GCM: &str = "A256GCM";

fn jwe_error(what: &str) -> KbsError {
    KbsError::Jwe(what.to_string())
}

fn key_error(what: impl Into<String>) -> KbsError {
    KbsError::TeeKey(what.into())
}

/// The curves a TEE key may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    /// P-256 (CoCo's default).
    P256,
    /// P-521.
    P521,
}

impl Curve {
    fn from_name(name: &str) -> Result<Self, KbsError> {
        match name {
            "P-256" => Ok(Self::P256),
            "P-521" => Ok(Self::P521),
            other => Err(key_error(format!(
                "curve {other} (P-256 and P-521 are supported)"
            ))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::P256 => "P-256",
            Self::P521 => "P-521",
        }
    }

    fn algorithm(self) -> &'static agreement::Algorithm {
        match self {
            Self::P256 => &ECDH_P256,
            Self::P521 => &ECDH_P521,
        }
    }

    fn coordinate_len(self) -> usize {
        match self {
            Self::P256 => 32,
            Self::P521 => 66,
        }
    }
}

fn b64(name: &str, text: &str) -> Result<Vec<u8>, KbsError> {
    B64URL
        .decode(text)
        .map_err(|_| key_error(format!("{name} is not base64url")))
}

/// `04 ‖ x ‖ y` from a JWK's coordinates.
fn uncompressed_point(curve: Curve, x: &str, y: &str) -> Result<Vec<u8>, KbsError> {
    let (x, y) = (b64("x", x)?, b64("y", y)?);
    let len = curve.coordinate_len();
    if x.len() != len || y.len() != len {
        return Err(key_error(format!(
            "{} coordinates must be {len} bytes",
            curve.name()
        )));
    }
    let mut point = Vec::with_capacity(1 + 2 * len);
    point.push(4);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Ok(point)
}

/// The JWK members of an uncompressed point, in sorted key order.
fn epk(curve: Curve, point: &[u8]) -> Result<Value, KbsError> {
    let len = curve.coordinate_len();
    let coordinates = point
        .get(1..)
        .filter(|c| point.first() == Some(&4) && c.len() == 2 * len)
        .ok_or_else(|| jwe_error("the ephemeral public key is not an uncompressed point"))?;
    let (x, y) = coordinates.split_at(len);
    let mut jwk = Map::new();
    jwk.insert("crv".into(), Value::from(curve.name()));
    jwk.insert("kty".into(), Value::from("EC"));
    jwk.insert("x".into(), Value::from(B64URL.encode(x)));
    jwk.insert("y".into(), Value::from(B64URL.encode(y)));
    Ok(Value::Object(jwk))
}

/// RFC 7518 §4.6.2 Concat KDF with SHA-256 for a 256-bit key, no PartyU/PartyV info.
fn concat_kdf(shared_secret: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut input = Zeroizing::new(Vec::with_capacity(4 + shared_secret.len() + 34));
    input.extend_from_slice(&1u32.to_be_bytes());
    input.extend_from_slice(shared_secret);
    input.extend_from_slice(&(ECDH_ES_A256KW.len() as u32).to_be_bytes());
    input.extend_from_slice(ECDH_ES_A256KW.as_bytes());
    input.extend_from_slice(&0u32.to_be_bytes());
    input.extend_from_slice(&0u32.to_be_bytes());
    input.extend_from_slice(&256u32.to_be_bytes());
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &input);
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(digest.as_ref());
    key
}

fn agree(private: &PrivateKey, curve: Curve, peer: &[u8]) -> Result<Zeroizing<[u8; 32]>, KbsError> {
    agreement::agree(
        private,
        UnparsedPublicKey::new(curve.algorithm(), peer),
        jwe_error("key agreement failed"),
        |z| Ok(concat_kdf(z)),
    )
}

fn random<const N: usize>() -> Result<Zeroizing<[u8; N]>, KbsError> {
    let mut out = Zeroizing::new([0u8; N]);
    SystemRandom::new()
        .fill(out.as_mut())
        .map_err(|_| jwe_error("no randomness"))?;
    Ok(out)
}

/// Encrypt `plaintext` to `key`.
pub fn encrypt(plaintext: &[u8], key: &TeePubKey) -> Result<Response, KbsError> {
    let cek = random::<32>()?;
    let (protected, encrypted_key) = match key {
        TeePubKey::EC { crv, alg, x, y } => {
            if alg != ECDH_ES_A256KW {
                return Err(key_error(format!(
                    "EC alg {alg} ({ECDH_ES_A256KW} is supported)"
                )));
            }
            let curve = Curve::from_name(crv)?;
            let peer = uncompressed_point(curve, x, y)?;
            let ephemeral = PrivateKey::generate(curve.algorithm())
                .map_err(|_| jwe_error("ephemeral key generation failed"))?;
            let public = ephemeral
                .compute_public_key()
                .map_err(|_| jwe_error("ephemeral public key"))?;
            let kek = agree(&ephemeral, curve, &peer)?;
            let mut other = Map::new();
            other.insert("epk".into(), epk(curve, public.as_ref())?);
            (header(ECDH_ES_A256KW, other), wrap(&kek, &cek)?)
        }
        TeePubKey::RSA { alg, k_mod, k_exp } => {
            if alg != RSA_OAEP_256 {
                return Err(key_error(format!(
                    "RSA alg {alg} ({RSA_OAEP_256} is supported)"
                )));
            }
            let components = PublicKeyComponents {
                n: b64("n", k_mod)?,
                e: b64("e", k_exp)?,
            };
            let public: PublicEncryptingKey = components
                .try_into()
                .map_err(|_| key_error("the RSA key is not acceptable"))?;
            let oaep = OaepPublicEncryptingKey::new(public)
                .map_err(|_| key_error("the RSA key is not acceptable"))?;
            let mut out = vec![0u8; oaep.ciphertext_size()];
            let wrapped = oaep
                .encrypt(&OAEP_SHA256_MGF1SHA256, cek.as_ref(), &mut out, None)
                .map_err(|_| jwe_error("RSA-OAEP encryption failed"))?
                .to_vec();
            (header(RSA_OAEP_256, Map::new()), wrapped)
        }
        TeePubKey::AKP { alg, .. } => {
            return Err(key_error(format!("{alg} keys are not supported")));
        }
    };
    seal(protected, encrypted_key, &cek, plaintext)
}

fn header(alg: &str, other_fields: Map<String, Value>) -> ProtectedHeader {
    ProtectedHeader {
        alg: alg.to_string(),
        enc: A256GCM.to_string(),
        other_fields,
    }
}

fn wrap(kek: &[u8; 32], cek: &[u8; 32]) -> Result<Vec<u8>, KbsError> {
    let kek = KeyEncryptionKey::new(&AES_256, kek).map_err(|_| jwe_error("AES key wrap"))?;
    let mut out = [0u8; 40];
    Ok(kek
        .wrap(cek, &mut out)
        .map_err(|_| jwe_error("AES key wrap"))?
        .to_vec())
}

fn gcm_key(cek: &[u8]) -> Result<LessSafeKey, KbsError> {
    UnboundKey::new(&AES_256_GCM, cek)
        .map(LessSafeKey::new)
        .map_err(|_| jwe_error("content key"))
}

fn seal(
    protected: ProtectedHeader,
    encrypted_key: Vec<u8>,
    cek: &[u8; 32],
    plaintext: &[u8],
) -> Result<Response, KbsError> {
    let aad = protected
        .generate_aad()
        .map_err(|_| jwe_error("protected header"))?;
    let iv = random::<NONCE_LEN>()?;
    let mut ciphertext = plaintext.to_vec();
    let tag = gcm_key(cek)?
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(*iv),
            Aad::from(&aad),
            &mut ciphertext,
        )
        .map_err(|_| jwe_error("content encryption"))?;
    Ok(Response {
        protected,
        encrypted_key,
        aad: None,
        iv: iv.to_vec(),
        ciphertext,
        tag: tag.as_ref().to_vec(),
    })
}

/// A TEE key pair, as a guest holds it: what resources are encrypted to.
pub enum TeeKeyPair {
    /// ECDH-ES+A256KW on P-256 or P-521.
    Ec {
        /// The curve.
        curve: Curve,
        /// The private key.
        key: PrivateKey,
    },
    /// RSA-OAEP-256 (2048-bit).
    Rsa {
        /// The private key.
        key: OaepPrivateDecryptingKey,
        /// The same key, PKCS#8 DER.
        pkcs8: Zeroizing<Vec<u8>>,
        /// Its public half as the protocol carries it.
        public: TeePubKey,
    },
}

impl std::fmt::Debug for TeeKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ec { curve, .. } => write!(f, "TeeKeyPair::Ec({})", curve.name()),
            Self::Rsa { .. } => f.write_str("TeeKeyPair::Rsa"),
        }
    }
}

impl TeeKeyPair {
    /// A fresh EC key.
    pub fn generate_ec(curve: Curve) -> Result<Self, KbsError> {
        let key = PrivateKey::generate(curve.algorithm())
            .map_err(|_| key_error("key generation failed"))?;
        Ok(Self::Ec { curve, key })
    }

    /// A fresh RSA-2048 key.
    pub fn generate_rsa() -> Result<Self, KbsError> {
        use aws_lc_rs::encoding::AsDer as _;
        use aws_lc_rs::signature::KeyPair as _;
        let failed = |_| key_error("key generation failed");
        let pair = aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048).map_err(failed)?;
        let components = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
        let pkcs8 = Zeroizing::new(pair.as_der().map_err(failed)?.as_ref().to_vec());
        let private = PrivateDecryptingKey::from_pkcs8(&pkcs8)
            .map_err(|_| key_error("key generation failed"))?;
        Ok(Self::Rsa {
            key: OaepPrivateDecryptingKey::new(private).map_err(failed)?,
            pkcs8,
            public: TeePubKey::RSA {
                alg: RSA_OAEP_256.to_string(),
                k_mod: B64URL.encode(&components.n),
                k_exp: B64URL.encode(&components.e),
            },
        })
    }

    /// A key from PKCS#8 DER: EC P-256 or P-521, or RSA.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, KbsError> {
        for curve in [Curve::P256, Curve::P521] {
            if let Ok(key) = PrivateKey::from_private_key_der(curve.algorithm(), der) {
                return Ok(Self::Ec { curve, key });
            }
        }
        use aws_lc_rs::signature::KeyPair as _;
        let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(der)
            .map_err(|_| key_error("not a P-256, P-521 or RSA PKCS#8 key"))?;
        let components = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
        let private = PrivateDecryptingKey::from_pkcs8(der)
            .map_err(|_| key_error("the RSA key cannot decrypt"))?;
        Ok(Self::Rsa {
            key: OaepPrivateDecryptingKey::new(private)
                .map_err(|_| key_error("the RSA key cannot decrypt"))?,
            pkcs8: Zeroizing::new(der.to_vec()),
            public: TeePubKey::RSA {
                alg: RSA_OAEP_256.to_string(),
                k_mod: B64URL.encode(&components.n),
                k_exp: B64URL.encode(&components.e),
            },
        })
    }

    /// The private key, PKCS#8 DER (what kbs-client's `--tee-key-file` holds, as PEM).
    pub fn private_pkcs8(&self) -> Result<Zeroizing<Vec<u8>>, KbsError> {
        use aws_lc_rs::encoding::{AsDer as _, Pkcs8V1Der};
        match self {
            Self::Ec { key, .. } => {
                let der: Pkcs8V1Der<'static> =
                    key.as_der().map_err(|_| key_error("key export failed"))?;
                Ok(Zeroizing::new(der.as_ref().to_vec()))
            }
            Self::Rsa { pkcs8, .. } => Ok(pkcs8.clone()),
        }
    }

    /// The public key as the protocol carries it.
    pub fn public(&self) -> Result<TeePubKey, KbsError> {
        match self {
            Self::Ec { curve, key } => {
                let public = key
                    .compute_public_key()
                    .map_err(|_| key_error("public key"))?;
                let jwk = epk(*curve, public.as_ref())?;
                let field = |k: &str| jwk[k].as_str().unwrap_or_default().to_string();
                Ok(TeePubKey::EC {
                    crv: curve.name().to_string(),
                    alg: ECDH_ES_A256KW.to_string(),
                    x: field("x"),
                    y: field("y"),
                })
            }
            Self::Rsa { public, .. } => Ok(public.clone()),
        }
    }

    /// Decrypt a response encrypted to this key.
    pub fn decrypt(&self, response: &Response) -> Result<Zeroizing<Vec<u8>>, KbsError> {
        if response.protected.enc != A256GCM {
            return Err(jwe_error("enc must be A256GCM"));
        }
        let cek = self.unwrap_cek(response)?;
        let aad = response
            .protected
            .generate_aad()
            .map_err(|_| jwe_error("protected header"))?;
        let iv: [u8; NONCE_LEN] = response
            .iv
            .as_slice()
            .try_into()
            .map_err(|_| jwe_error("the IV must be 12 bytes"))?;
        let mut buffer = Zeroizing::new(response.ciphertext.clone());
        buffer.extend_from_slice(&response.tag);
        let len = gcm_key(cek.as_ref())?
            .open_in_place(
                Nonce::assume_unique_for_key(iv),
                Aad::from(&aad),
                &mut buffer,
            )
            .map_err(|_| jwe_error("aes-256-gcm decrypt failed"))?
            .len();
        buffer.truncate(len);
        Ok(buffer)
    }

    fn unwrap_cek(&self, response: &Response) -> Result<Zeroizing<Vec<u8>>, KbsError> {
        let alg = response.protected.alg.as_str();
        match self {
            Self::Ec { curve, key } if alg == ECDH_ES_A256KW => {
                let epk = response
                    .protected
                    .other_fields
                    .get("epk")
                    .ok_or_else(|| jwe_error("no epk"))?;
                let coordinate = |k: &str| epk[k].as_str().ok_or_else(|| jwe_error("epk"));
                let peer = uncompressed_point(*curve, coordinate("x")?, coordinate("y")?)?;
                let kek = agree(key, *curve, &peer)?;
                let kek = KeyEncryptionKey::new(&AES_256, kek.as_ref())
                    .map_err(|_| jwe_error("AES key unwrap"))?;
                let mut out = Zeroizing::new(vec![0u8; 32]);
                let len = kek
                    .unwrap(&response.encrypted_key, &mut out)
                    .map_err(|_| jwe_error("AES key unwrap failed"))?
                    .len();
                out.truncate(len);
                Ok(out)
            }
            Self::Rsa { key: oaep, .. } if alg == RSA_OAEP_256 => {
                let mut out = Zeroizing::new(vec![0u8; oaep.min_output_size()]);
                let len = oaep
                    .decrypt(
                        &OAEP_SHA256_MGF1SHA256,
                        &response.encrypted_key,
                        &mut out,
                        None,
                    )
                    .map_err(|_| jwe_error("RSA-OAEP decryption failed"))?
                    .len();
                out.truncate(len);
                Ok(out)
            }
            _ => Err(jwe_error(&format!("alg {alg} does not match this key"))),
        }
    }
}
