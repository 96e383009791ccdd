//! JWE recipients: the private options encrypted (A256GCM) to public keys, ECDH-ES+A256KW for
//! EC keys and RSA-OAEP for RSA keys, in one JWE in JSON serialization with a recipient each,
//! as ocicrypt's `jwe` key wrapper writes them.

use josekit::jwe::{self, JweDecrypter, JweEncrypter, JweHeader, JweHeaderSet};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::CryptError;

/// A recipient's public key.
pub struct Recipient {
    encrypter: Box<dyn JweEncrypter>,
}

impl std::fmt::Debug for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Recipient")
            .field(&self.encrypter.algorithm().name())
            .finish()
    }
}

impl Recipient {
    /// A public key in PEM (SPKI, or PKCS#1 for RSA): EC keys get ECDH-ES+A256KW, RSA keys
    /// RSA-OAEP.
    pub fn from_pem(pem: &[u8]) -> Result<Self, CryptError> {
        let encrypter: Box<dyn JweEncrypter> = match jwe::ECDH_ES_A256KW.encrypter_from_pem(pem) {
            Ok(ec) => Box::new(ec),
            Err(ec_error) => match jwe::RSA_OAEP.encrypter_from_pem(pem) {
                Ok(rsa) => Box::new(rsa),
                Err(rsa_error) => {
                    return Err(CryptError::Key(format!(
                        "the recipient key is neither an EC public key ({ec_error}) nor an RSA \
                         one ({rsa_error}); give a PEM public key"
                    )));
                }
            },
        };
        Ok(Self { encrypter })
    }
}

/// A private key that may open a layer.
pub struct DecryptionKey {
    decrypters: Vec<Box<dyn JweDecrypter>>,
}

impl std::fmt::Debug for DecryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DecryptionKey(..)")
    }
}

impl DecryptionKey {
    /// A private key in PEM (PKCS#8, SEC1 or PKCS#1), not passphrase-protected.
    pub fn from_pem(pem: &[u8]) -> Result<Self, CryptError> {
        if std::str::from_utf8(pem).is_ok_and(|text| text.contains("ENCRYPTED")) {
            return Err(CryptError::Key(
                "the decryption key is passphrase-protected; give it unencrypted \
                 (e.g. `openssl pkey -in KEY -out PLAIN`)"
                    .into(),
            ));
        }
        let mut decrypters: Vec<Box<dyn JweDecrypter>> = Vec::new();
        let mut errors = Vec::new();
        match jwe::ECDH_ES_A256KW.decrypter_from_pem(pem) {
            Ok(ec) => decrypters.push(Box::new(ec)),
            Err(e) => errors.push(format!("not an EC key: {e}")),
        }
        for rsa in [jwe::RSA_OAEP, jwe::RSA_OAEP_256] {
            match rsa.decrypter_from_pem(pem) {
                Ok(rsa) => decrypters.push(Box::new(rsa)),
                Err(e) => errors.push(format!("not an RSA key: {e}")),
            }
        }
        if decrypters.is_empty() {
            return Err(CryptError::Key(format!(
                "the decryption key is not a PEM private key: {}",
                errors.join("; ")
            )));
        }
        Ok(Self { decrypters })
    }
}

/// Encrypt `plaintext` to every recipient: the JWE, in JSON serialization.
pub fn wrap(plaintext: &[u8], recipients: &[Recipient]) -> Result<Vec<u8>, CryptError> {
    let mut protected = JweHeaderSet::new();
    protected.set_content_encryption("A256GCM", true);
    let headers: Vec<(Option<&JweHeader>, &dyn JweEncrypter)> = recipients
        .iter()
        .map(|r| (None, r.encrypter.as_ref()))
        .collect();
    jwe::serialize_general_json(plaintext, Some(&protected), &headers, None)
        .map(String::into_bytes)
        .map_err(|e| CryptError::Key(format!("encrypting to the recipients: {e}")))
}

/// Open a JWE with any of `keys`: each recipient is tried with each key.
pub fn unwrap(jwe: &[u8], keys: &[DecryptionKey]) -> Result<Zeroizing<Vec<u8>>, String> {
    let recipients = split_recipients(jwe)?;
    let mut errors = Vec::new();
    for recipient in &recipients {
        for decrypter in keys.iter().flat_map(|k| &k.decrypters) {
            match jwe::deserialize_json(recipient, decrypter.as_ref()) {
                Ok((plaintext, _)) => return Ok(Zeroizing::new(plaintext)),
                Err(e) => errors.push(e.to_string()),
            }
        }
    }
    errors.dedup();
    Err(if errors.is_empty() {
        "no key given".into()
    } else {
        errors.join("; ")
    })
}

/// One flattened JWE per recipient (a general JWE's `recipients` taken apart), so that each
/// is tried on its own: a JWE library picks the first recipient of a matching algorithm.
fn split_recipients(jwe: &[u8]) -> Result<Vec<String>, String> {
    let mut object: Map<String, Value> =
        serde_json::from_slice(jwe).map_err(|e| format!("the JWE is not JSON: {e}"))?;
    let Some(recipients) = object.remove("recipients") else {
        return Ok(vec![Value::Object(object).to_string()]);
    };
    let Value::Array(recipients) = recipients else {
        return Err("the JWE's recipients are not a list".into());
    };
    recipients
        .into_iter()
        .map(|recipient| {
            let Value::Object(fields) = recipient else {
                return Err("a JWE recipient is not an object".to_string());
            };
            let mut flattened = object.clone();
            for (name, value) in fields {
                if name == "header" || name == "encrypted_key" {
                    flattened.insert(name, value);
                }
            }
            Ok(Value::Object(flattened).to_string())
        })
        .collect()
}
