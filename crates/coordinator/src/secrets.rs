//! Secret generation: shared secrets once per manifest, per-instance symmetric keys derived
//! with HKDF (so a restarted instance with the same UUID gets the same key), per-instance
//! certificates issued at each activation.

use std::collections::BTreeMap;

use aws_lc_rs::hkdf::{HKDF_SHA256, KeyType, Salt};
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use manifest::{SecretKind, SecretSpec, SecretValue};
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::ca::{Ca, CaError, leaf_params};

/// Why a secret could not be made or accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// Key generation or certificate issuance failed.
    #[error(transparent)]
    Ca(#[from] CaError),
    /// The size is not one cloister generates.
    #[error("secret {name}: {kind} of {size} bits is not supported")]
    Size {
        /// The secret.
        name: String,
        /// Its kind.
        kind: SecretKind,
        /// The requested size.
        size: u32,
    },
    /// The random generator or key derivation failed.
    #[error("the crypto provider failed while making secret {name}")]
    Crypto {
        /// The secret.
        name: String,
    },
    /// A stored secret does not decode.
    #[error("stored secret {name} is corrupt")]
    Corrupt {
        /// The secret.
        name: String,
    },
    /// Generating the manifest's secrets took too long (too many large RSA keys).
    #[error(
        "generating the manifest's secrets took too long (stopped before {name}): ask for fewer \
         or smaller RSA keys"
    )]
    Deadline {
        /// The secret that was not made.
        name: String,
    },
}

/// A secret's material as stored (sealed) and handed to templates.
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredSecret {
    /// Its kind.
    pub kind: SecretKind,
    /// Key bytes (symmetric, plain), base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Certificate, base64 DER.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    /// Private key, base64 PKCS#8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private: Option<String>,
}

impl std::fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSecret")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Drop for StoredSecret {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        self.key.zeroize();
        self.private.zeroize();
    }
}

impl StoredSecret {
    /// The value templates render.
    pub fn to_value(&self, name: &str) -> Result<SecretValue, SecretError> {
        let decode = |b64: &str| {
            B64.decode(b64).map_err(|_| SecretError::Corrupt {
                name: name.to_string(),
            })
        };
        match (&self.key, &self.cert) {
            (Some(key), _) => Ok(SecretValue::bytes(self.kind, decode(key)?)),
            (None, Some(cert)) => {
                let cert = decode(cert)?;
                let spki = spki_of(&cert).ok_or_else(|| SecretError::Corrupt {
                    name: name.to_string(),
                })?;
                let private = self
                    .private
                    .as_deref()
                    .map(decode)
                    .transpose()?
                    .map(Zeroizing::new);
                Ok(SecretValue::certificate(self.kind, cert, private, spki))
            }
            (None, None) => Err(SecretError::Corrupt {
                name: name.to_string(),
            }),
        }
    }

    fn bytes(kind: SecretKind, key: &[u8]) -> Self {
        Self {
            kind,
            key: Some(B64.encode(key)),
            cert: None,
            private: None,
        }
    }
}

/// The SubjectPublicKeyInfo (DER) of a certificate.
pub fn spki_of(cert_der: &[u8]) -> Option<Vec<u8>> {
    // webpki's parser is the one the TLS handshake already accepted this certificate with,
    // and it reads only what it needs.
    let der = rustls::pki_types::CertificateDer::from(cert_der);
    let cert = webpki::EndEntityCert::try_from(&der).ok()?;
    Some(cert.subject_public_key_info().as_ref().to_vec())
}

/// Whether `spec` is made once for every instance (at manifest set).
pub fn is_generated_shared(spec: &SecretSpec) -> bool {
    spec.shared && !spec.user_defined && spec.kind != SecretKind::Plain
}

/// Make every shared, generated secret of a manifest, giving up past `deadline`.
pub fn generate_shared(
    specs: &BTreeMap<String, SecretSpec>,
    ca: &Ca,
    now: OffsetDateTime,
    deadline: std::time::Instant,
) -> Result<BTreeMap<String, StoredSecret>, SecretError> {
    let mut out = BTreeMap::new();
    for (name, spec) in specs.iter().filter(|(_, s)| is_generated_shared(s)) {
        if std::time::Instant::now() > deadline {
            return Err(SecretError::Deadline { name: name.clone() });
        }
        out.insert(name.clone(), generate(name, spec, ca, now, None)?);
    }
    Ok(out)
}

/// Per-instance input for key derivation.
#[derive(Debug, Clone, Copy)]
pub struct Instance<'a> {
    /// The deployment's root secret.
    pub root_secret: &'a [u8; 32],
    /// The instance UUID.
    pub uuid: &'a str,
    /// The workload type, or `None` when the manifest disables secret binding.
    pub workload: Option<&'a str>,
}

/// Make one secret: random when shared, derived from the instance when a per-instance
/// symmetric key, freshly generated when a per-instance certificate.
pub fn generate(
    name: &str,
    spec: &SecretSpec,
    ca: &Ca,
    now: OffsetDateTime,
    instance: Option<Instance<'_>>,
) -> Result<StoredSecret, SecretError> {
    let crypto = || SecretError::Crypto {
        name: name.to_string(),
    };
    match spec.kind {
        SecretKind::SymmetricKey | SecretKind::Plain => {
            let len = (spec.size.unwrap_or(256) / 8) as usize;
            let mut key = Zeroizing::new(vec![0u8; len]);
            match instance {
                Some(i) => derive(i, name, &mut key).map_err(|()| crypto())?,
                None => SystemRandom::new().fill(&mut key).map_err(|_| crypto())?,
            }
            Ok(StoredSecret::bytes(spec.kind, &key))
        }
        SecretKind::CertEcdsa | SecretKind::CertRsa | SecretKind::CertEd25519 => {
            certificate(name, spec, ca, now)
        }
        _ => Err(crypto()),
    }
}

/// HKDF-SHA256(ikm = root secret, salt = uuid ‖ name, info = workload type).
fn derive(instance: Instance<'_>, name: &str, out: &mut [u8]) -> Result<(), ()> {
    struct Len(usize);
    impl KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }
    let salt = format!("{}{name}", instance.uuid);
    let info = instance.workload.unwrap_or("");
    let info = [info.as_bytes()];
    Salt::new(HKDF_SHA256, salt.as_bytes())
        .extract(instance.root_secret)
        .expand(&info, Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .map_err(|_| ())
}

fn key_for(name: &str, spec: &SecretSpec) -> Result<KeyPair, SecretError> {
    let unsupported = |size| SecretError::Size {
        name: name.to_string(),
        kind: spec.kind,
        size,
    };
    let key = match (spec.kind, spec.size.unwrap_or(0)) {
        (SecretKind::CertEcdsa, 0 | 256) => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256),
        (SecretKind::CertEcdsa, 384) => KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384),
        (SecretKind::CertEcdsa, 521) => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512),
        (SecretKind::CertEd25519, 0) => KeyPair::generate_for(&PKCS_ED25519),
        (SecretKind::CertRsa, bits) => return rsa_key(name, bits),
        (_, size) => return Err(unsupported(size)),
    };
    key.map_err(|e| SecretError::Ca(e.into()))
}

fn rsa_key(name: &str, bits: u32) -> Result<KeyPair, SecretError> {
    use aws_lc_rs::encoding::AsDer as _;
    use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
    let size = match bits {
        0 | 2048 => KeySize::Rsa2048,
        3072 => KeySize::Rsa3072,
        4096 => KeySize::Rsa4096,
        other => {
            return Err(SecretError::Size {
                name: name.to_string(),
                kind: SecretKind::CertRsa,
                size: other,
            });
        }
    };
    let crypto = || SecretError::Crypto {
        name: name.to_string(),
    };
    let pkcs8 = RsaKeyPair::generate(size)
        .and_then(|k| k.as_der())
        .map_err(|_| crypto())?;
    let der = rustls::pki_types::PrivatePkcs8KeyDer::from(pkcs8.as_ref());
    KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_RSA_SHA256)
        .map_err(|e| SecretError::Ca(e.into()))
}

fn certificate(
    name: &str,
    spec: &SecretSpec,
    ca: &Ca,
    now: OffsetDateTime,
) -> Result<StoredSecret, SecretError> {
    let key = key_for(name, spec)?;
    let template = &spec.cert;
    let mut names = template.dns_names.clone();
    names.extend(template.ip_addresses.iter().cloned());
    if names.is_empty() {
        names.push("localhost".to_string());
    }
    let cn = if template.subject.common_name.is_empty() {
        match template.dns_names.as_slice() {
            [only] => only.clone(),
            _ => "cloister generated certificate".to_string(),
        }
    } else {
        template.subject.common_name.clone()
    };
    let days = i64::from(spec.valid_for.unwrap_or(365));
    let params = leaf_params(&cn, &names, now, Duration::days(days))?;
    let cert = ca.issue_for_key(&key, params)?;
    Ok(StoredSecret {
        kind: spec.kind,
        key: None,
        cert: Some(B64.encode(cert)),
        private: Some(B64.encode(key.serialize_der())),
    })
}
