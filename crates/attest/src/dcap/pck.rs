//! The SGX extension of a PCK certificate (OID 1.2.840.113741.1.13.1): the platform's TCB.

use der::{DecodeValue as _, Tag};
use x509_parser::der_parser::asn1_rs::{Oid, oid};

use super::DcapError;
use crate::x509::{Cert, Element, Elements};

// Compared as encoded bytes: PCK parsing is on the path of every uncached verification.
const OID_SGX_EXTENSIONS: Oid<'static> = oid!(1.2.840.113741.1.13.1);
const OID_PPID: Oid<'static> = oid!(1.2.840.113741.1.13.1.1);
const OID_TCB: Oid<'static> = oid!(1.2.840.113741.1.13.1.2);
const OID_PCESVN: Oid<'static> = oid!(1.2.840.113741.1.13.1.2.17);
const OID_CPUSVN: Oid<'static> = oid!(1.2.840.113741.1.13.1.2.18);
const OID_PCE_ID: Oid<'static> = oid!(1.2.840.113741.1.13.1.3);
const OID_FMSPC: Oid<'static> = oid!(1.2.840.113741.1.13.1.4);
const OID_SGX_TYPE: Oid<'static> = oid!(1.2.840.113741.1.13.1.5);

/// What a PCK certificate says about its platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PckExtensions {
    /// PPID (encrypted platform ID).
    pub ppid: Vec<u8>,
    /// The 16 SGX TCB component SVNs.
    pub tcb_components: [u8; 16],
    /// PCESVN.
    pub pce_svn: u16,
    /// CPUSVN.
    pub cpu_svn: [u8; 16],
    /// PCE-ID.
    pub pce_id: [u8; 2],
    /// FMSPC.
    pub fmspc: [u8; 6],
    /// SGX type (0 standard, 1 scalable, 2 scalable with integrity).
    pub sgx_type: u64,
}

fn bad(reason: impl Into<String>) -> DcapError {
    DcapError::PckExtension {
        reason: reason.into(),
    }
}

/// The `(OID, value)` pairs of a SEQUENCE OF SEQUENCE { OID, value }, read in place.
fn pairs<'a>(
    seq: &Element<'a>,
) -> Result<impl Iterator<Item = Result<(Oid<'a>, Element<'a>), DcapError>>, DcapError> {
    let mut items = Elements::of(seq, "SGX extension").map_err(|e| bad(e.to_string()))?;
    Ok(std::iter::from_fn(move || {
        (!items.is_empty()).then(|| {
            let (_, item) = items.next().map_err(|e| bad(e.to_string()))?;
            let mut parts = Elements::of(&item, "SGX extension").map_err(|e| bad(e.to_string()))?;
            let shape = || bad("expected SEQUENCE { OID, value }");
            let (_, oid) = parts.next().map_err(|_| shape())?;
            let (_, value) = parts.next().map_err(|_| shape())?;
            if !parts.is_empty() {
                return Err(shape());
            }
            if oid.tag != Tag::ObjectIdentifier || oid.data.is_empty() {
                return Err(bad("expected an OID"));
            }
            Ok((Oid::new(oid.data.into()), value))
        })
    }))
}

fn octets<const N: usize>(obj: &Element<'_>, what: &str) -> Result<[u8; N], DcapError> {
    if obj.tag != Tag::OctetString {
        return Err(bad(format!("{what} is not an OCTET STRING")));
    }
    obj.data
        .try_into()
        .map_err(|_| bad(format!("{what} is {} bytes, expected {N}", obj.data.len())))
}

/// A non-negative INTEGER or ENUMERATED (same contents encoding) that fits in a `u64`, DER rules
/// checked by the `der` crate.
fn small_int(obj: &Element<'_>, what: &str) -> Result<u64, DcapError> {
    if !matches!(obj.tag, Tag::Integer | Tag::Enumerated) {
        return Err(bad(format!("{what} is not an integer")));
    }
    let not_small = |_| bad(format!("{what} is not a small non-negative integer"));
    let header = der::Header::new(Tag::Integer, obj.data.len()).map_err(not_small)?;
    let mut reader = der::SliceReader::new(obj.data).map_err(not_small)?;
    u64::decode_value(&mut reader, header).map_err(not_small)
}

impl PckExtensions {
    /// Read the SGX extension of `pck`.
    pub fn from_cert(pck: &Cert) -> Result<Self, DcapError> {
        let ext = pck
            .extension_encoded(OID_SGX_EXTENSIONS.as_bytes())
            .ok_or_else(|| bad("the certificate has no SGX extension; is it a PCK certificate?"))?;
        let mut value = Elements::of_contents(ext.value, "SGX extension");
        let (_, root) = value.next().map_err(|e| bad(e.to_string()))?;
        value.finish().map_err(|e| bad(e.to_string()))?;
        let mut out = Self {
            ppid: Vec::new(),
            tcb_components: [0; 16],
            pce_svn: 0,
            cpu_svn: [0; 16],
            pce_id: [0; 2],
            fmspc: [0; 6],
            sgx_type: 0,
        };
        let (mut has_tcb, mut has_fmspc, mut has_pce_id) = (false, false, false);
        for pair in pairs(&root)? {
            let (oid, value) = pair?;
            if oid == OID_PPID {
                if value.tag != Tag::OctetString {
                    return Err(bad("PPID is not an OCTET STRING"));
                }
                out.ppid = value.data.to_vec();
            } else if oid == OID_TCB {
                out.read_tcb(&value)?;
                has_tcb = true;
            } else if oid == OID_PCE_ID {
                out.pce_id = octets(&value, "PCE-ID")?;
                has_pce_id = true;
            } else if oid == OID_FMSPC {
                out.fmspc = octets(&value, "FMSPC")?;
                has_fmspc = true;
            } else if oid == OID_SGX_TYPE {
                out.sgx_type = small_int(&value, "SGX type")?;
            }
        }
        if !(has_tcb && has_fmspc && has_pce_id) {
            return Err(bad("TCB, FMSPC or PCE-ID is missing"));
        }
        Ok(out)
    }

    fn read_tcb(&mut self, tcb: &Element<'_>) -> Result<(), DcapError> {
        let mut seen = 0u32;
        for pair in pairs(tcb)? {
            let (oid, value) = pair?;
            if oid == OID_PCESVN {
                self.pce_svn = u16::try_from(small_int(&value, "PCESVN")?)
                    .map_err(|_| bad("PCESVN out of range"))?;
                seen |= 1 << 16;
            } else if oid == OID_CPUSVN {
                self.cpu_svn = octets(&value, "CPUSVN")?;
            } else if let Some(index) = component_index(&oid) {
                self.tcb_components[index] = u8::try_from(small_int(&value, "TCB component")?)
                    .map_err(|_| bad("TCB component SVN out of range"))?;
                seen |= 1 << index;
            }
        }
        if seen != 0x1_FFFF {
            return Err(bad("the TCB lacks some of its 16 components or PCESVN"));
        }
        Ok(())
    }
}

/// `...13.1.2.N` for N in 1..=16 is SGX TCB component N (one more encoded byte: N < 128).
fn component_index(oid: &Oid<'_>) -> Option<usize> {
    let [n] = oid.as_bytes().strip_prefix(OID_TCB.as_bytes())? else {
        return None;
    };
    (1..=16).contains(n).then(|| usize::from(*n) - 1)
}
