//! Intel PCS collateral: TCB info, QE identity, CRLs and issuer chains.
//!
//! TCB info and QE identity are signed over the exact bytes of their JSON objects, so the
//! signed text is kept byte for byte (`serde_json::value::RawValue`) and only parsed for its
//! contents. Collateral can be loaded from the combined JSON used by dcap-qvl and the
//! testdata, or from the individual files an operator fetches from the PCS (each recognized
//! by its content).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use time::OffsetDateTime;

use super::DcapError;
use crate::claims::TcbStatus;
use crate::encoding::decode_input;
use crate::x509::{Cert, Crl, parse_pem_chain};

/// A JSON object exactly as signed, with its ECDSA-P256 signature (`r || s`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedJson {
    /// The exact signed text.
    pub text: String,
    /// The signature.
    pub signature: [u8; 64],
}

/// Everything besides the quote that DCAP verification needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collateral {
    /// The TCB info for the platform's FMSPC.
    pub tcb_info: Option<SignedJson>,
    /// The QE (SGX) or TD_QE (TDX) identity.
    pub qe_identity: Option<SignedJson>,
    /// CRLs: the PCK CA's and the Root CA's.
    pub crls: Vec<Crl>,
    /// TCB-signing chains (leaf first); several generations may be supplied.
    pub tcb_signing_chains: Vec<Vec<Cert>>,
    /// The PCK CRL issuer chain (PEM), kept for serialization only: the PCK chain in the
    /// quote carries the same CA.
    pub pck_crl_issuer_chain: String,
    /// SHA-256 over all of the above, computed once (the verifier's cache key).
    digest: std::sync::OnceLock<[u8; 32]>,
}

/// A JSON string, borrowed from the input unless it holds escapes.
type Text<'a> = std::borrow::Cow<'a, str>;

/// The combined collateral JSON (dcap-qvl's `QuoteCollateralV3` field names).
#[derive(Debug, Serialize)]
struct CombinedJson<'a> {
    pck_crl_issuer_chain: Text<'a>,
    root_ca_crl: Text<'a>,
    pck_crl: Text<'a>,
    tcb_info_issuer_chain: Text<'a>,
    tcb_info: Text<'a>,
    tcb_info_signature: Text<'a>,
    qe_identity_issuer_chain: Text<'a>,
    qe_identity: Text<'a>,
    qe_identity_signature: Text<'a>,
}

/// Any collateral JSON file, read in one pass: the combined form (snake_case fields) or a PCS
/// `tcbInfo` / `enclaveIdentity` response (the signed object kept byte for byte). Strings
/// without escapes (the hex CRLs and signatures) are borrowed, not copied.
#[derive(Deserialize)]
struct CollateralFile<'a> {
    #[serde(borrow)]
    pck_crl_issuer_chain: Option<Text<'a>>,
    #[serde(borrow)]
    root_ca_crl: Option<Text<'a>>,
    #[serde(borrow)]
    pck_crl: Option<Text<'a>>,
    #[serde(borrow)]
    tcb_info_issuer_chain: Option<Text<'a>>,
    #[serde(borrow)]
    tcb_info: Option<Text<'a>>,
    #[serde(borrow)]
    tcb_info_signature: Option<Text<'a>>,
    #[serde(borrow)]
    qe_identity_issuer_chain: Option<Text<'a>>,
    #[serde(borrow)]
    qe_identity: Option<Text<'a>>,
    #[serde(borrow)]
    qe_identity_signature: Option<Text<'a>>,
    #[serde(borrow, rename = "tcbInfo")]
    pcs_tcb_info: Option<&'a RawValue>,
    #[serde(borrow, rename = "enclaveIdentity")]
    pcs_enclave_identity: Option<&'a RawValue>,
    #[serde(borrow)]
    signature: Option<Text<'a>>,
}

impl<'a> CollateralFile<'a> {
    fn into_combined(self, name: &str) -> Result<CombinedJson<'a>, DcapError> {
        let required = |field: Option<Text<'a>>, key: &str| {
            field.ok_or_else(|| malformed(name, format!("combined collateral lacks `{key}`")))
        };
        Ok(CombinedJson {
            pck_crl_issuer_chain: required(self.pck_crl_issuer_chain, "pck_crl_issuer_chain")?,
            root_ca_crl: required(self.root_ca_crl, "root_ca_crl")?,
            pck_crl: required(self.pck_crl, "pck_crl")?,
            tcb_info_issuer_chain: required(self.tcb_info_issuer_chain, "tcb_info_issuer_chain")?,
            tcb_info: required(self.tcb_info, "tcb_info")?,
            tcb_info_signature: required(self.tcb_info_signature, "tcb_info_signature")?,
            qe_identity_issuer_chain: required(
                self.qe_identity_issuer_chain,
                "qe_identity_issuer_chain",
            )?,
            qe_identity: required(self.qe_identity, "qe_identity")?,
            qe_identity_signature: required(self.qe_identity_signature, "qe_identity_signature")?,
        })
    }
}

fn malformed(what: impl Into<String>, reason: impl std::fmt::Display) -> DcapError {
    DcapError::CollateralMalformed {
        what: what.into(),
        reason: reason.to_string(),
    }
}

fn signature64(hex_text: &str, what: &str) -> Result<[u8; 64], DcapError> {
    let bytes = hex::decode(hex_text.trim().as_bytes()).map_err(|e| malformed(what, e))?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        malformed(what, format!("signature is {} bytes, expected 64", b.len()))
    })
}

/// The `signature` beside a PCS response's signed object.
fn pcs_signature(hex_text: Option<&str>, name: &str, what: &str) -> Result<[u8; 64], DcapError> {
    let hex_text =
        hex_text.ok_or_else(|| malformed(name, "the PCS response lacks its `signature`"))?;
    signature64(hex_text, what)
}

fn pem_chain(text: &str, what: &str) -> Result<Vec<Cert>, DcapError> {
    parse_pem_chain(text.as_bytes()).map_err(|e| malformed(what, e))
}

fn hex_crl(text: &str, what: &str) -> Result<Crl, DcapError> {
    let der = hex::decode(text.trim().as_bytes()).map_err(|e| malformed(what, e))?;
    Crl::from_der(&der).map_err(|e| malformed(what, e))
}

impl Collateral {
    /// Load collateral from files, each recognized by its content: the combined JSON, PCS
    /// `tcbInfo` and `enclaveIdentity` responses, CRLs (DER, PEM or hex) and PEM chains.
    pub fn from_files<N: AsRef<str>, B: AsRef<[u8]>>(files: &[(N, B)]) -> Result<Self, DcapError> {
        let mut out = Self::default();
        for (name, bytes) in files {
            out.add_file(name.as_ref(), bytes.as_ref())?;
        }
        Ok(out)
    }

    /// Load the combined collateral JSON.
    pub fn from_combined_json(bytes: &[u8]) -> Result<Self, DcapError> {
        let mut out = Self::default();
        out.add_file("collateral JSON", bytes)?;
        Ok(out)
    }

    /// A digest of every piece of this collateral: equal digests mean equal collateral.
    pub fn digest(&self) -> [u8; 32] {
        *self.digest.get_or_init(|| {
            let mut parts: Vec<&[u8]> = Vec::new();
            for signed in [&self.tcb_info, &self.qe_identity].into_iter().flatten() {
                parts.extend([signed.text.as_bytes(), &signed.signature[..]]);
            }
            parts.extend(self.crls.iter().map(|c| c.der()));
            for chain in &self.tcb_signing_chains {
                parts.extend(chain.iter().map(|c| c.der()));
            }
            // Length-prefix each part so that different splits cannot collide.
            let mut data = Vec::new();
            for part in parts {
                data.extend((part.len() as u64).to_le_bytes());
                data.extend(part);
            }
            crate::crypto::sha256(&data)
        })
    }

    /// Add one file to this collateral.
    pub fn add_file(&mut self, name: &str, bytes: &[u8]) -> Result<(), DcapError> {
        self.digest = std::sync::OnceLock::new();
        let trimmed = bytes.trim_ascii_start();
        if trimmed.starts_with(b"{") {
            return self.add_json(name, bytes);
        }
        if trimmed.starts_with(b"-----BEGIN") {
            if std::str::from_utf8(trimmed).is_ok_and(|t| t.contains("BEGIN X509 CRL")) {
                self.crls
                    .push(Crl::parse(bytes).map_err(|e| malformed(name, e))?);
                return Ok(());
            }
            let chain = parse_pem_chain(bytes).map_err(|e| malformed(name, e))?;
            self.add_chain(chain);
            return Ok(());
        }
        let (der, _) = decode_input(bytes);
        if let Ok(crl) = Crl::from_der(&der) {
            self.crls.push(crl);
            return Ok(());
        }
        if let Ok(cert) = Cert::from_der(&der) {
            self.add_chain(vec![cert]);
            return Ok(());
        }
        Err(malformed(
            name,
            "not collateral JSON, a PCS response, a CRL or a certificate chain",
        ))
    }

    fn add_chain(&mut self, chain: Vec<Cert>) {
        let Some(leaf) = chain.first() else { return };
        if leaf.subject_mentions("TCB Signing") {
            if !self.tcb_signing_chains.contains(&chain) {
                self.tcb_signing_chains.push(chain);
            }
        } else if leaf.subject_mentions("PCK") {
            self.pck_crl_issuer_chain = chain.iter().map(|c| to_pem_string(c.der())).collect();
        }
    }

    fn add_json(&mut self, name: &str, bytes: &[u8]) -> Result<(), DcapError> {
        let file: CollateralFile<'_> =
            std::str::from_utf8(bytes)
                .map_err(|e| malformed(name, e))
                .and_then(|text| serde_json::from_str(text).map_err(|e| malformed(name, e)))?;
        if file.tcb_info.is_some() {
            return self.add_combined(file.into_combined(name)?);
        }
        if let Some(tcb_info) = file.pcs_tcb_info {
            self.tcb_info = Some(SignedJson {
                text: tcb_info.get().to_string(),
                signature: pcs_signature(file.signature.as_deref(), name, "TCB info signature")?,
            });
            return Ok(());
        }
        if let Some(identity) = file.pcs_enclave_identity {
            self.qe_identity = Some(SignedJson {
                text: identity.get().to_string(),
                signature: pcs_signature(file.signature.as_deref(), name, "QE identity signature")?,
            });
            return Ok(());
        }
        Err(malformed(
            name,
            "JSON, but neither combined collateral nor a PCS tcbInfo/enclaveIdentity response",
        ))
    }

    fn add_combined(&mut self, c: CombinedJson<'_>) -> Result<(), DcapError> {
        self.tcb_info = Some(SignedJson {
            text: c.tcb_info.into_owned(),
            signature: signature64(&c.tcb_info_signature, "tcb_info_signature")?,
        });
        self.qe_identity = Some(SignedJson {
            text: c.qe_identity.into_owned(),
            signature: signature64(&c.qe_identity_signature, "qe_identity_signature")?,
        });
        self.crls.push(hex_crl(&c.pck_crl, "pck_crl")?);
        self.crls.push(hex_crl(&c.root_ca_crl, "root_ca_crl")?);
        self.add_chain(pem_chain(
            &c.tcb_info_issuer_chain,
            "tcb_info_issuer_chain",
        )?);
        if c.qe_identity_issuer_chain != c.tcb_info_issuer_chain {
            self.add_chain(pem_chain(
                &c.qe_identity_issuer_chain,
                "qe_identity_issuer_chain",
            )?);
        }
        self.pck_crl_issuer_chain = c.pck_crl_issuer_chain.into_owned();
        Ok(())
    }

    /// Serialize as the combined collateral JSON. Needs every piece, one CRL from a PCK CA
    /// and one from the Root CA.
    pub fn to_combined_json(&self) -> Result<String, DcapError> {
        let missing = |what: &'static str| DcapError::CollateralMissing {
            what,
            hint: "the combined JSON needs every piece".into(),
        };
        let tcb = self.tcb_info.as_ref().ok_or_else(|| missing("TCB info"))?;
        let qe = self
            .qe_identity
            .as_ref()
            .ok_or_else(|| missing("QE identity"))?;
        let chain = self
            .tcb_signing_chains
            .first()
            .ok_or_else(|| missing("TCB signing chain"))?;
        let root_crl = self
            .crls
            .iter()
            .find(|c| c.issuer().contains("Root CA"))
            .ok_or_else(|| missing("Root CA CRL"))?;
        let pck_crl = self
            .crls
            .iter()
            .find(|c| c.issuer().contains("PCK"))
            .ok_or_else(|| missing("PCK CRL"))?;
        let chain: String = chain.iter().map(|c| to_pem_string(c.der())).collect();
        let combined = CombinedJson {
            pck_crl_issuer_chain: Text::Borrowed(&self.pck_crl_issuer_chain),
            root_ca_crl: hex::encode(root_crl.der()).into(),
            pck_crl: hex::encode(pck_crl.der()).into(),
            tcb_info_issuer_chain: Text::Borrowed(&chain),
            tcb_info: Text::Borrowed(&tcb.text),
            tcb_info_signature: hex::encode(tcb.signature).into(),
            qe_identity_issuer_chain: Text::Borrowed(&chain),
            qe_identity: Text::Borrowed(&qe.text),
            qe_identity_signature: hex::encode(qe.signature).into(),
        };
        serde_json::to_string_pretty(&combined).map_err(|e| malformed("collateral", e))
    }
}

/// PEM-encode one DER certificate.
pub fn to_pem_string(der: &[u8]) -> String {
    use base64::Engine as _;
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----\n";
    const END: &str = "-----END CERTIFICATE-----\n";
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(BEGIN.len() + b64.len() + b64.len() / 64 + 1 + END.len());
    out.push_str(BEGIN);
    // Base64 is ASCII, so every 64-byte split is a character boundary.
    let mut rest = b64.as_str();
    while !rest.is_empty() {
        let (line, tail) = rest.split_at(rest.len().min(64));
        out.push_str(line);
        out.push('\n');
        rest = tail;
    }
    out.push_str(END);
    out
}

// ---- TCB info ----------------------------------------------------------------------------

/// One TCB level of a TCB info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcbLevel {
    /// Minimum SGX TCB component SVNs.
    pub sgx_components: [u8; 16],
    /// Minimum PCESVN.
    pub pce_svn: u16,
    /// Minimum TEE_TCB_SVN components (TDX).
    pub tdx_components: Option<[u8; 16]>,
    /// The level's date.
    pub date: String,
    /// Its status.
    pub status: TcbStatus,
    /// Advisories that apply at this level.
    pub advisory_ids: Vec<String>,
}

/// The TDX module's expected signer and attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdxModule {
    /// Identity name, e.g. `TDX_03` (empty for the base `tdxModule`).
    pub id: String,
    /// MRSIGNERSEAM expected.
    pub mrsigner: [u8; 48],
    /// SEAM_ATTRIBUTES expected (under the mask).
    pub attributes: [u8; 8],
    /// Mask for SEAM_ATTRIBUTES.
    pub attributes_mask: [u8; 8],
    /// Module TCB levels: `(minimum ISVSVN, date, status, advisories)`.
    pub levels: Vec<ModuleLevel>,
}

/// One TDX module (or QE) TCB level, keyed by ISVSVN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleLevel {
    /// Minimum ISVSVN.
    pub isv_svn: u16,
    /// The level's date.
    pub date: String,
    /// Its status.
    pub status: TcbStatus,
    /// Advisories that apply at this level.
    pub advisory_ids: Vec<String>,
}

/// Parsed TCB info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcbInfo {
    /// `SGX` or `TDX` (v2 has no id and is SGX).
    pub id: String,
    /// Format version (2 or 3).
    pub version: u32,
    /// issueDate.
    pub issue_date: OffsetDateTime,
    /// nextUpdate.
    pub next_update: OffsetDateTime,
    /// FMSPC.
    pub fmspc: [u8; 6],
    /// PCE-ID.
    pub pce_id: [u8; 2],
    /// tcbEvaluationDataNumber.
    pub evaluation_data_number: Option<u32>,
    /// Levels, newest first.
    pub levels: Vec<TcbLevel>,
    /// The base TDX module identity (`tdxModule`).
    pub tdx_module: Option<TdxModule>,
    /// Per-version module identities (`tdxModuleIdentities`).
    pub tdx_module_identities: Vec<TdxModule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TcbInfoJson<'a> {
    id: Option<String>,
    version: u32,
    #[serde(borrow)]
    issue_date: Text<'a>,
    #[serde(borrow)]
    next_update: Text<'a>,
    #[serde(borrow)]
    fmspc: Text<'a>,
    #[serde(borrow)]
    pce_id: Text<'a>,
    tcb_evaluation_data_number: Option<u32>,
    #[serde(borrow)]
    tcb_levels: Vec<TcbLevelJson<'a>>,
    #[serde(borrow)]
    tdx_module: Option<ModuleJson<'a>>,
    #[serde(borrow, default)]
    tdx_module_identities: Vec<ModuleJson<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TcbLevelJson<'a> {
    tcb: TcbJson,
    tcb_date: String,
    #[serde(borrow)]
    tcb_status: Text<'a>,
    #[serde(rename = "advisoryIDs", default)]
    advisory_ids: Vec<String>,
}

/// A level's TCB: v3 lists components; v2 names them `sgxtcbcompNNsvn`.
#[derive(Deserialize)]
struct TcbJson {
    sgxtcbcomponents: Option<[SvnJson; 16]>,
    tdxtcbcomponents: Option<[SvnJson; 16]>,
    pcesvn: u16,
    sgxtcbcomp01svn: Option<u8>,
    sgxtcbcomp02svn: Option<u8>,
    sgxtcbcomp03svn: Option<u8>,
    sgxtcbcomp04svn: Option<u8>,
    sgxtcbcomp05svn: Option<u8>,
    sgxtcbcomp06svn: Option<u8>,
    sgxtcbcomp07svn: Option<u8>,
    sgxtcbcomp08svn: Option<u8>,
    sgxtcbcomp09svn: Option<u8>,
    sgxtcbcomp10svn: Option<u8>,
    sgxtcbcomp11svn: Option<u8>,
    sgxtcbcomp12svn: Option<u8>,
    sgxtcbcomp13svn: Option<u8>,
    sgxtcbcomp14svn: Option<u8>,
    sgxtcbcomp15svn: Option<u8>,
    sgxtcbcomp16svn: Option<u8>,
}

#[derive(Deserialize)]
struct SvnJson {
    svn: u8,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModuleJson<'a> {
    #[serde(default)]
    id: String,
    #[serde(borrow)]
    mrsigner: Text<'a>,
    #[serde(borrow)]
    attributes: Text<'a>,
    #[serde(borrow)]
    attributes_mask: Text<'a>,
    #[serde(borrow, default)]
    tcb_levels: Vec<IsvLevelJson<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IsvLevelJson<'a> {
    tcb: IsvSvnJson,
    tcb_date: String,
    #[serde(borrow)]
    tcb_status: Text<'a>,
    #[serde(rename = "advisoryIDs", default)]
    advisory_ids: Vec<String>,
}

#[derive(Deserialize)]
struct IsvSvnJson {
    isvsvn: u16,
}

pub(crate) fn parse_time(text: &str, what: &str) -> Result<OffsetDateTime, DcapError> {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| malformed(what, format!("bad date {text:?}: {e}")))
}

fn hex_array<const N: usize>(text: &str, what: &str) -> Result<[u8; N], DcapError> {
    let bytes = hex::decode(text.as_bytes()).map_err(|e| malformed(what, e))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| malformed(what, format!("{} bytes, expected {N}", b.len())))
}

fn status(text: &str, what: &str) -> Result<TcbStatus, DcapError> {
    text.parse()
        .map_err(|_| malformed(what, format!("unknown TCB status {text:?}")))
}

impl TcbInfo {
    /// Parse the signed TCB info text.
    pub fn parse(text: &str) -> Result<Self, DcapError> {
        let j: TcbInfoJson = serde_json::from_str(text).map_err(|e| malformed("TCB info", e))?;
        let id = j.id.unwrap_or_else(|| "SGX".into());
        let levels = j
            .tcb_levels
            .into_iter()
            .map(parse_level)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            version: j.version,
            issue_date: parse_time(&j.issue_date, "TCB info issueDate")?,
            next_update: parse_time(&j.next_update, "TCB info nextUpdate")?,
            fmspc: hex_array(&j.fmspc, "TCB info fmspc")?,
            pce_id: hex_array(&j.pce_id, "TCB info pceId")?,
            evaluation_data_number: j.tcb_evaluation_data_number,
            levels,
            tdx_module: j.tdx_module.map(parse_module).transpose()?,
            tdx_module_identities: j
                .tdx_module_identities
                .into_iter()
                .map(parse_module)
                .collect::<Result<_, _>>()?,
            id,
        })
    }
}

fn parse_level(l: TcbLevelJson<'_>) -> Result<TcbLevel, DcapError> {
    let t = &l.tcb;
    let svns = |list: &[SvnJson; 16]| list.each_ref().map(|c| c.svn);
    let sgx_components = match &t.sgxtcbcomponents {
        Some(list) => svns(list),
        None => {
            let v2 = [
                t.sgxtcbcomp01svn,
                t.sgxtcbcomp02svn,
                t.sgxtcbcomp03svn,
                t.sgxtcbcomp04svn,
                t.sgxtcbcomp05svn,
                t.sgxtcbcomp06svn,
                t.sgxtcbcomp07svn,
                t.sgxtcbcomp08svn,
                t.sgxtcbcomp09svn,
                t.sgxtcbcomp10svn,
                t.sgxtcbcomp11svn,
                t.sgxtcbcomp12svn,
                t.sgxtcbcomp13svn,
                t.sgxtcbcomp14svn,
                t.sgxtcbcomp15svn,
                t.sgxtcbcomp16svn,
            ];
            let mut out = [0u8; 16];
            for (slot, svn) in out.iter_mut().zip(v2) {
                *slot = svn.ok_or_else(|| {
                    malformed("TCB info level", "an SGX TCB component is missing")
                })?;
            }
            out
        }
    };
    Ok(TcbLevel {
        sgx_components,
        pce_svn: t.pcesvn,
        tdx_components: t.tdxtcbcomponents.as_ref().map(svns),
        status: status(&l.tcb_status, "TCB info level")?,
        date: l.tcb_date,
        advisory_ids: l.advisory_ids,
    })
}

fn parse_module(m: ModuleJson<'_>) -> Result<TdxModule, DcapError> {
    Ok(TdxModule {
        mrsigner: hex_array(&m.mrsigner, "tdxModule mrsigner")?,
        attributes: hex_array(&m.attributes, "tdxModule attributes")?,
        attributes_mask: hex_array(&m.attributes_mask, "tdxModule attributesMask")?,
        levels: m
            .tcb_levels
            .into_iter()
            .map(parse_isv_level)
            .collect::<Result<_, _>>()?,
        id: m.id,
    })
}

fn parse_isv_level(l: IsvLevelJson<'_>) -> Result<ModuleLevel, DcapError> {
    Ok(ModuleLevel {
        isv_svn: l.tcb.isvsvn,
        status: status(&l.tcb_status, "TCB level")?,
        date: l.tcb_date,
        advisory_ids: l.advisory_ids,
    })
}

// ---- QE identity -------------------------------------------------------------------------

/// Parsed QE identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QeIdentity {
    /// `QE` (SGX) or `TD_QE` (TDX).
    pub id: String,
    /// issueDate.
    pub issue_date: OffsetDateTime,
    /// nextUpdate.
    pub next_update: OffsetDateTime,
    /// Expected MISCSELECT under the mask.
    pub miscselect: u32,
    /// MISCSELECT mask.
    pub miscselect_mask: u32,
    /// Expected ATTRIBUTES under the mask.
    pub attributes: [u8; 16],
    /// ATTRIBUTES mask.
    pub attributes_mask: [u8; 16],
    /// Expected MRSIGNER.
    pub mrsigner: [u8; 32],
    /// Expected ISVPRODID.
    pub isv_prod_id: u16,
    /// QE TCB levels, newest first.
    pub levels: Vec<ModuleLevel>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QeIdentityJson<'a> {
    id: String,
    #[serde(borrow)]
    issue_date: Text<'a>,
    #[serde(borrow)]
    next_update: Text<'a>,
    #[serde(borrow)]
    miscselect: Text<'a>,
    #[serde(borrow)]
    miscselect_mask: Text<'a>,
    #[serde(borrow)]
    attributes: Text<'a>,
    #[serde(borrow)]
    attributes_mask: Text<'a>,
    #[serde(borrow)]
    mrsigner: Text<'a>,
    isvprodid: u16,
    #[serde(borrow)]
    tcb_levels: Vec<IsvLevelJson<'a>>,
}

impl QeIdentity {
    /// Parse the signed QE identity text.
    pub fn parse(text: &str) -> Result<Self, DcapError> {
        let j: QeIdentityJson =
            serde_json::from_str(text).map_err(|e| malformed("QE identity", e))?;
        let word = |t: &str, what: &str| {
            u32::from_str_radix(t, 16).map_err(|e| malformed(format!("QE identity {what}"), e))
        };
        Ok(Self {
            issue_date: parse_time(&j.issue_date, "QE identity issueDate")?,
            next_update: parse_time(&j.next_update, "QE identity nextUpdate")?,
            miscselect: word(&j.miscselect, "miscselect")?,
            miscselect_mask: word(&j.miscselect_mask, "miscselectMask")?,
            attributes: hex_array(&j.attributes, "QE identity attributes")?,
            attributes_mask: hex_array(&j.attributes_mask, "QE identity attributesMask")?,
            mrsigner: hex_array(&j.mrsigner, "QE identity mrsigner")?,
            isv_prod_id: j.isvprodid,
            levels: j
                .tcb_levels
                .into_iter()
                .map(parse_isv_level)
                .collect::<Result<_, _>>()?,
            id: j.id,
        })
    }
}
