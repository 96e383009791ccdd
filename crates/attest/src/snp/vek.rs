//! VCEK and VLEK certificates and AMD's extensions on them (KDS specification).

use x509_parser::der_parser::ber::{BerObject, BerObjectContent};
use x509_parser::der_parser::der::parse_der;

use super::{Product, SnpError};
use crate::claims::SnpTcb;
use crate::x509::Cert;

const OID_STRUCT_VERSION: &str = "1.3.6.1.4.1.3704.1.1";
const OID_PRODUCT_NAME: &str = "1.3.6.1.4.1.3704.1.2";
const OID_BL_SPL: &str = "1.3.6.1.4.1.3704.1.3.1";
const OID_TEE_SPL: &str = "1.3.6.1.4.1.3704.1.3.2";
const OID_SNP_SPL: &str = "1.3.6.1.4.1.3704.1.3.3";
const OID_UCODE_SPL: &str = "1.3.6.1.4.1.3704.1.3.8";
const OID_FMC_SPL: &str = "1.3.6.1.4.1.3704.1.3.9";
const OID_HWID: &str = "1.3.6.1.4.1.3704.1.4";
const OID_CSP_ID: &str = "1.3.6.1.4.1.3704.1.5";

/// A VEK (VCEK or VLEK) with its AMD extensions decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vek {
    /// The certificate.
    pub cert: Cert,
    /// structVersion (1 on Turin).
    pub struct_version: Option<u64>,
    /// productName, e.g. "Milan-B0".
    pub product_name: Option<String>,
    /// The TCB the key was derived for.
    pub tcb: SnpTcb,
    /// hwID (VCEK only): 64 bytes, or 8 on Turin.
    pub hw_id: Option<Vec<u8>>,
    /// cspID (VLEK only): the cloud provider.
    pub csp_id: Option<String>,
}

impl Vek {
    /// Parse a VEK given as DER or PEM.
    pub fn parse(bytes: &[u8]) -> Result<Self, SnpError> {
        let cert = Cert::from_der_or_pem(bytes).map_err(|e| SnpError::BadVek {
            reason: e.to_string(),
        })?;
        let spl = |oid: &str| -> Result<u8, SnpError> {
            let v = integer_ext(&cert, oid)?.ok_or_else(|| SnpError::BadVek {
                reason: format!("the TCB extension {oid} is missing"),
            })?;
            u8::try_from(v).map_err(|_| SnpError::BadVek {
                reason: format!("the TCB extension {oid} is out of range ({v})"),
            })
        };
        let fmc = match integer_ext(&cert, OID_FMC_SPL)? {
            Some(v) => Some(u8::try_from(v).map_err(|_| SnpError::BadVek {
                reason: format!("fmcSPL is out of range ({v})"),
            })?),
            None => None,
        };
        let tcb = SnpTcb {
            fmc,
            bootloader: spl(OID_BL_SPL)?,
            tee: spl(OID_TEE_SPL)?,
            snp: spl(OID_SNP_SPL)?,
            microcode: spl(OID_UCODE_SPL)?,
        };
        Ok(Self {
            struct_version: integer_ext(&cert, OID_STRUCT_VERSION)?,
            product_name: string_ext(&cert, OID_PRODUCT_NAME),
            hw_id: cert.extension(OID_HWID).map(|e| octets(e.value)),
            csp_id: string_ext(&cert, OID_CSP_ID),
            tcb,
            cert,
        })
    }

    /// Whether this is a VLEK (issued by an ASVK to a cloud provider).
    pub fn is_vlek(&self) -> bool {
        self.csp_id.is_some() || self.cert.issuer().contains("SEV-VLEK")
    }

    /// The product line named by the certificate (productName, else its issuer).
    pub fn product(&self) -> Option<Product> {
        self.product_name
            .as_deref()
            .and_then(Product::from_name)
            .or_else(|| Product::from_name(&self.cert.issuer()))
    }
}

fn integer_ext(cert: &Cert, oid: &str) -> Result<Option<u64>, SnpError> {
    let Some(ext) = cert.extension(oid) else {
        return Ok(None);
    };
    let (_, obj) = parse_der(ext.value).map_err(|e| SnpError::BadVek {
        reason: format!("extension {oid} is not DER: {e}"),
    })?;
    obj.as_u64().map(Some).map_err(|_| SnpError::BadVek {
        reason: format!("extension {oid} is not an integer"),
    })
}

fn string_ext(cert: &Cert, oid: &str) -> Option<String> {
    let ext = cert.extension(oid)?;
    let (_, obj) = parse_der(ext.value).ok()?;
    match obj.content {
        BerObjectContent::IA5String(s)
        | BerObjectContent::UTF8String(s)
        | BerObjectContent::PrintableString(s) => Some(s.to_string()),
        _ => None,
    }
}

/// hwID is an OCTET STRING in some certificates and the raw bytes in others.
fn octets(value: &[u8]) -> Vec<u8> {
    match parse_der(value) {
        Ok((
            [],
            BerObject {
                content: BerObjectContent::OctetString(b),
                ..
            },
        )) => b.to_vec(),
        _ => value.to_vec(),
    }
}
