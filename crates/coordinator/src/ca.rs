//! The deployment's certificate authority: a root and an intermediate generated inside the
//! TEE, the coordinator's TLS certificate, and workload certificates for attested keys.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384,
    SanType, SerialNumber, SubjectPublicKeyInfo,
};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

/// The extension (under cloister's private arc) that names a workload certificate's type.
pub const WORKLOAD_TYPE_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 57264, 2, 1];

/// Why a certificate could not be issued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// Key generation, parsing or signing failed.
    #[error("certificate authority: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// The saved CA does not parse.
    #[error("the saved CA is unreadable: {0}")]
    Saved(String),
}

/// The saved form (sealed by the store).
#[derive(Serialize, Deserialize)]
struct SavedCa {
    root_cert_pem: String,
    root_key_pem: String,
    intermediate_cert_pem: String,
    intermediate_key_pem: String,
}

/// Root and intermediate.
pub struct Ca {
    root_der: Vec<u8>,
    root_key_pem: Zeroizing<String>,
    intermediate_der: Vec<u8>,
    intermediate: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "cloister deployment");
    dn
}

fn ca_params(cn: &str, path_len: Option<u8>, now: OffsetDateTime) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = name(cn);
    p.is_ca = IsCa::Ca(path_len.map_or(
        BasicConstraints::Unconstrained,
        BasicConstraints::Constrained,
    ));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(365 * 20);
    p.key_identifier_method = KeyIdMethod::Sha256;
    p.serial_number = Some(random_serial());
    p
}

fn random_serial() -> SerialNumber {
    let mut bytes = *crate::random_uuid().as_bytes();
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

fn first_der(pem: &str) -> Result<Vec<u8>, CaError> {
    attest::x509::parse_pem_chain(pem.as_bytes())
        .map_err(|e| CaError::Saved(e.to_string()))?
        .into_iter()
        .next()
        .map(attest::x509::Cert::into_der)
        .ok_or_else(|| CaError::Saved("no certificate".into()))
}

impl Ca {
    /// Generate a P-384 root and intermediate valid from `now` for twenty years.
    pub fn generate(now: OffsetDateTime) -> Result<Self, CaError> {
        let root_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384)?;
        let root_params = ca_params("cloister Coordinator Root CA", None, now);
        let root_der = root_params.self_signed(&root_key)?.der().to_vec();
        let root = Issuer::new(root_params, root_key);
        let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384)?;
        let params = ca_params("cloister Coordinator Intermediate CA", Some(0), now);
        let intermediate_der = params.signed_by(&key, &root)?.der().to_vec();
        Ok(Self {
            root_der,
            root_key_pem: Zeroizing::new(root.key().serialize_pem()),
            intermediate_der,
            intermediate: Issuer::new(params, key),
        })
    }

    /// The saved form, to seal.
    pub fn to_saved(&self) -> Result<Zeroizing<Vec<u8>>, CaError> {
        let saved = SavedCa {
            root_cert_pem: self.root_pem(),
            root_key_pem: self.root_key_pem.to_string(),
            intermediate_cert_pem: self.intermediate_pem(),
            intermediate_key_pem: self.intermediate.key().serialize_pem(),
        };
        serde_json::to_vec(&saved)
            .map(Zeroizing::new)
            .map_err(|e| CaError::Saved(e.to_string()))
    }

    /// Restore a CA saved with [`Ca::to_saved`].
    pub fn from_saved(bytes: &[u8]) -> Result<Self, CaError> {
        let saved: SavedCa =
            serde_json::from_slice(bytes).map_err(|e| CaError::Saved(e.to_string()))?;
        let intermediate_der = first_der(&saved.intermediate_cert_pem)?;
        let key = KeyPair::from_pem(&saved.intermediate_key_pem)?;
        let intermediate = Issuer::from_ca_cert_der(&intermediate_der.as_slice().into(), key)?;
        Ok(Self {
            root_der: first_der(&saved.root_cert_pem)?,
            root_key_pem: Zeroizing::new(saved.root_key_pem),
            intermediate_der,
            intermediate,
        })
    }

    /// The root certificate, DER.
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// The root certificate, PEM.
    pub fn root_pem(&self) -> String {
        attest::dcap::to_pem_string(&self.root_der)
    }

    /// The intermediate certificate, DER.
    pub fn intermediate_der(&self) -> &[u8] {
        &self.intermediate_der
    }

    /// The intermediate certificate, PEM.
    pub fn intermediate_pem(&self) -> String {
        attest::dcap::to_pem_string(&self.intermediate_der)
    }

    /// A fresh P-256 key and a certificate for the coordinator's TLS endpoint:
    /// `(leaf DER, PKCS#8 key DER)`.
    pub fn issue_server(
        &self,
        names: &[String],
        now: OffsetDateTime,
    ) -> Result<(Vec<u8>, Zeroizing<Vec<u8>>), CaError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = leaf_params("cloister Coordinator", names, now, Duration::days(365))?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.intermediate)?;
        Ok((cert.der().to_vec(), Zeroizing::new(key.serialize_der())))
    }

    /// A certificate for an attested workload's own key (its SubjectPublicKeyInfo, DER).
    pub fn issue_workload(
        &self,
        spki_der: &[u8],
        workload: &str,
        uuid: &str,
        dns_names: &[String],
        now: OffsetDateTime,
    ) -> Result<Vec<u8>, CaError> {
        let key = SubjectPublicKeyInfo::from_der(spki_der)?;
        let mut params = leaf_params(uuid, dns_names, now, Duration::days(365))?;
        params.subject_alt_names.push(SanType::URI(
            format!("urn:cloister:workload:{workload}:{uuid}").try_into()?,
        ));
        params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                WORKLOAD_TYPE_OID,
                utf8_der(workload)?,
            ));
        Ok(params.signed_by(&key, &self.intermediate)?.der().to_vec())
    }

    /// A certificate for a key the coordinator generated for a secret.
    pub fn issue_for_key(
        &self,
        key: &KeyPair,
        params: CertificateParams,
    ) -> Result<Vec<u8>, CaError> {
        Ok(params.signed_by(key, &self.intermediate)?.der().to_vec())
    }
}

/// A leaf for `cn` with DNS or IP SANs, valid from five minutes ago for `validity`.
pub fn leaf_params(
    cn: &str,
    names: &[String],
    now: OffsetDateTime,
    validity: Duration,
) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = name(cn);
    for n in names {
        let san = match n.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(n.clone().try_into()?),
        };
        params.subject_alt_names.push(san);
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyAgreement,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + validity;
    params.serial_number = Some(random_serial());
    Ok(params)
}

/// The DER encoding of a UTF8String.
fn utf8_der(s: &str) -> Result<Vec<u8>, CaError> {
    use der::Encode as _;
    der::asn1::Utf8StringRef::new(s)
        .and_then(|u| u.to_der())
        .map_err(|e| CaError::Saved(format!("workload name cannot be encoded: {e}")))
}
