//! The front door: detect an evidence kind, and verify or inspect any kind with one call.
//!
//! Evidence arrives as raw bytes, hex or base64 text, or one of CoCo's JSON evidence forms.
//! [`detect`] decides what it is; [`Verifiers`] runs the right verifier with the right trust
//! anchor; [`inspect`] decodes every field without verifying anything.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::Serialize;
use time::OffsetDateTime;

use crate::anchor::TrustAnchor;
use crate::azure::{self, AzureError};
use crate::claims::{Claims, TeeKind};
use crate::dcap::{Collateral, DcapError, DcapVerifier, Quote};
use crate::encoding::{InputEncoding, decode_base64_any, decode_input};
use crate::eventlog::{EventLog, EventLogError};
use crate::policy::{Policy, PolicyViolation};
use crate::snp::{Report, SnpError, SnpVerifier};

/// The SEV-SNP attestation report size.
const SNP_REPORT_LEN: usize = 0x4A0;

/// What [`detect`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    /// The TEE kind.
    pub tee: TeeKind,
    /// How the input was encoded.
    pub encoding: InputEncoding,
    /// The form of the evidence.
    pub form: Form,
    /// The decoded bytes: the quote or report for raw forms, the JSON text for JSON forms.
    pub payload: Vec<u8>,
    /// The TDX CCEL event log carried by CoCo's `tdx` JSON form, if any.
    pub event_log: Option<Vec<u8>>,
}

/// The container evidence came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Form {
    /// The hardware structure itself (quote or report).
    Raw,
    /// A CoCo attester's JSON evidence.
    CocoJson,
}

/// Why evidence could not be recognized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DetectError {
    /// The input is empty.
    #[error("the evidence file is empty")]
    Empty,
    /// Nothing we know looks like this.
    #[error(
        "unrecognized evidence ({len} bytes, {encoding}): not an SGX/TDX quote, SNP report or CoCo evidence JSON; pass --tee to say what it is"
    )]
    Unrecognized {
        /// Decoded length.
        len: usize,
        /// Detected encoding.
        encoding: InputEncoding,
    },
    /// JSON that is not one of CoCo's evidence forms.
    #[error("the JSON is not CoCo evidence: {reason}")]
    BadJson {
        /// What is wrong.
        reason: String,
    },
    /// `--tee` says one kind, the bytes say another.
    #[error("the evidence is {found}, not {expected} as requested")]
    KindMismatch {
        /// What the caller asked for.
        expected: TeeKind,
        /// What the bytes are.
        found: TeeKind,
    },
}

/// Recognize evidence. `hint` is the caller's `--tee`, which wins where the bytes are ambiguous
/// and is checked where they are not.
pub fn detect(input: &[u8], hint: Option<TeeKind>) -> Result<Detected, DetectError> {
    if input.trim_ascii().is_empty() {
        return Err(DetectError::Empty);
    }
    if input.trim_ascii_start().starts_with(b"{") {
        return detect_json(input, hint);
    }
    let (bytes, encoding) = decode_input(input);
    let tee = raw_kind(&bytes).or(hint).ok_or(DetectError::Unrecognized {
        len: bytes.len(),
        encoding,
    })?;
    if let Some(expected) = hint {
        check_hint(expected, tee)?;
    }
    Ok(Detected {
        tee,
        encoding,
        form: Form::Raw,
        payload: bytes,
        event_log: None,
    })
}

/// An Azure vTPM kind is a container around a hardware kind: `--tee snp` on Azure SNP evidence
/// is a mismatch, but `--tee az-snp-vtpm` on it is fine.
fn check_hint(expected: TeeKind, found: TeeKind) -> Result<(), DetectError> {
    if expected == found {
        Ok(())
    } else {
        Err(DetectError::KindMismatch { expected, found })
    }
}

/// The kind of a raw hardware structure, from its header.
fn raw_kind(b: &[u8]) -> Option<TeeKind> {
    let u16_at = |o: usize| b.get(o..o + 2).map(|s| u16::from_le_bytes([s[0], s[1]]));
    let u32_at = |o: usize| {
        b.get(o..o + 4)
            .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    };
    if b.starts_with(b"HCLA") {
        // An HCL report alone: the hardware report type at 0x20 + 0x4A0 / 0x420 decides.
        return None;
    }
    let (version, att_key_type, tee_type) = (u16_at(0)?, u16_at(2)?, u32_at(4)?);
    if matches!(version, 3..=5) && att_key_type == 2 {
        return match tee_type {
            0x00 => Some(TeeKind::Sgx),
            0x81 => Some(TeeKind::Tdx),
            _ => None,
        };
    }
    let snp_version = u32_at(0)?;
    let sig_algo = u32_at(0x34)?;
    if b.len() >= SNP_REPORT_LEN && matches!(snp_version, 2..=5) && sig_algo == 1 {
        return Some(TeeKind::Snp);
    }
    None
}

fn detect_json(input: &[u8], hint: Option<TeeKind>) -> Result<Detected, DetectError> {
    let value: serde_json::Value =
        serde_json::from_slice(input).map_err(|e| DetectError::BadJson {
            reason: e.to_string(),
        })?;
    let obj = value.as_object().ok_or(DetectError::BadJson {
        reason: "expected a JSON object".into(),
    })?;
    let has = |k: &str| obj.contains_key(k);
    let tee = if has("td_quote") {
        TeeKind::AzTdxVtpm
    } else if has("hcl_report") || (has("report") && has("vcek")) {
        TeeKind::AzSnpVtpm
    } else if has("attestation_report") {
        TeeKind::Snp
    } else if let Some(quote) = obj.get("quote").and_then(|q| q.as_str()) {
        return coco_quote(quote, obj.get("cc_eventlog"), hint);
    } else {
        return Err(DetectError::BadJson {
            reason: "none of the keys of CoCo's sgx, tdx, snp, az-snp-vtpm or az-tdx-vtpm evidence"
                .into(),
        });
    };
    if let Some(expected) = hint {
        check_hint(expected, tee)?;
    }
    Ok(Detected {
        tee,
        encoding: InputEncoding::Binary,
        form: Form::CocoJson,
        payload: input.to_vec(),
        event_log: None,
    })
}

/// CoCo's `sgx` (`{"quote"}`) and `tdx` (`{"quote","cc_eventlog"}`) forms carry a base64 quote.
fn coco_quote(
    quote: &str,
    event_log: Option<&serde_json::Value>,
    hint: Option<TeeKind>,
) -> Result<Detected, DetectError> {
    let bytes = decode_base64_any(quote).ok_or(DetectError::BadJson {
        reason: "\"quote\" is not base64".into(),
    })?;
    let tee = raw_kind(&bytes).ok_or(DetectError::BadJson {
        reason: "\"quote\" does not hold an SGX or TDX quote".into(),
    })?;
    if let Some(expected) = hint {
        check_hint(expected, tee)?;
    }
    let event_log = match event_log.and_then(|v| v.as_str()) {
        Some(text) => Some(decode_base64_any(text).ok_or(DetectError::BadJson {
            reason: "\"cc_eventlog\" is not base64".into(),
        })?),
        None => None,
    };
    Ok(Detected {
        tee,
        encoding: InputEncoding::Base64,
        form: Form::CocoJson,
        payload: bytes,
        event_log,
    })
}

/// What verifying SEV-SNP evidence still needs from AMD's KDS because the evidence does not
/// carry it (a bare report, CoCo's `snp` JSON without certificates, Azure SNP vTPM with only its
/// VCEK). Callers fetch only what their own inputs lack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KdsNeeds {
    /// The product line whose chain and VCEK to fetch.
    pub product: crate::snp::Product,
    /// The VCEK to fetch, by hardware ID (the chip ID; 8 bytes of it on Turin) and the reported
    /// TCB, when the evidence holds neither a VCEK nor a VLEK.
    pub vcek: Option<(Vec<u8>, crate::claims::SnpTcb)>,
    /// Whether the ASK/ARK chain is missing.
    pub chain: bool,
}

/// What verifying evidence needs from the vendors that it may not carry, found in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needs {
    /// The evidence kind.
    pub tee: TeeKind,
    /// The DCAP quote (SGX, TDX, or inside Azure TDX vTPM evidence) whose collateral is needed.
    pub dcap_quote: Option<Vec<u8>>,
    /// What AMD's KDS must supply for SNP evidence, when the evidence lacks it.
    pub kds: Option<KdsNeeds>,
}

impl Needs {
    /// Whether the DCAP quote is a TD quote (its collateral is TDX collateral).
    pub fn is_tdx(&self) -> bool {
        matches!(self.tee, TeeKind::Tdx | TeeKind::AzTdxVtpm)
    }
}

/// What `evidence` needs from Intel's PCS and AMD's KDS.
pub fn needs(evidence: &[u8], hint: Option<TeeKind>) -> Result<Needs, VerifyError> {
    let detected = detect(evidence, hint)?;
    let tee = detected.tee;
    let (dcap_quote, kds) = match tee {
        TeeKind::Sgx | TeeKind::Tdx => (Some(detected.payload), None),
        TeeKind::AzTdxVtpm => (
            azure::VtpmEvidence::parse(&detected.payload)?.td_quote,
            None,
        ),
        TeeKind::Snp | TeeKind::AzSnpVtpm => (None, kds_needs(detected)?),
    };
    Ok(Needs {
        tee,
        dcap_quote,
        kds,
    })
}

/// What detected SNP evidence needs from AMD's KDS; `None` when nothing (or a report that
/// does not name its product line).
fn kds_needs(detected: Detected) -> Result<Option<KdsNeeds>, VerifyError> {
    let (report, certs) = match (detected.tee, detected.form) {
        (TeeKind::AzSnpVtpm, _) => {
            let vtpm = azure::VtpmEvidence::parse(&detected.payload)?;
            let azure::HwReport::Snp(report) = vtpm.hcl.hw_report else {
                return Ok(None);
            };
            let vcek = vtpm.vcek.map(|data| crate::snp::coco::CertEntry {
                cert_type: "VCEK".into(),
                data,
            });
            (report, vcek.into_iter().collect())
        }
        (TeeKind::Snp, Form::CocoJson) => {
            let coco = crate::snp::coco::parse(&detected.payload)?;
            (coco.report, coco.certs)
        }
        // A bare report carries nothing; the caller's inputs may.
        (TeeKind::Snp, Form::Raw) => (detected.payload, Vec::new()),
        _ => return Ok(None),
    };
    let has = |kinds: &[&str]| {
        certs
            .iter()
            .find(|c| kinds.iter().any(|k| c.cert_type.eq_ignore_ascii_case(k)))
    };
    let vek = has(&["VCEK", "VLEK"]);
    let report = Report::parse(&report)?;
    let from_vek = || {
        vek.and_then(|v| crate::snp::Vek::parse(&v.data).ok())
            .and_then(|v| v.product())
    };
    let Some(product) = report.product().or_else(from_vek) else {
        return Ok(None);
    };
    let vcek = vek.is_none().then(|| {
        let hw_id = match product {
            crate::snp::Product::Turin => report.chip_id[..8].to_vec(),
            _ => report.chip_id.to_vec(),
        };
        (hw_id, report.reported_tcb.decode(product))
    });
    let chain = has(&["ASK", "ASVK"]).is_none() || has(&["ARK"]).is_none();
    Ok((vcek.is_some() || chain).then_some(KdsNeeds {
        product,
        vcek,
        chain,
    }))
}

/// What verification needs besides the evidence itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inputs {
    /// The TEE kind, when the caller knows it.
    pub tee: Option<TeeKind>,
    /// Collateral files `(name, bytes)` for DCAP evidence.
    pub collateral: Vec<(String, Vec<u8>)>,
    /// DCAP collateral already parsed (a collateral service's cache), used as it is instead of
    /// `collateral`: no bytes to copy, hash and look up per quote. It is verified all the same.
    pub dcap_collateral: Option<Arc<Collateral>>,
    /// The SNP VCEK or VLEK (DER or PEM), unless the evidence carries it.
    pub vek: Option<Vec<u8>>,
    /// The AMD chain (ASK or ASVK, and ARK; PEM), or extra Intel issuer chains.
    pub chain: Option<Vec<u8>>,
    /// The nonce a vTPM quote must carry.
    pub nonce: Option<Vec<u8>>,
}

impl Inputs {
    /// Whether DCAP collateral is given, as bytes or parsed.
    pub fn has_dcap_collateral(&self) -> bool {
        !self.collateral.is_empty() || self.dcap_collateral.is_some()
    }
}

/// Why evidence was not accepted, by stage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The evidence was not recognized.
    #[error(transparent)]
    Detect(#[from] DetectError),
    /// Something verification needs was not supplied.
    #[error("{what} is needed to verify {tee} evidence: {hint}")]
    MissingInput {
        /// The evidence kind.
        tee: TeeKind,
        /// What is missing.
        what: &'static str,
        /// How to supply it.
        hint: &'static str,
    },
    /// DCAP (SGX/TDX) verification failed.
    #[error(transparent)]
    Dcap(#[from] DcapError),
    /// SEV-SNP verification failed.
    #[error(transparent)]
    Snp(#[from] SnpError),
    /// Azure vTPM verification failed.
    #[error(transparent)]
    Azure(#[from] AzureError),
    /// The TDX event log does not replay to the quote's RTMRs.
    #[error(transparent)]
    EventLog(#[from] EventLogError),
    /// The evidence verified but the policy does not accept it.
    #[error(transparent)]
    Policy(#[from] PolicyViolation),
}

impl VerifyError {
    /// A stable, machine-readable name of the failing stage.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Detect(_) => "unrecognized-evidence",
            Self::MissingInput { .. } => "missing-input",
            Self::Dcap(_) => "dcap",
            Self::Snp(_) => "snp",
            Self::Azure(_) => "azure-vtpm",
            Self::EventLog(_) => "event-log",
            Self::Policy(_) => "policy",
        }
    }
}

/// The result of [`Verifiers::verify_and_appraise`]: what is known even when it fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The detected kind, if detection got that far.
    pub tee: Option<TeeKind>,
    /// The detected input encoding.
    pub encoding: Option<InputEncoding>,
    /// The verified claims (also present when only the policy refused them).
    pub claims: Option<Claims>,
    /// Why the evidence was not accepted.
    pub error: Option<VerifyError>,
}

impl Outcome {
    /// Whether the evidence verified and the policy accepted it.
    pub fn accepted(&self) -> bool {
        self.error.is_none() && self.claims.is_some()
    }
}

/// One verifier per evidence kind, sharing their caches across calls.
#[derive(Debug)]
pub struct Verifiers {
    dcap: DcapVerifier,
    snp: SnpVerifier,
    /// Collateral that verified before, parsed, by the digest of its input bytes: a repeat
    /// verification skips JSON, PEM and X.509 parsing. Only collateral that verified is kept,
    /// so its size is bounded by what the trust anchor signed.
    parsed: RwLock<HashMap<[u8; 32], Arc<Collateral>>>,
}

/// At most this many parsed collateral sets are kept (a new platform's evicts all).
const PARSED_COLLATERAL_CAP: usize = 256;

impl Verifiers {
    /// Verifiers rooted in Intel's and AMD's real roots.
    pub fn production() -> Self {
        Self::with_anchors(TrustAnchor::intel(), TrustAnchor::amd())
    }

    /// Verifiers that trust only `anchor` (for example a simulation root).
    pub fn with_anchor(anchor: TrustAnchor) -> Self {
        Self::with_anchors(anchor.clone(), anchor)
    }

    /// Verifiers that trust `dcap` for SGX/TDX and `snp` for SEV-SNP evidence (for example the
    /// two roots of a [`crate::sim::SimPlatform`]).
    pub fn with_anchors(dcap: TrustAnchor, snp: TrustAnchor) -> Self {
        Self {
            dcap: DcapVerifier::new(dcap),
            snp: SnpVerifier::new(snp),
            parsed: RwLock::default(),
        }
    }

    /// Detect and verify `evidence` at `now`.
    pub fn verify(
        &self,
        evidence: &[u8],
        inputs: &Inputs,
        now: OffsetDateTime,
    ) -> Result<(Detected, Claims), VerifyError> {
        let detected = detect(evidence, inputs.tee)?;
        let claims = self.verify_detected(&detected, inputs, now)?;
        Ok((detected, claims))
    }

    /// Verify, then appraise the claims with `policy`.
    pub fn verify_and_appraise(
        &self,
        evidence: &[u8],
        inputs: &Inputs,
        policy: &Policy,
        now: OffsetDateTime,
    ) -> Outcome {
        let detected = match detect(evidence, inputs.tee) {
            Ok(d) => d,
            Err(e) => {
                return Outcome {
                    tee: inputs.tee,
                    encoding: None,
                    claims: None,
                    error: Some(e.into()),
                };
            }
        };
        let (claims, error) = match self.verify_detected(&detected, inputs, now) {
            Ok(claims) => {
                let error = policy.check(&claims).err().map(VerifyError::from);
                (Some(claims), error)
            }
            Err(e) => (None, Some(e)),
        };
        Outcome {
            tee: Some(detected.tee),
            encoding: Some(detected.encoding),
            claims,
            error,
        }
    }

    /// The DCAP collateral in `inputs`: as given parsed, or parsed from its bytes (once per
    /// content). New bytes come with their key, to [`Self::remember`] once they verified.
    fn dcap_collateral(
        &self,
        tee: TeeKind,
        inputs: &Inputs,
    ) -> Result<(Arc<Collateral>, Option<[u8; 32]>), VerifyError> {
        if let Some(collateral) = &inputs.dcap_collateral {
            return Ok((Arc::clone(collateral), None));
        }
        let key = collateral_key(inputs);
        if let Some(known) = self.parsed.read().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok((known, None));
        }
        Ok((Arc::new(collateral(tee, inputs)?), Some(key)))
    }

    /// Keep parsed collateral that verified a quote (so unverified bytes never evict it).
    fn remember(&self, key: Option<[u8; 32]>, collateral: Arc<Collateral>) {
        if let Some(key) = key
            && let Ok(mut parsed) = self.parsed.write()
        {
            if parsed.len() >= PARSED_COLLATERAL_CAP {
                parsed.clear();
            }
            parsed.insert(key, collateral);
        }
    }

    fn verify_detected(
        &self,
        d: &Detected,
        inputs: &Inputs,
        now: OffsetDateTime,
    ) -> Result<Claims, VerifyError> {
        match d.tee {
            TeeKind::Sgx | TeeKind::Tdx => {
                let (collateral, new) = self.dcap_collateral(d.tee, inputs)?;
                let claims = self.dcap.verify(&d.payload, &collateral, now)?;
                self.remember(new, collateral);
                if let Some(log) = &d.event_log {
                    check_event_log(log, &claims)?;
                }
                Ok(claims)
            }
            TeeKind::Snp if d.form == Form::CocoJson => {
                let coco = crate::snp::coco::parse(&d.payload)?;
                let from_evidence = |kinds: &[&str]| -> Vec<u8> {
                    let pem: String = kinds
                        .iter()
                        .filter_map(|k| {
                            coco.certs
                                .iter()
                                .find(|c| c.cert_type.eq_ignore_ascii_case(k))
                        })
                        .map(|c| crate::dcap::to_pem_string(&c.data))
                        .collect();
                    pem.into_bytes()
                };
                let inputs = Inputs {
                    vek: inputs.vek.clone().or_else(|| {
                        Some(from_evidence(&["VCEK", "VLEK"])).filter(|v| !v.is_empty())
                    }),
                    chain: inputs.chain.clone().or_else(|| {
                        Some(from_evidence(&["ASK", "ASVK", "ARK"])).filter(|c| !c.is_empty())
                    }),
                    ..inputs.clone()
                };
                let (vek, chain) = snp_inputs(d.tee, &inputs)?;
                Ok(self.snp.verify(&coco.report, vek, chain, now)?)
            }
            TeeKind::Snp => {
                let (vek, chain) = snp_inputs(d.tee, inputs)?;
                Ok(self.snp.verify(&d.payload, vek, chain, now)?)
            }
            TeeKind::AzSnpVtpm => {
                let evidence = azure::VtpmEvidence::parse(&d.payload)?;
                let chain = inputs.chain.as_deref().ok_or(VerifyError::MissingInput {
                    tee: d.tee,
                    what: "the AMD chain",
                    hint: "pass --chain with the ASK and ARK (PEM) of the VM's product line",
                })?;
                Ok(azure::verify_snp(
                    &evidence,
                    &self.snp,
                    chain,
                    inputs.nonce.as_deref(),
                    now,
                )?)
            }
            TeeKind::AzTdxVtpm => {
                let evidence = azure::VtpmEvidence::parse(&d.payload)?;
                let (collateral, new) = self.dcap_collateral(d.tee, inputs)?;
                let claims = azure::verify_tdx(
                    &evidence,
                    &self.dcap,
                    &collateral,
                    inputs.nonce.as_deref(),
                    now,
                )?;
                self.remember(new, collateral);
                Ok(claims)
            }
        }
    }
}

/// SHA-256 over the collateral inputs, each length-prefixed so different splits differ.
fn collateral_key(inputs: &Inputs) -> [u8; 32] {
    let mut hasher = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let parts = inputs
        .collateral
        .iter()
        .map(|(_, bytes)| bytes.as_slice())
        .chain(inputs.chain.as_deref());
    for part in parts {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(hasher.finish().as_ref());
    key
}

fn collateral(tee: TeeKind, inputs: &Inputs) -> Result<Collateral, VerifyError> {
    if inputs.collateral.is_empty() {
        return Err(VerifyError::MissingInput {
            tee,
            what: "collateral",
            hint: "pass --collateral with collateral.json, or the PCS tcb_info and qe_identity responses, CRLs and the TCB signing chain",
        });
    }
    let mut collateral = Collateral::from_files(&inputs.collateral)?;
    if let Some(chain) = &inputs.chain {
        collateral.add_file("--chain", chain)?;
    }
    Ok(collateral)
}

fn snp_inputs(tee: TeeKind, inputs: &Inputs) -> Result<(&[u8], &[u8]), VerifyError> {
    let vek = inputs.vek.as_deref().ok_or(VerifyError::MissingInput {
        tee,
        what: "the VCEK or VLEK",
        hint: "pass --vek with the certificate from AMD KDS (or the host's certificate table)",
    })?;
    let chain = inputs.chain.as_deref().ok_or(VerifyError::MissingInput {
        tee,
        what: "the AMD chain",
        hint: "pass --chain with the ASK (or ASVK) and ARK of the product line (PEM)",
    })?;
    Ok((vek, chain))
}

/// A CoCo `tdx` evidence's event log must replay to the quote's RTMRs.
fn check_event_log(log: &[u8], claims: &Claims) -> Result<(), VerifyError> {
    if let crate::claims::Measurements::Tdx(m) = &claims.measurements {
        let replayed = EventLog::parse(log)?.replay();
        let quoted: Vec<[u8; 48]> = m.rtmr.iter().map(|r| r.0).collect();
        if replayed[..] != quoted[..] {
            return Err(EventLogError::RtmrMismatch.into());
        }
    }
    Ok(())
}

/// Every field of the evidence, decoded, without verifying anything.
pub fn inspect(input: &[u8], hint: Option<TeeKind>) -> Result<serde_json::Value, VerifyError> {
    let d = detect(input, hint)?;
    let body = match d.tee {
        TeeKind::Sgx | TeeKind::Tdx => to_json(&Quote::parse(&d.payload)?),
        TeeKind::Snp if d.form == Form::CocoJson => to_json(&Report::parse(
            &crate::snp::coco::parse(&d.payload)?.report,
        )?),
        TeeKind::Snp => to_json(&Report::parse(&d.payload)?),
        TeeKind::AzSnpVtpm | TeeKind::AzTdxVtpm => {
            to_json(&azure::VtpmEvidence::parse(&d.payload)?.inspect())
        }
    };
    Ok(serde_json::json!({
        "tee": d.tee,
        "encoding": d.encoding,
        "form": d.form,
        "evidence": body,
    }))
}

fn to_json<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }))
}
