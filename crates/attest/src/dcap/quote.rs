//! SGX quote v3 and TDX quote v4/v5 (Intel DCAP quote library layouts).

use serde::Serialize;

use super::DcapError;
use crate::hexser;

/// The quote header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Header {
    /// Quote version: 3 (SGX), 4 or 5 (TDX).
    pub version: u16,
    /// Attestation key type (2 = ECDSA-256 with P-256).
    pub att_key_type: u16,
    /// TEE type: 0x00 SGX, 0x81 TDX.
    pub tee_type: u32,
    /// QE SVN (as reported in the header).
    pub qe_svn: u16,
    /// PCE SVN (as reported in the header).
    pub pce_svn: u16,
    /// QE vendor ID (Intel: 939a7233f79c4ca9940a0db3957f0607).
    #[serde(with = "hexser")]
    pub qe_vendor_id: [u8; 16],
    /// User data (the first 16 bytes are the platform's QE identity hint).
    #[serde(with = "hexser")]
    pub user_data: [u8; 20],
}

/// An SGX enclave report body (also the QE report).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnclaveReport {
    /// CPUSVN.
    #[serde(with = "hexser")]
    pub cpu_svn: [u8; 16],
    /// MISCSELECT.
    pub misc_select: u32,
    /// ISVEXTPRODID.
    #[serde(with = "hexser")]
    pub isv_ext_prod_id: [u8; 16],
    /// ATTRIBUTES (flags then XFRM).
    #[serde(with = "hexser")]
    pub attributes: [u8; 16],
    /// MRENCLAVE.
    #[serde(with = "hexser")]
    pub mr_enclave: [u8; 32],
    /// MRSIGNER.
    #[serde(with = "hexser")]
    pub mr_signer: [u8; 32],
    /// CONFIGID.
    #[serde(with = "hexser")]
    pub config_id: [u8; 64],
    /// ISVPRODID.
    pub isv_prod_id: u16,
    /// ISVSVN.
    pub isv_svn: u16,
    /// CONFIGSVN.
    pub config_svn: u16,
    /// ISVFAMILYID.
    #[serde(with = "hexser")]
    pub isv_family_id: [u8; 16],
    /// REPORTDATA.
    #[serde(with = "hexser")]
    pub report_data: [u8; 64],
}

/// A TDX TD report body, 1.0 or 1.5.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TdReport {
    /// TEE_TCB_SVN.
    #[serde(with = "hexser")]
    pub tee_tcb_svn: [u8; 16],
    /// MRSEAM.
    #[serde(with = "hexser")]
    pub mr_seam: [u8; 48],
    /// MRSIGNERSEAM.
    #[serde(with = "hexser")]
    pub mr_signer_seam: [u8; 48],
    /// SEAM_ATTRIBUTES.
    #[serde(with = "hexser")]
    pub seam_attributes: [u8; 8],
    /// TD_ATTRIBUTES (quote byte order).
    #[serde(with = "hexser")]
    pub td_attributes: [u8; 8],
    /// XFAM (quote byte order).
    #[serde(with = "hexser")]
    pub xfam: [u8; 8],
    /// MRTD.
    #[serde(with = "hexser")]
    pub mr_td: [u8; 48],
    /// MRCONFIGID.
    #[serde(with = "hexser")]
    pub mr_config_id: [u8; 48],
    /// MROWNER.
    #[serde(with = "hexser")]
    pub mr_owner: [u8; 48],
    /// MROWNERCONFIG.
    #[serde(with = "hexser")]
    pub mr_owner_config: [u8; 48],
    /// RTMR0..3.
    pub rtmr: [crate::claims::Rtmr; 4],
    /// REPORTDATA.
    #[serde(with = "hexser")]
    pub report_data: [u8; 64],
    /// TEE_TCB_SVN2 (TD 1.5).
    #[serde(with = "hexser::option")]
    pub tee_tcb_svn2: Option<[u8; 16]>,
    /// MRSERVICETD (TD 1.5).
    #[serde(with = "hexser::option")]
    pub mr_service_td: Option<[u8; 48]>,
}

impl TdReport {
    /// TD_ATTRIBUTES.DEBUG (bit 0).
    pub fn debug(&self) -> bool {
        self.td_attributes[0] & 1 != 0
    }

    /// TD_ATTRIBUTES.SEPT_VE_DISABLE (bit 28).
    pub fn sept_ve_disable(&self) -> bool {
        self.td_attributes[3] & 0x10 != 0
    }
}

/// The attested body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Body {
    /// An SGX enclave report.
    Sgx(Box<EnclaveReport>),
    /// A TD report 1.0.
    Td10(Box<TdReport>),
    /// A TD report 1.5.
    Td15(Box<TdReport>),
}

/// The QE's certification of the attestation key, and the PCK chain that signs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificationData {
    /// The QE's report.
    pub qe_report: EnclaveReport,
    /// The exact 384 bytes of the QE report (what the PCK key signs).
    #[serde(skip)]
    pub qe_report_raw: Vec<u8>,
    /// The PCK key's signature over the QE report (`r || s`).
    #[serde(with = "hexser")]
    pub qe_report_signature: [u8; 64],
    /// QE authentication data, hashed with the attestation key into the QE report.
    #[serde(with = "hexser")]
    pub qe_auth_data: Vec<u8>,
    /// The certification data type of the chain (5 = PEM PCK chain).
    pub cert_data_type: u16,
    /// The PCK certificate chain, PEM.
    #[serde(skip)]
    pub pck_chain_pem: Vec<u8>,
}

/// A parsed DCAP quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Quote {
    /// The header.
    pub header: Header,
    /// The attested body.
    pub body: Body,
    /// Header and body: the bytes the attestation key signs.
    #[serde(skip)]
    pub signed: Vec<u8>,
    /// The attestation key's signature over `signed` (`r || s`).
    #[serde(with = "hexser")]
    pub signature: [u8; 64],
    /// The attestation public key (`x || y`).
    #[serde(with = "hexser")]
    pub attestation_key: [u8; 64],
    /// The QE's certification of the attestation key.
    pub certification: CertificationData,
    /// Bytes after the quote's declared end (ignored: outside every signature).
    pub trailing_bytes: usize,
}

const SGX_BODY_LEN: usize = 384;
const TD10_BODY_LEN: usize = 584;
const TD15_BODY_LEN: usize = 648;
const TEE_SGX: u32 = 0x00;
const TEE_TDX: u32 = 0x81;

/// A bounds-checked reader: every read is an error value past the end, never a panic.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DcapError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(DcapError::Truncated {
                what,
                offset: self.pos,
            })?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DcapError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, DcapError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, DcapError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
}

/// Fixed-offset reads inside a body already known to be long enough.
fn arr<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = b.get(at..at + N) {
        out.copy_from_slice(src);
    }
    out
}

impl EnclaveReport {
    /// Parse a 384-byte SGX report body.
    pub fn parse(b: &[u8]) -> Result<Self, DcapError> {
        if b.len() != SGX_BODY_LEN {
            return Err(DcapError::Truncated {
                what: "SGX report body",
                offset: b.len(),
            });
        }
        Ok(Self {
            cpu_svn: arr(b, 0),
            misc_select: u32::from_le_bytes(arr(b, 16)),
            isv_ext_prod_id: arr(b, 32),
            attributes: arr(b, 48),
            mr_enclave: arr(b, 64),
            mr_signer: arr(b, 128),
            config_id: arr(b, 192),
            isv_prod_id: u16::from_le_bytes(arr(b, 256)),
            isv_svn: u16::from_le_bytes(arr(b, 258)),
            config_svn: u16::from_le_bytes(arr(b, 260)),
            isv_family_id: arr(b, 304),
            report_data: arr(b, 320),
        })
    }

    /// ATTRIBUTES.DEBUG (bit 1).
    pub fn debug(&self) -> bool {
        self.attributes[0] & 0b10 != 0
    }
}

impl TdReport {
    fn parse(b: &[u8], td15: bool) -> Self {
        let rtmr = |i: usize| crate::claims::Rtmr(arr(b, 328 + 48 * i));
        Self {
            tee_tcb_svn: arr(b, 0),
            mr_seam: arr(b, 16),
            mr_signer_seam: arr(b, 64),
            seam_attributes: arr(b, 112),
            td_attributes: arr(b, 120),
            xfam: arr(b, 128),
            mr_td: arr(b, 136),
            mr_config_id: arr(b, 184),
            mr_owner: arr(b, 232),
            mr_owner_config: arr(b, 280),
            rtmr: [rtmr(0), rtmr(1), rtmr(2), rtmr(3)],
            report_data: arr(b, 520),
            tee_tcb_svn2: td15.then(|| arr(b, 584)),
            mr_service_td: td15.then(|| arr(b, 600)),
        }
    }
}

impl Quote {
    /// Parse a quote. Zero padding after the quote is accepted (some tools write fixed-size
    /// buffers); any other trailing byte is an error.
    pub fn parse(bytes: &[u8]) -> Result<Self, DcapError> {
        let mut r = Reader { bytes, pos: 0 };
        let header = Header {
            version: r.u16("header")?,
            att_key_type: r.u16("header")?,
            tee_type: r.u32("header")?,
            qe_svn: r.u16("header")?,
            pce_svn: r.u16("header")?,
            qe_vendor_id: r.array("header")?,
            user_data: r.array("header")?,
        };
        if header.att_key_type != 2 {
            return Err(DcapError::UnsupportedKeyType {
                att_key_type: header.att_key_type,
            });
        }
        let body = parse_body(&mut r, &header)?;
        let signed = bytes[..r.pos].to_vec();
        let auth_len = r.u32("authentication data size")? as usize;
        let auth_start = r.pos;
        let signature = r.array("quote signature")?;
        let attestation_key = r.array("attestation key")?;
        let certification = if header.version == 3 {
            parse_qe_certification(&mut r)?
        } else {
            let cert_type = r.u16("certification data type")?;
            let len = r.u32("certification data size")? as usize;
            if cert_type != 6 {
                return Err(DcapError::UnsupportedCertificationData { cert_type });
            }
            let inner = r.take(len, "QE report certification data")?;
            let mut inner_reader = Reader {
                bytes: inner,
                pos: 0,
            };
            parse_qe_certification(&mut inner_reader)?
        };
        if r.pos - auth_start > auth_len {
            return Err(DcapError::Malformed {
                reason: format!(
                    "the authentication data runs to {} bytes but its size field says {auth_len}",
                    r.pos - auth_start
                ),
            });
        }
        // Bytes after the declared authentication data (zero padding from fixed-size
        // buffers, or anything else) are outside every signature and every structure: they
        // are ignored, and counted for `inspect`.
        let trailing_bytes = bytes.len().saturating_sub(auth_start + auth_len);
        Ok(Self {
            header,
            body,
            signed,
            signature,
            attestation_key,
            certification,
            trailing_bytes,
        })
    }

    /// Whether this is a TDX quote.
    pub fn is_tdx(&self) -> bool {
        matches!(self.body, Body::Td10(_) | Body::Td15(_))
    }

    /// The TD report, for TDX quotes.
    pub fn td_report(&self) -> Option<&TdReport> {
        match &self.body {
            Body::Td10(r) | Body::Td15(r) => Some(r),
            Body::Sgx(_) => None,
        }
    }
}

fn parse_body(r: &mut Reader<'_>, header: &Header) -> Result<Body, DcapError> {
    let (kind, len) = match (header.version, header.tee_type) {
        (3, TEE_SGX) | (4, TEE_SGX) => (1, SGX_BODY_LEN),
        (4, TEE_TDX) => (2, TD10_BODY_LEN),
        (5, _) => {
            let kind = r.u16("body descriptor")?;
            let len = r.u32("body descriptor")? as usize;
            let expected = match kind {
                1 => SGX_BODY_LEN,
                2 => TD10_BODY_LEN,
                3 => TD15_BODY_LEN,
                other => return Err(DcapError::UnsupportedBodyType { body_type: other }),
            };
            if len != expected {
                return Err(DcapError::Malformed {
                    reason: format!(
                        "body type {kind} must be {expected} bytes, the quote says {len}"
                    ),
                });
            }
            let tee_matches = (kind == 1) == (header.tee_type == TEE_SGX);
            if !tee_matches || !matches!(header.tee_type, TEE_SGX | TEE_TDX) {
                return Err(DcapError::UnsupportedTeeType {
                    tee_type: header.tee_type,
                });
            }
            (kind, len)
        }
        (3 | 4, other) => return Err(DcapError::UnsupportedTeeType { tee_type: other }),
        (version, _) => return Err(DcapError::UnsupportedVersion { version }),
    };
    let b = r.take(len, "report body")?;
    Ok(match kind {
        1 => Body::Sgx(Box::new(EnclaveReport::parse(b)?)),
        2 => Body::Td10(Box::new(TdReport::parse(b, false))),
        _ => Body::Td15(Box::new(TdReport::parse(b, true))),
    })
}

fn parse_qe_certification(r: &mut Reader<'_>) -> Result<CertificationData, DcapError> {
    let qe_report_raw = r.take(SGX_BODY_LEN, "QE report")?.to_vec();
    let qe_report = EnclaveReport::parse(&qe_report_raw)?;
    let qe_report_signature = r.array("QE report signature")?;
    let auth_len = r.u16("QE authentication data size")? as usize;
    let qe_auth_data = r.take(auth_len, "QE authentication data")?.to_vec();
    let cert_data_type = r.u16("PCK certification data type")?;
    let len = r.u32("PCK certification data size")? as usize;
    let data = r.take(len, "PCK certificate chain")?;
    if cert_data_type != 5 {
        return Err(DcapError::UnsupportedCertificationData {
            cert_type: cert_data_type,
        });
    }
    Ok(CertificationData {
        qe_report,
        qe_report_raw,
        qe_report_signature,
        qe_auth_data,
        cert_data_type,
        pck_chain_pem: data.to_vec(),
    })
}
