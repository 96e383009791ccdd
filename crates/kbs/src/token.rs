//! The attestation token `/attest` returns: an EAR (IETF RATS attestation result) as a JWT,
//! signed ES256 by the broker, carrying the TEE public key where CoCo's broker and tooling look
//! for it. Expiry is checked against an explicit time.

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use kbs_types::TeePubKey;
use serde_json::{Value, json};

use crate::KbsError;

/// EAR's profile for CoCo's tokens, which CoCo tooling recognizes.
pub const EAR_PROFILE: &str = "tag:github.com,2024:confidential-containers/Trustee";
/// Who issues our tokens.
pub const ISSUER: &str = "cloister-coordinator";

/// Where a token's TEE key may sit, in the order CoCo's broker tries them.
const TEE_KEY_POINTERS: [&str; 5] = [
    "/submods/cpu0/ear.veraison.annotated-evidence/runtime_data_claims/tee-pubkey",
    "/tdx/attester_runtime_data/tee-pubkey",
    "/tdx/attester_user_data/tee-pubkey",
    "/customized_claims/runtime_data/tee-pubkey",
    "/tee-pubkey",
];

fn token_error(e: impl std::fmt::Display) -> KbsError {
    KbsError::Token(e.to_string())
}

/// What one appraisal established, for the token.
#[derive(Debug, Clone)]
pub struct Appraisal {
    /// The TEE kind (`sgx`, `tdx`, `snp`, …, `sample`).
    pub tee: String,
    /// The verified claims of that TEE.
    pub tee_claims: Value,
    /// The manifest package the evidence matched.
    pub package: String,
    /// SHA-256 (hex) of that package's spec: the token holds while the package is unchanged.
    pub package_digest: String,
    /// The runtime data the evidence binds.
    pub runtime_data: Value,
    /// The init-data digest (hex) and its claims, when the client sent init-data.
    pub init_data: Option<(String, Value)>,
    /// Whether the evidence was simulated.
    pub simulated: bool,
    /// The trust vector and status: the attestation policy's, or the manifest's affirmation.
    pub trust: crate::policy::Trust,
    /// Which policy appraised it (`cloister-manifest` when no attestation policy is set).
    pub policy_id: String,
}

/// Signs and verifies the broker's tokens.
pub struct TokenSigner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    jwk: jsonwebtoken::jwk::Jwk,
    lifetime_secs: u64,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("lifetime_secs", &self.lifetime_secs)
            .finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// A signer for a P-256 key (PKCS#8 DER) whose tokens live `lifetime_secs`.
    pub fn new(pkcs8: &[u8], lifetime_secs: u64) -> Result<Self, KbsError> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
            .map_err(|_| token_error("the token key is not a P-256 PKCS#8 key"))?;
        let point = pair.public_key().as_ref();
        let (x, y) = point
            .get(1..)
            .filter(|c| c.len() == 64)
            .map(|c| c.split_at(32))
            .ok_or_else(|| token_error("unexpected public key encoding"))?;
        let (x, y) = (B64URL.encode(x), B64URL.encode(y));
        let jwk = serde_json::from_value(json!({
            "kty": "EC", "crv": "P-256", "alg": "ES256", "x": x, "y": y
        }))
        .map_err(token_error)?;
        Ok(Self {
            encoding: EncodingKey::from_ec_der(pkcs8),
            decoding: DecodingKey::from_ec_components(&x, &y).map_err(token_error)?,
            jwk,
            lifetime_secs,
        })
    }

    /// A fresh token for `appraisal` at `now` (seconds since the epoch), and its claims.
    pub fn issue(&self, appraisal: &Appraisal, now: u64) -> Result<(String, Value), KbsError> {
        let mut annotated = json!({
            appraisal.tee.as_str(): appraisal.tee_claims,
            "runtime_data_claims": appraisal.runtime_data,
            "package": appraisal.package,
            "package_digest": appraisal.package_digest,
            "simulated": appraisal.simulated,
        });
        if let Some((digest, claims)) = &appraisal.init_data {
            annotated["init_data"] = Value::from(digest.as_str());
            annotated["init_data_claims"] = claims.clone();
        }
        let mut appraisal_claims = json!({
            "ear.status": appraisal.trust.status.as_str(),
            "ear.appraisal-policy-id": appraisal.policy_id,
            "ear.trustworthiness-vector": appraisal.trust.vector,
            "ear.veraison.annotated-evidence": annotated,
        });
        for (name, value) in &appraisal.trust.extensions {
            appraisal_claims[name] = value.clone();
        }
        let claims = json!({
            "eat_profile": EAR_PROFILE,
            "iat": now,
            "exp": now + self.lifetime_secs,
            "iss": ISSUER,
            "ear.verifier-id": { "developer": "cloister", "build": env!("CARGO_PKG_VERSION") },
            "submods": { "cpu0": appraisal_claims }
        });
        let mut header = Header::new(Algorithm::ES256);
        header.jwk = Some(self.jwk.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(token_error)?;
        Ok((token, claims))
    }

    /// The claims of a token this signer issued, unless it expired before `now`.
    pub fn verify(&self, token: &str, now: u64) -> Result<Value, KbsError> {
        let mut validation = Validation::new(Algorithm::ES256);
        // Expiry is checked below against the explicit time, not the system clock.
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Value>(token, &self.decoding, &validation)
            .map_err(|e| token_error(format!("the token does not verify: {e}")))?;
        let exp = data.claims["exp"]
            .as_u64()
            .ok_or_else(|| token_error("the token has no exp"))?;
        if exp <= now {
            return Err(token_error("the token has expired: attest again"));
        }
        Ok(data.claims)
    }
}

/// The TEE public key a token's claims carry.
pub fn tee_pubkey(claims: &Value) -> Result<TeePubKey, KbsError> {
    TEE_KEY_POINTERS
        .iter()
        .find_map(|p| claims.pointer(p))
        .ok_or_else(|| token_error("the token carries no TEE public key"))
        .and_then(|v| serde_json::from_value(v.clone()).map_err(token_error))
}

/// The audience an admin JWT may name: tokens for other services are refused.
pub const ADMIN_AUDIENCE: &str = "cloister";
/// How far `nbf` and `iat` may lie in the future (clock skew between the admin and us).
const CLOCK_SKEW_SECS: u64 = 60;

/// What an admin JWT's claims must satisfy.
#[derive(Debug, Clone, Copy)]
pub struct AdminTokenRules {
    /// The verification time, seconds since the epoch.
    pub now: u64,
    /// The longest lifetime accepted: `exp` − `iat`, or `exp` − now without `iat`.
    pub max_lifetime_secs: u64,
}

/// Why an admin JWT was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdminTokenError {
    /// It is not a JWT this key signed.
    #[error("the admin token is not signed by this key: {0}")]
    Signature(String),
    /// This key signed it, but its claims do not hold.
    #[error("the admin token {0}")]
    Claims(String),
}

/// Verify an admin's Bearer JWT (EdDSA or ES256) against their registered public key (PEM
/// SubjectPublicKeyInfo).
///
/// The claims must hold at `rules.now`: `exp` after it; `nbf` and `iat`, where present, not
/// after it (give or take a minute of clock skew); a lifetime of at most
/// `rules.max_lifetime_secs`; and an `aud`, where present, that names [`ADMIN_AUDIENCE`].
/// A token is a bearer credential until it expires (CoCo's tools reuse one for many calls, so
/// there is no one-time use); the lifetime bound is what limits a leaked one.
pub fn verify_admin(
    token: &str,
    public_key_pem: &str,
    rules: &AdminTokenRules,
) -> Result<Value, AdminTokenError> {
    let unsigned = |why: String| AdminTokenError::Signature(why);
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| unsigned(format!("not a JWT: {e}")))?;
    let key = match header.alg {
        Algorithm::EdDSA => DecodingKey::from_ed_pem(public_key_pem.as_bytes()),
        Algorithm::ES256 => DecodingKey::from_ec_pem(public_key_pem.as_bytes()),
        other => {
            return Err(unsigned(format!(
                "{other:?} admin tokens are not accepted (EdDSA, ES256)"
            )));
        }
    }
    .map_err(|e| unsigned(format!("the user's key: {e}")))?;
    let mut validation = Validation::new(header.alg);
    // Every claim is checked below against the explicit time.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map_err(|e| unsigned(format!("{e}")))?
        .claims;
    check_admin_claims(&claims, rules).map_err(AdminTokenError::Claims)?;
    Ok(claims)
}

fn check_admin_claims(claims: &Value, rules: &AdminTokenRules) -> Result<(), String> {
    let time = |name: &str| match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("has a malformed {name} (seconds since the epoch)")),
    };
    let now = rules.now;
    let exp = time("exp")?.ok_or("has no exp")?;
    if exp <= now {
        return Err("has expired".into());
    }
    if let Some(nbf) = time("nbf")?
        && nbf > now + CLOCK_SKEW_SECS
    {
        return Err(format!("is not valid before {nbf} (now is {now})"));
    }
    let issued = match time("iat")? {
        Some(iat) if iat > now + CLOCK_SKEW_SECS => {
            return Err(format!("was issued in the future ({iat}, now is {now})"));
        }
        Some(iat) => iat,
        None => now,
    };
    let lifetime = exp.saturating_sub(issued);
    if lifetime > rules.max_lifetime_secs {
        return Err(format!(
            "lives {lifetime} s, longer than the {} s this coordinator accepts: mint a shorter one",
            rules.max_lifetime_secs
        ));
    }
    let names_us = match claims.get("aud") {
        None => true,
        Some(Value::String(aud)) => aud == ADMIN_AUDIENCE,
        Some(Value::Array(auds)) => auds.iter().any(|a| a == ADMIN_AUDIENCE),
        Some(_) => false,
    };
    if !names_us {
        return Err(format!(
            "is for another audience: its aud must be {ADMIN_AUDIENCE:?} or absent"
        ));
    }
    Ok(())
}
