//! The front door: detect an evidence kind, and verify or inspect any kind with one call.
//!
//! Evidence arrives as raw bytes, hex or base64 text, or one of CoCo's JSON evidence forms.
//! [`detect`] decides what it is; [`Verifiers`] runs the right verifier with the right trust
//! anchor; [`inspect`] decodes every field without verifying anything.

use serde::Serialize;
use time::OffsetDateTime;

use crate::anchor::TrustAnchor;
use crate::claims::{Claims, TeeKind};
use crate::encoding::{InputEncoding, decode_base64_any, decode_input};
use crate::policy::{Policy, PolicyViolation};

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
