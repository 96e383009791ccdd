//! A simulated Intel PCS: root CA, PCK Platform CA, PCK certificate with the SGX extension,
//! TCB-signing certificate, TCB info, QE identity and CRLs; and a simulated quoting enclave
//! that signs SGX quote v3 and TDX quote v4 in the real layouts.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use der::asn1::{Any, ObjectIdentifier, OctetString};
use der::{Encode as _, Sequence, Tag};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SerialNumber,
};
use serde_json::json;
use time::{Duration, OffsetDateTime};

use super::{SimError, marker_extension, pcs_time};
use crate::claims::TcbStatus;
use crate::crypto::{sha256, sha384};
use crate::dcap::{Collateral, SignedJson};

/// Intel's QE vendor ID, which simulated quotes carry too.
const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];
/// The platform's SGX TCB component SVNs and PCESVN in the simulated PCK certificate.
const PLATFORM_SVN: u8 = 2;
const PLATFORM_PCESVN: u16 = 13;
const FMSPC: [u8; 6] = [0x00, 0xC1, 0x05, 0x1A, 0x00, 0x00];
const PCE_ID: [u8; 2] = [0, 0];
const QE_ISVSVN: u16 = 8;
/// TEE_TCB_SVN of the simulated TDX module: ISVSVN 3, major version 1 (`TDX_01`).
const TEE_TCB_SVN: [u8; 16] = [3, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
/// An advisory attached to every non-UpToDate simulated level.
pub const SIMULATED_ADVISORY: &str = "INTEL-SA-SIM-0001";

/// A CA certificate and the issuer (name, key) that signs under it.
struct Ca {
    der: Vec<u8>,
    issuer: rcgen::Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("der_len", &self.der.len())
            .finish_non_exhaustive()
    }
}

impl Ca {
    fn self_signed(params: CertificateParams, key: KeyPair) -> Result<Self, SimError> {
        let der = params.self_signed(&key).map_err(cert_error)?.der().to_vec();
        Ok(Self {
            der,
            issuer: rcgen::Issuer::new(params, key),
        })
    }

    fn signed_by(params: CertificateParams, key: KeyPair, by: &Ca) -> Result<Self, SimError> {
        let der = params
            .signed_by(&key, &by.issuer)
            .map_err(cert_error)?
            .der()
            .to_vec();
        Ok(Self {
            der,
            issuer: rcgen::Issuer::new(params, key),
        })
    }

    /// Rebuild a CA from its saved certificate and PKCS#8 key.
    fn restore(cert_pem: &str, key_pem: &str) -> Result<Self, SimError> {
        let key = KeyPair::from_pem(key_pem).map_err(persist_error)?;
        let der = crate::x509::parse_pem_chain(cert_pem.as_bytes())
            .map_err(persist_error)?
            .into_iter()
            .next()
            .ok_or_else(|| SimError::Persist("a saved CA certificate is missing".into()))?
            .into_der();
        let issuer =
            rcgen::Issuer::from_ca_cert_der(&der.as_slice().into(), key).map_err(persist_error)?;
        Ok(Self { der, issuer })
    }

    fn pem(&self) -> String {
        crate::dcap::to_pem_string(&self.der)
    }

    fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }
}

fn persist_error(e: impl std::fmt::Display) -> SimError {
    SimError::Persist(e.to_string())
}

/// The saved form of an [`IntelPki`]: certificates and PKCS#8 keys, PEM.
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedIntelPki {
    root_cert: String,
    root_key: String,
    pck_ca_cert: String,
    pck_ca_key: String,
    tcb_signing_cert: String,
    tcb_signing_key: String,
    pck_cert: String,
    pck_key: String,
}

fn key_error(e: impl std::fmt::Display) -> SimError {
    SimError::Key(e.to_string())
}

fn cert_error(e: impl std::fmt::Display) -> SimError {
    SimError::Cert(e.to_string())
}

/// The simulated PCS hierarchy and quoting enclave.
#[derive(Debug)]
pub struct IntelPki {
    root: Ca,
    pck_ca: Ca,
    tcb_signing: Ca,
    pck_leaf_der: Vec<u8>,
    pck_key_pem: zeroize::Zeroizing<String>,
    pck_key: EcdsaKeyPair,
    tcb_key: EcdsaKeyPair,
}

/// What to put in a simulated SGX enclave report.
#[derive(Debug, Clone)]
pub struct SgxParams {
    /// REPORTDATA.
    pub report_data: [u8; 64],
    /// MRENCLAVE.
    pub mr_enclave: [u8; 32],
    /// MRSIGNER.
    pub mr_signer: [u8; 32],
    /// ISVPRODID.
    pub isv_prod_id: u16,
    /// ISVSVN.
    pub isv_svn: u16,
    /// Launch the enclave in debug mode.
    pub debug: bool,
}

impl Default for SgxParams {
    fn default() -> Self {
        Self {
            report_data: [0; 64],
            mr_enclave: sha256(b"cloister simulated enclave"),
            mr_signer: sha256(b"cloister simulated enclave signer"),
            isv_prod_id: 1,
            isv_svn: 1,
            debug: false,
        }
    }
}

/// What to put in a simulated TD report 1.0.
#[derive(Debug, Clone)]
pub struct TdxParams {
    /// REPORTDATA.
    pub report_data: [u8; 64],
    /// MRTD.
    pub mr_td: [u8; 48],
    /// RTMR0..3.
    pub rtmr: [[u8; 48]; 4],
    /// MRCONFIGID.
    pub mr_config_id: [u8; 48],
    /// Launch the TD in debug mode.
    pub debug: bool,
}

impl Default for TdxParams {
    fn default() -> Self {
        Self {
            report_data: [0; 64],
            mr_td: sha384(b"cloister simulated TD"),
            rtmr: [
                sha384(b"rtmr0"),
                sha384(b"rtmr1"),
                sha384(b"rtmr2"),
                [0; 48],
            ],
            mr_config_id: [0; 48],
            debug: false,
        }
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "cloister simulation");
    dn
}

fn ca_params(cn: &str, now: OffsetDateTime) -> Result<CertificateParams, SimError> {
    let mut p = CertificateParams::default();
    p.distinguished_name = name(cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = now - Duration::days(1);
    p.not_after = now + Duration::days(3650);
    p.key_identifier_method = KeyIdMethod::Sha256;
    p.custom_extensions = vec![marker_extension()?];
    Ok(p)
}

fn new_key() -> Result<KeyPair, SimError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(key_error)
}

fn signer(key: &KeyPair) -> Result<EcdsaKeyPair, SimError> {
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key.serialize_der())
        .map_err(key_error)
}

fn sign(key: &EcdsaKeyPair, message: &[u8]) -> Result<[u8; 64], SimError> {
    let sig = key.sign(&SystemRandom::new(), message).map_err(key_error)?;
    sig.as_ref()
        .try_into()
        .map_err(|_| SimError::Key("unexpected P-256 signature length".into()))
}

#[derive(Sequence)]
struct ExtPair {
    oid: ObjectIdentifier,
    value: Any,
}

fn ext_pair(oid: &str, value: Any) -> Result<ExtPair, SimError> {
    Ok(ExtPair {
        oid: ObjectIdentifier::new(oid).map_err(cert_error)?,
        value,
    })
}

fn octets(bytes: &[u8]) -> Result<Any, SimError> {
    Any::encode_from(&OctetString::new(bytes).map_err(cert_error)?).map_err(cert_error)
}

/// The PCK certificate's SGX extension (OID 1.2.840.113741.1.13.1), as Intel encodes it.
fn sgx_extension() -> Result<Vec<u8>, SimError> {
    const BASE: &str = "1.2.840.113741.1.13.1";
    let mut tcb = Vec::new();
    for i in 1..=16 {
        tcb.push(ext_pair(
            &format!("{BASE}.2.{i}"),
            Any::encode_from(&PLATFORM_SVN).map_err(cert_error)?,
        )?);
    }
    tcb.push(ext_pair(
        &format!("{BASE}.2.17"),
        Any::encode_from(&PLATFORM_PCESVN).map_err(cert_error)?,
    )?);
    tcb.push(ext_pair(
        &format!("{BASE}.2.18"),
        octets(&[PLATFORM_SVN; 16])?,
    )?);
    let pairs = vec![
        ext_pair(
            &format!("{BASE}.1"),
            octets(&sha256(b"simulated PPID")[..16])?,
        )?,
        ext_pair(
            &format!("{BASE}.2"),
            Any::encode_from(&tcb).map_err(cert_error)?,
        )?,
        ext_pair(&format!("{BASE}.3"), octets(&PCE_ID)?)?,
        ext_pair(&format!("{BASE}.4"), octets(&FMSPC)?)?,
        ext_pair(
            &format!("{BASE}.5"),
            Any::new(Tag::Enumerated, [0u8].as_slice()).map_err(cert_error)?,
        )?,
    ];
    pairs.to_der().map_err(cert_error)
}

impl IntelPki {
    /// Generate a hierarchy valid from a day before `now` for ten years.
    pub fn generate(now: OffsetDateTime) -> Result<Self, SimError> {
        let root = Ca::self_signed(
            ca_params("cloister Simulated SGX Root CA", now)?,
            new_key()?,
        )?;
        let pck_ca = Ca::signed_by(
            ca_params("cloister Simulated SGX PCK Platform CA", now)?,
            new_key()?,
            &root,
        )?;
        let mut tcb_params = ca_params("cloister Simulated SGX TCB Signing", now)?;
        tcb_params.is_ca = IsCa::ExplicitNoCa;
        tcb_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let tcb_signing = Ca::signed_by(tcb_params, new_key()?, &root)?;
        let pck_key = new_key()?;
        let mut leaf = ca_params("cloister Simulated SGX PCK Certificate", now)?;
        leaf.is_ca = IsCa::ExplicitNoCa;
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                &[1, 2, 840, 113741, 1, 13, 1],
                sgx_extension()?,
            ));
        let pck_leaf_der = leaf
            .signed_by(&pck_key, &pck_ca.issuer)
            .map_err(cert_error)?
            .der()
            .to_vec();
        Self::assemble(root, pck_ca, tcb_signing, pck_leaf_der, &pck_key)
    }

    fn assemble(
        root: Ca,
        pck_ca: Ca,
        tcb_signing: Ca,
        pck_leaf_der: Vec<u8>,
        pck_key: &KeyPair,
    ) -> Result<Self, SimError> {
        Ok(Self {
            pck_key: signer(pck_key)?,
            pck_key_pem: zeroize::Zeroizing::new(pck_key.serialize_pem()),
            tcb_key: signer(tcb_signing.issuer.key())?,
            root,
            pck_ca,
            tcb_signing,
            pck_leaf_der,
        })
    }

    /// The hierarchy's certificates and private keys as JSON (PEM inside), to save and
    /// [`IntelPki::from_saved`] later, so several processes share one simulated platform.
    pub fn to_saved(&self) -> Result<zeroize::Zeroizing<String>, SimError> {
        let saved = SavedIntelPki {
            root_cert: self.root.pem(),
            root_key: self.root.key_pem(),
            pck_ca_cert: self.pck_ca.pem(),
            pck_ca_key: self.pck_ca.key_pem(),
            tcb_signing_cert: self.tcb_signing.pem(),
            tcb_signing_key: self.tcb_signing.key_pem(),
            pck_cert: crate::dcap::to_pem_string(&self.pck_leaf_der),
            pck_key: self.pck_key_pem.to_string(),
        };
        serde_json::to_string_pretty(&saved)
            .map(zeroize::Zeroizing::new)
            .map_err(persist_error)
    }

    /// Restore a hierarchy saved with [`IntelPki::to_saved`].
    pub fn from_saved(text: &str) -> Result<Self, SimError> {
        let saved: SavedIntelPki = serde_json::from_str(text).map_err(persist_error)?;
        let pck_leaf_der = crate::x509::parse_pem_chain(saved.pck_cert.as_bytes())
            .map_err(persist_error)?
            .into_iter()
            .next()
            .ok_or_else(|| SimError::Persist("the saved PCK certificate is missing".into()))?
            .into_der();
        let pck_key = KeyPair::from_pem(&saved.pck_key).map_err(persist_error)?;
        Self::assemble(
            Ca::restore(&saved.root_cert, &saved.root_key)?,
            Ca::restore(&saved.pck_ca_cert, &saved.pck_ca_key)?,
            Ca::restore(&saved.tcb_signing_cert, &saved.tcb_signing_key)?,
            pck_leaf_der,
            &pck_key,
        )
    }

    /// The simulated root key's PKCS#8 DER: the seed simulated sealing keys derive from.
    pub fn root_key_der(&self) -> zeroize::Zeroizing<Vec<u8>> {
        zeroize::Zeroizing::new(self.root.issuer.key().serialize_der())
    }

    /// The simulated root CA certificate (PEM): the trust anchor for simulated evidence.
    pub fn root_pem(&self) -> String {
        self.root.pem()
    }

    /// A simulated SGX quote v3.
    pub fn sgx_quote(&self, p: &SgxParams) -> Result<Vec<u8>, SimError> {
        let mut body = [0u8; 384];
        body[..16].copy_from_slice(&[PLATFORM_SVN; 16]);
        body[48] = if p.debug { 0x07 } else { 0x05 };
        body[56] = 0xe7;
        body[64..96].copy_from_slice(&p.mr_enclave);
        body[128..160].copy_from_slice(&p.mr_signer);
        body[256..258].copy_from_slice(&p.isv_prod_id.to_le_bytes());
        body[258..260].copy_from_slice(&p.isv_svn.to_le_bytes());
        body[320..384].copy_from_slice(&p.report_data);
        self.quote(3, 0x00, &body)
    }

    /// A simulated TDX quote v4 (TD report 1.0).
    pub fn tdx_quote(&self, p: &TdxParams) -> Result<Vec<u8>, SimError> {
        let mut body = [0u8; 584];
        body[..16].copy_from_slice(&TEE_TCB_SVN);
        body[16..64].copy_from_slice(&sha384(b"cloister simulated TDX module"));
        // TD_ATTRIBUTES: SEPT_VE_DISABLE (bit 28), and DEBUG (bit 0) on request.
        body[120] = u8::from(p.debug);
        body[123] = 0x10;
        body[128..136].copy_from_slice(&[0xe7, 0x02, 0x06, 0, 0, 0, 0, 0]);
        body[136..184].copy_from_slice(&p.mr_td);
        body[184..232].copy_from_slice(&p.mr_config_id);
        for (i, rtmr) in p.rtmr.iter().enumerate() {
            body[328 + 48 * i..376 + 48 * i].copy_from_slice(rtmr);
        }
        body[520..584].copy_from_slice(&p.report_data);
        self.quote(4, 0x81, &body)
    }

    fn quote(&self, version: u16, tee_type: u32, body: &[u8]) -> Result<Vec<u8>, SimError> {
        let mut quote = Vec::with_capacity(5000);
        quote.extend(version.to_le_bytes());
        quote.extend(2u16.to_le_bytes());
        quote.extend(tee_type.to_le_bytes());
        quote.extend(0u16.to_le_bytes());
        quote.extend(PLATFORM_PCESVN.to_le_bytes());
        quote.extend(INTEL_QE_VENDOR_ID);
        quote.extend([0u8; 20]);
        quote.extend(body);

        let attestation_key =
            EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(key_error)?;
        let public = &attestation_key.public_key().as_ref()[1..];
        let signature = sign(&attestation_key, &quote)?;
        let certification = self.qe_certification(public, tee_type == 0x81)?;

        let mut auth = Vec::new();
        auth.extend(signature);
        auth.extend(public);
        if version == 3 {
            auth.extend(certification);
        } else {
            auth.extend(6u16.to_le_bytes());
            auth.extend(len32(&certification)?.to_le_bytes());
            auth.extend(certification);
        }
        quote.extend(len32(&auth)?.to_le_bytes());
        quote.extend(auth);
        Ok(quote)
    }

    /// QE report, its PCK signature, QE auth data and the PEM PCK chain (type 5).
    fn qe_certification(&self, attestation_key: &[u8], tdx: bool) -> Result<Vec<u8>, SimError> {
        let qe_auth_data: Vec<u8> = (0u8..32).collect();
        let mut qe_report = [0u8; 384];
        qe_report[..16].copy_from_slice(&[PLATFORM_SVN; 16]);
        qe_report[48] = 0x11;
        qe_report[64..96].copy_from_slice(&sha256(b"cloister simulated QE"));
        qe_report[128..160].copy_from_slice(&qe_mrsigner());
        qe_report[256..258].copy_from_slice(&qe_prod_id(tdx).to_le_bytes());
        qe_report[258..260].copy_from_slice(&QE_ISVSVN.to_le_bytes());
        qe_report[320..352].copy_from_slice(&sha256(&[attestation_key, &qe_auth_data].concat()));
        let qe_signature = sign(&self.pck_key, &qe_report)?;
        let chain = format!(
            "{}{}{}",
            crate::dcap::to_pem_string(&self.pck_leaf_der),
            self.pck_ca.pem(),
            self.root.pem()
        );
        let mut out = Vec::new();
        out.extend(qe_report);
        out.extend(qe_signature);
        out.extend(
            u16::try_from(qe_auth_data.len())
                .unwrap_or(32)
                .to_le_bytes(),
        );
        out.extend(&qe_auth_data);
        out.extend(5u16.to_le_bytes());
        out.extend(len32(chain.as_bytes())?.to_le_bytes());
        out.extend(chain.as_bytes());
        Ok(out)
    }

    /// Collateral for this platform at `now`, whose TCB info puts the platform at `status`.
    pub fn collateral(
        &self,
        tdx: bool,
        status: TcbStatus,
        now: OffsetDateTime,
    ) -> Result<Collateral, SimError> {
        let tcb_info = json_signed(&self.tcb_key, &self.tcb_info(tdx, status, now))?;
        let qe_identity = json_signed(&self.tcb_key, &self.qe_identity(tdx, now))?;
        let mut collateral = Collateral::default();
        collateral.tcb_info = Some(tcb_info);
        collateral.qe_identity = Some(qe_identity);
        let chain_pem = format!("{}{}", self.tcb_signing.pem(), self.root.pem());
        let pck_chain_pem = format!("{}{}", self.pck_ca.pem(), self.root.pem());
        collateral
            .add_file("TCB signing chain", chain_pem.as_bytes())
            .map_err(cert_error)?;
        collateral
            .add_file("PCK CRL issuer chain", pck_chain_pem.as_bytes())
            .map_err(cert_error)?;
        for issuer in [&self.pck_ca, &self.root] {
            let crl = crl(issuer, now)?;
            collateral.add_file("CRL", &crl).map_err(cert_error)?;
        }
        Ok(collateral)
    }

    fn tcb_info(&self, tdx: bool, status: TcbStatus, now: OffsetDateTime) -> serde_json::Value {
        let comps = |svn: u8| -> Vec<serde_json::Value> {
            (0..16).map(|_| json!({ "svn": svn })).collect()
        };
        let tdx_comps = |head: [u8; 3]| -> Vec<serde_json::Value> {
            (0..16)
                .map(|i| json!({ "svn": head.get(i).copied().unwrap_or(0) }))
                .collect()
        };
        let level = |sgx: u8,
                     pce: u16,
                     tdx_head: [u8; 3],
                     status: TcbStatus,
                     date: OffsetDateTime| {
            let mut tcb = json!({ "sgxtcbcomponents": comps(sgx), "pcesvn": pce });
            if tdx {
                tcb["tdxtcbcomponents"] = json!(tdx_comps(tdx_head));
            }
            let advisories: Vec<&str> = if status == TcbStatus::UpToDate {
                vec![]
            } else {
                vec![SIMULATED_ADVISORY]
            };
            json!({ "tcb": tcb, "tcbDate": pcs_time(date), "tcbStatus": status.as_str(), "advisoryIDs": advisories })
        };
        let mut levels = Vec::new();
        if status != TcbStatus::UpToDate {
            levels.push(level(
                PLATFORM_SVN + 2,
                PLATFORM_PCESVN,
                [3, 1, 2],
                TcbStatus::UpToDate,
                now - Duration::days(10),
            ));
        }
        levels.push(level(
            PLATFORM_SVN,
            PLATFORM_PCESVN,
            [3, 1, 2],
            status,
            now - Duration::days(90),
        ));
        levels.push(level(
            0,
            0,
            [0, 0, 0],
            TcbStatus::OutOfDate,
            now - Duration::days(900),
        ));
        let mut info = json!({
            "id": if tdx { "TDX" } else { "SGX" },
            "version": 3,
            "issueDate": pcs_time(now - Duration::hours(1)),
            "nextUpdate": pcs_time(now + Duration::days(30)),
            "fmspc": hex::encode_upper(FMSPC),
            "pceId": hex::encode_upper(PCE_ID),
            "tcbType": 0,
            "tcbEvaluationDataNumber": 17,
        });
        if tdx {
            let module = |id: Option<&str>| {
                let mut m = json!({
                    "mrsigner": hex::encode_upper([0u8; 48]),
                    "attributes": "0000000000000000",
                    "attributesMask": "FFFFFFFFFFFFFFFF",
                });
                if let Some(id) = id {
                    m["id"] = json!(id);
                    m["tcbLevels"] = json!([{ "tcb": { "isvsvn": TEE_TCB_SVN[0] }, "tcbDate": pcs_time(now - Duration::days(90)), "tcbStatus": "UpToDate" }]);
                }
                m
            };
            info["tdxModule"] = module(None);
            info["tdxModuleIdentities"] = json!([module(Some("TDX_01"))]);
        }
        info["tcbLevels"] = json!(levels);
        info
    }

    fn qe_identity(&self, tdx: bool, now: OffsetDateTime) -> serde_json::Value {
        json!({
            "id": if tdx { "TD_QE" } else { "QE" },
            "version": 2,
            "issueDate": pcs_time(now - Duration::hours(1)),
            "nextUpdate": pcs_time(now + Duration::days(30)),
            "tcbEvaluationDataNumber": 17,
            "miscselect": "00000000",
            "miscselectMask": "FFFFFFFF",
            "attributes": "11000000000000000000000000000000",
            "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
            "mrsigner": hex::encode_upper(qe_mrsigner()),
            "isvprodid": qe_prod_id(tdx),
            "tcbLevels": [{ "tcb": { "isvsvn": QE_ISVSVN }, "tcbDate": pcs_time(now - Duration::days(90)), "tcbStatus": "UpToDate" }],
        })
    }
}

fn qe_mrsigner() -> [u8; 32] {
    sha256(b"cloister simulated QE signer")
}

fn qe_prod_id(tdx: bool) -> u16 {
    if tdx { 2 } else { 1 }
}

fn len32(bytes: &[u8]) -> Result<u32, SimError> {
    u32::try_from(bytes.len()).map_err(|_| SimError::Param("structure too large".into()))
}

fn json_signed(key: &EcdsaKeyPair, value: &serde_json::Value) -> Result<SignedJson, SimError> {
    let text = value.to_string();
    let signature = sign(key, text.as_bytes())?;
    Ok(SignedJson { text, signature })
}

fn crl(ca: &Ca, now: OffsetDateTime) -> Result<Vec<u8>, SimError> {
    let params = CertificateRevocationListParams {
        this_update: now - Duration::hours(1),
        next_update: now + Duration::days(30),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: Vec::new(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    Ok(params
        .signed_by(&ca.issuer)
        .map_err(cert_error)?
        .der()
        .to_vec())
}
