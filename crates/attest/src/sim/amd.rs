//! A simulated AMD KDS: ARK and ASK (RSA-4096, RSA-PSS-SHA384 as AMD issues them), a VCEK on
//! P-384 with AMD's TCB and hwID extensions, and SEV-SNP report v5 signed by the VCEK.
//!
//! rcgen cannot sign with RSA-PSS, so these certificates are assembled from the x509-cert
//! types and signed with aws-lc-rs.

use std::str::FromStr as _;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _, RSA_PSS_SHA384,
};
use der::asn1::{BitString, Ia5StringRef, ObjectIdentifier, OctetString, UtcTime};
use der::{Any, Encode as _, Sequence};
use time::{Duration, OffsetDateTime};
use x509_cert::certificate::{Certificate, TbsCertificate, Version};
use x509_cert::ext::{Extension, pkix::BasicConstraints};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};

use super::{MARKER_OID_ARCS, SimError, marker_value};
use crate::claims::SnpTcb;
use crate::crypto::{sha256, sha384, sha512};
use crate::snp::{REPORT_LEN, SIGNED_LEN};

fn cert_error(e: impl std::fmt::Display) -> SimError {
    SimError::Cert(e.to_string())
}

fn key_error(e: impl std::fmt::Display) -> SimError {
    SimError::Key(e.to_string())
}

fn oid(text: &str) -> Result<ObjectIdentifier, SimError> {
    ObjectIdentifier::new(text).map_err(cert_error)
}

/// What to put in a simulated SNP report.
#[derive(Debug, Clone)]
pub struct SnpParams {
    /// REPORT_DATA.
    pub report_data: [u8; 64],
    /// MEASUREMENT.
    pub measurement: [u8; 48],
    /// HOST_DATA.
    pub host_data: [u8; 32],
    /// Allow debugging (POLICY bit 19).
    pub debug: bool,
    /// VMPL the report is requested from.
    pub vmpl: u32,
    /// The platform TCB (Milan layout): REPORTED, CURRENT, COMMITTED and LAUNCH TCB.
    pub tcb: SnpTcb,
    /// GUEST_SVN.
    pub guest_svn: u32,
}

impl Default for SnpParams {
    fn default() -> Self {
        Self {
            report_data: [0; 64],
            measurement: sha384(b"cloister simulated SNP guest"),
            host_data: [0; 32],
            debug: false,
            vmpl: 0,
            tcb: SnpTcb {
                fmc: None,
                bootloader: 4,
                tee: 0,
                snp: 24,
                microcode: 219,
            },
            guest_svn: 1,
        }
    }
}

/// The simulated ARK, ASK and one chip's key. A VCEK is issued per TCB on request.
#[derive(Debug)]
pub struct AmdPki {
    ask: RsaKeyPair,
    ark_der: Vec<u8>,
    ask_der: Vec<u8>,
    chip_id: [u8; 64],
    now: OffsetDateTime,
}

/// RSASSA-PSS with SHA-384, MGF1-SHA-384 and a 48-byte salt, as in AMD's certificates.
#[derive(Sequence)]
struct PssParams {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    hash: AlgorithmIdentifierOwned,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT")]
    mask_gen: AlgorithmIdentifierOwned,
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT")]
    salt_length: u8,
    #[asn1(context_specific = "3", tag_mode = "EXPLICIT")]
    trailer_field: u8,
}

fn pss_algorithm() -> Result<AlgorithmIdentifierOwned, SimError> {
    let sha384 = AlgorithmIdentifierOwned {
        oid: oid("2.16.840.1.101.3.4.2.2")?,
        parameters: Some(Any::null()),
    };
    let params = PssParams {
        hash: sha384.clone(),
        mask_gen: AlgorithmIdentifierOwned {
            oid: oid("1.2.840.113549.1.1.8")?,
            parameters: Some(Any::encode_from(&sha384).map_err(cert_error)?),
        },
        salt_length: 48,
        trailer_field: 1,
    };
    Ok(AlgorithmIdentifierOwned {
        oid: oid("1.2.840.113549.1.1.10")?,
        parameters: Some(Any::encode_from(&params).map_err(cert_error)?),
    })
}

fn rsa_spki(key: &RsaKeyPair) -> Result<SubjectPublicKeyInfoOwned, SimError> {
    Ok(SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: oid("1.2.840.113549.1.1.1")?,
            parameters: Some(Any::null()),
        },
        subject_public_key: BitString::from_bytes(key.public_key().as_ref()).map_err(cert_error)?,
    })
}

fn p384_spki(point: &[u8]) -> Result<SubjectPublicKeyInfoOwned, SimError> {
    Ok(SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: oid("1.2.840.10045.2.1")?,
            parameters: Some(Any::encode_from(&oid("1.3.132.0.34")?).map_err(cert_error)?),
        },
        subject_public_key: BitString::from_bytes(point).map_err(cert_error)?,
    })
}

fn amd_name(cn: &str) -> Result<Name, SimError> {
    Name::from_str(&format!(
        "CN={cn},O=cloister simulation,OU=Engineering,L=Santa Clara,ST=CA,C=US"
    ))
    .map_err(cert_error)
}

fn utc(t: OffsetDateTime) -> Result<Time, SimError> {
    let secs = u64::try_from(t.unix_timestamp()).map_err(cert_error)?;
    UtcTime::from_unix_duration(std::time::Duration::from_secs(secs))
        .map(Time::UtcTime)
        .map_err(cert_error)
}

fn extension(id: &str, critical: bool, value: Vec<u8>) -> Result<Extension, SimError> {
    Ok(Extension {
        extn_id: oid(id)?,
        critical,
        extn_value: OctetString::new(value).map_err(cert_error)?,
    })
}

fn marker() -> Result<Extension, SimError> {
    let arcs: Vec<String> = MARKER_OID_ARCS.iter().map(u64::to_string).collect();
    extension(&arcs.join("."), false, marker_value()?)
}

fn ca_extension() -> Result<Extension, SimError> {
    let bc = BasicConstraints {
        ca: true,
        path_len_constraint: None,
    };
    extension("2.5.29.19", true, bc.to_der().map_err(cert_error)?)
}

struct CertSpec<'a> {
    serial: u8,
    subject: &'a str,
    issuer: &'a str,
    spki: SubjectPublicKeyInfoOwned,
    extensions: Vec<Extension>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

/// Assemble a certificate and sign it with `signer` using RSA-PSS-SHA384.
fn issue(spec: CertSpec<'_>, signer: &RsaKeyPair) -> Result<Vec<u8>, SimError> {
    let algorithm = pss_algorithm()?;
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&[spec.serial]).map_err(cert_error)?,
        signature: algorithm.clone(),
        issuer: amd_name(spec.issuer)?,
        validity: Validity {
            not_before: utc(spec.not_before)?,
            not_after: utc(spec.not_after)?,
        },
        subject: amd_name(spec.subject)?,
        subject_public_key_info: spec.spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(spec.extensions),
    };
    let tbs_der = tbs.to_der().map_err(cert_error)?;
    let mut signature = vec![0u8; signer.public_modulus_len()];
    signer
        .sign(
            &RSA_PSS_SHA384,
            &SystemRandom::new(),
            &tbs_der,
            &mut signature,
        )
        .map_err(key_error)?;
    Certificate {
        tbs_certificate: tbs,
        signature_algorithm: algorithm,
        signature: BitString::from_bytes(&signature).map_err(cert_error)?,
    }
    .to_der()
    .map_err(cert_error)
}

fn integer_value(value: u8) -> Result<Vec<u8>, SimError> {
    value.to_der().map_err(cert_error)
}

impl AmdPki {
    /// Generate a Milan ARK and ASK (RSA-4096; this takes a moment) valid around `now`.
    pub fn generate(now: OffsetDateTime) -> Result<Self, SimError> {
        let ark = RsaKeyPair::generate(KeySize::Rsa4096).map_err(key_error)?;
        let ask = RsaKeyPair::generate(KeySize::Rsa4096).map_err(key_error)?;
        let window = |serial, subject, issuer, spki| CertSpec {
            serial,
            subject,
            issuer,
            spki,
            extensions: Vec::new(),
            not_before: now - Duration::days(1),
            not_after: now + Duration::days(3650),
        };
        let ca_exts =
            || -> Result<Vec<Extension>, SimError> { Ok(vec![ca_extension()?, marker()?]) };
        let ark_der = issue(
            CertSpec {
                extensions: ca_exts()?,
                ..window(1, "ARK-Milan", "ARK-Milan", rsa_spki(&ark)?)
            },
            &ark,
        )?;
        let ask_der = issue(
            CertSpec {
                extensions: ca_exts()?,
                ..window(2, "SEV-Milan", "ARK-Milan", rsa_spki(&ask)?)
            },
            &ark,
        )?;
        Ok(Self {
            ask,
            ark_der,
            ask_der,
            chip_id: sha512(b"cloister simulated chip"),
            now,
        })
    }

    /// The hierarchy as JSON (certificates, the ASK's PKCS#8 key, the issue time), to save and
    /// [`AmdPki::from_saved`] later. The ARK's key is not needed after generation.
    pub fn to_saved(&self) -> Result<zeroize::Zeroizing<String>, SimError> {
        use aws_lc_rs::encoding::AsDer as _;
        let ask_key = self.ask.as_der().map_err(key_error)?;
        let saved = serde_json::json!({
            "ark_cert": crate::dcap::to_pem_string(&self.ark_der),
            "ask_cert": crate::dcap::to_pem_string(&self.ask_der),
            "ask_key_pkcs8_hex": hex::encode(ask_key.as_ref()),
            "issued_at": self.now.unix_timestamp(),
        });
        Ok(zeroize::Zeroizing::new(saved.to_string()))
    }

    /// Restore a hierarchy saved with [`AmdPki::to_saved`].
    pub fn from_saved(text: &str) -> Result<Self, SimError> {
        let persist = |e: &dyn std::fmt::Display| SimError::Persist(e.to_string());
        let saved: serde_json::Value = serde_json::from_str(text).map_err(|e| persist(&e))?;
        let field = |name: &str| {
            saved[name]
                .as_str()
                .ok_or_else(|| SimError::Persist(format!("the saved AMD hierarchy lacks {name}")))
        };
        let cert = |name: &str| -> Result<Vec<u8>, SimError> {
            crate::x509::parse_pem_chain(field(name)?.as_bytes())
                .map_err(|e| persist(&e))?
                .into_iter()
                .next()
                .map(crate::x509::Cert::into_der)
                .ok_or_else(|| SimError::Persist(format!("the saved {name} is empty")))
        };
        let key = zeroize::Zeroizing::new(
            hex::decode(field("ask_key_pkcs8_hex")?).map_err(|e| persist(&e))?,
        );
        let now = saved["issued_at"]
            .as_i64()
            .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
            .ok_or_else(|| SimError::Persist("the saved AMD hierarchy lacks issued_at".into()))?;
        Ok(Self {
            ask: RsaKeyPair::from_pkcs8(&key).map_err(key_error)?,
            ark_der: cert("ark_cert")?,
            ask_der: cert("ask_cert")?,
            chip_id: sha512(b"cloister simulated chip"),
            now,
        })
    }

    /// The ASK then the ARK, PEM (the KDS `cert_chain` order).
    pub fn chain_pem(&self) -> String {
        format!(
            "{}{}",
            crate::dcap::to_pem_string(&self.ask_der),
            crate::dcap::to_pem_string(&self.ark_der)
        )
    }

    /// The simulated ARK (PEM): the trust anchor for simulated SNP evidence.
    pub fn ark_pem(&self) -> String {
        crate::dcap::to_pem_string(&self.ark_der)
    }

    /// The simulated chip's ID.
    pub fn chip_id(&self) -> [u8; 64] {
        self.chip_id
    }

    /// Issue a VCEK for `tcb` and sign a report v5 with it: `(report, vcek_der)`.
    pub fn report(&self, p: &SnpParams) -> Result<(Vec<u8>, Vec<u8>), SimError> {
        let vcek = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).map_err(key_error)?;
        let vcek_der = self.vcek(&vcek, &p.tcb)?;
        let mut report = self.report_body(p);
        let signature = vcek
            .sign(&SystemRandom::new(), &report[..SIGNED_LEN])
            .map_err(key_error)?;
        let rs = signature.as_ref();
        if rs.len() != 96 {
            return Err(SimError::Key("unexpected P-384 signature length".into()));
        }
        // R and S are stored little-endian, zero-extended to 72 bytes.
        for i in 0..48 {
            report[0x2A0 + i] = rs[47 - i];
            report[0x2E8 + i] = rs[95 - i];
        }
        Ok((report, vcek_der))
    }

    fn vcek(&self, key: &EcdsaKeyPair, tcb: &SnpTcb) -> Result<Vec<u8>, SimError> {
        const AMD: &str = "1.3.6.1.4.1.3704.1";
        let product = Ia5StringRef::new("Milan-B0").map_err(cert_error)?;
        let mut extensions = vec![
            extension(&format!("{AMD}.1"), false, integer_value(0)?)?,
            extension(
                &format!("{AMD}.2"),
                false,
                product.to_der().map_err(cert_error)?,
            )?,
            extension(&format!("{AMD}.3.1"), false, integer_value(tcb.bootloader)?)?,
            extension(&format!("{AMD}.3.2"), false, integer_value(tcb.tee)?)?,
        ];
        for spl in 4..=7 {
            extensions.push(extension(
                &format!("{AMD}.3.{spl}"),
                false,
                integer_value(0)?,
            )?);
        }
        extensions.push(extension(
            &format!("{AMD}.3.3"),
            false,
            integer_value(tcb.snp)?,
        )?);
        extensions.push(extension(
            &format!("{AMD}.3.8"),
            false,
            integer_value(tcb.microcode)?,
        )?);
        extensions.push(extension(
            &format!("{AMD}.4"),
            false,
            self.chip_id.to_vec(),
        )?);
        extensions.push(marker()?);
        issue(
            CertSpec {
                serial: 3,
                subject: "SEV-VCEK",
                issuer: "SEV-Milan",
                spki: p384_spki(key.public_key().as_ref())?,
                extensions,
                not_before: self.now - Duration::days(1),
                not_after: self.now + Duration::days(2555),
            },
            &self.ask,
        )
    }

    fn report_body(&self, p: &SnpParams) -> Vec<u8> {
        let mut r = vec![0u8; REPORT_LEN];
        let tcb = milan_tcb(&p.tcb);
        let policy: u64 = 0x30000 | (u64::from(p.debug) << 19);
        r[0x00..0x04].copy_from_slice(&5u32.to_le_bytes());
        r[0x04..0x08].copy_from_slice(&p.guest_svn.to_le_bytes());
        r[0x08..0x10].copy_from_slice(&policy.to_le_bytes());
        r[0x30..0x34].copy_from_slice(&p.vmpl.to_le_bytes());
        r[0x34..0x38].copy_from_slice(&1u32.to_le_bytes());
        r[0x38..0x40].copy_from_slice(&tcb);
        r[0x40..0x48].copy_from_slice(&1u64.to_le_bytes());
        r[0x50..0x90].copy_from_slice(&p.report_data);
        r[0x90..0xC0].copy_from_slice(&p.measurement);
        r[0xC0..0xE0].copy_from_slice(&p.host_data);
        r[0x140..0x160].copy_from_slice(&sha256(&p.report_data));
        r[0x160..0x180].copy_from_slice(&[0xff; 32]);
        r[0x180..0x188].copy_from_slice(&tcb);
        r[0x188..0x18B].copy_from_slice(&[0x19, 0x01, 0x01]);
        r[0x1A0..0x1E0].copy_from_slice(&self.chip_id);
        r[0x1E0..0x1E8].copy_from_slice(&tcb);
        r[0x1E8..0x1EB].copy_from_slice(&[0, 55, 1]);
        r[0x1EC..0x1EF].copy_from_slice(&[0, 55, 1]);
        r[0x1F0..0x1F8].copy_from_slice(&tcb);
        r
    }
}

/// Milan/Genoa TCB_VERSION layout: `[bl, tee, 0, 0, 0, 0, snp, ucode]`.
fn milan_tcb(t: &SnpTcb) -> [u8; 8] {
    [t.bootloader, t.tee, 0, 0, 0, 0, t.snp, t.microcode]
}
