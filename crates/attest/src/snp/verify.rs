//! SNP verification: chain, signature, and the binding of the report to its VEK.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use time::OffsetDateTime;

use super::{Product, Report, SigningKey, SnpError, Vek};
use crate::anchor::TrustAnchor;
use crate::claims::{
    Claims, Measurements, Platform, SnpMeasurements, SnpSigningKey, SnpTcb, TeeKind,
};
use crate::crypto::{sha256, verify_p384_point};
use crate::x509::{Cert, Revocation, parse_pem_chain, verify_chain};

/// A VEK whose chain has been verified, with the window in which that result holds.
#[derive(Debug)]
struct VerifiedVek {
    vek: Vek,
    /// The latest notBefore and earliest notAfter along the chain.
    window: (OffsetDateTime, OffsetDateTime),
}

/// Verifies SNP reports against AMD's roots (or a simulation root).
///
/// Verified VEK chains are cached by the SHA-256 of the VEK and chain bytes, so a steady
/// stream of reports from known chips costs one P-384 verification each; the validity window
/// of a cached chain is rechecked on every call.
#[derive(Debug)]
pub struct SnpVerifier {
    anchor: TrustAnchor,
    cache: Option<RwLock<HashMap<[u8; 32], Arc<VerifiedVek>>>>,
}

impl SnpVerifier {
    /// A verifier with a VEK-chain cache.
    pub fn new(anchor: TrustAnchor) -> Self {
        Self {
            anchor,
            cache: Some(RwLock::new(HashMap::new())),
        }
    }

    /// A verifier that re-verifies the chain on every call (for measurement).
    pub fn uncached(anchor: TrustAnchor) -> Self {
        Self {
            anchor,
            cache: None,
        }
    }

    /// The trust anchor.
    pub fn anchor(&self) -> &TrustAnchor {
        &self.anchor
    }

    /// Verify `report` (raw 1184 bytes) signed by `vek` (DER or PEM), whose issuer chain
    /// `chain` (PEM: ASK or ASVK, and ARK) ends in a trusted ARK, at `now`.
    pub fn verify(
        &self,
        report: &[u8],
        vek: &[u8],
        chain: &[u8],
        now: OffsetDateTime,
    ) -> Result<Claims, SnpError> {
        let report = Report::parse(report)?;
        self.verify_parsed(&report, vek, chain, now)
    }

    /// Verify an already parsed report.
    pub fn verify_parsed(
        &self,
        report: &Report,
        vek: &[u8],
        chain: &[u8],
        now: OffsetDateTime,
    ) -> Result<Claims, SnpError> {
        if report.sig_algo != 1 {
            return Err(SnpError::UnsupportedSignatureAlgorithm {
                algo: report.sig_algo,
            });
        }
        let verified = self.verified_vek(vek, chain, now)?;
        let vek = &verified.vek;
        check_key_type(report, vek)?;
        let product = check_product(report, vek)?;
        let signature = report.signature_rs()?;
        verify_p384_point(vek.cert.public_key(), report.signed_bytes(), &signature)
            .map_err(|_| SnpError::BadSignature)?;
        check_binding(report, vek, product)?;
        Ok(claims(report, product, self.anchor.is_simulation()))
    }

    fn verified_vek(
        &self,
        vek: &[u8],
        chain: &[u8],
        now: OffsetDateTime,
    ) -> Result<Arc<VerifiedVek>, SnpError> {
        let Some(cache) = &self.cache else {
            return self.verify_vek_chain(vek, chain, now).map(Arc::new);
        };
        let key = sha256(&[sha256(vek), sha256(chain)].concat());
        let hit = cache.read().ok().and_then(|c| c.get(&key).cloned());
        if let Some(hit) = hit {
            let (from, until) = hit.window;
            if from <= now && now <= until {
                return Ok(hit);
            }
            // Outside the cached window: verify again so the error names the certificate.
        }
        let fresh = Arc::new(self.verify_vek_chain(vek, chain, now)?);
        if let Ok(mut c) = cache.write() {
            c.insert(key, fresh.clone());
        }
        Ok(fresh)
    }

    fn verify_vek_chain(
        &self,
        vek: &[u8],
        chain: &[u8],
        now: OffsetDateTime,
    ) -> Result<VerifiedVek, SnpError> {
        let vek = Vek::parse(vek)?;
        let mut certs = vec![vek.cert.clone()];
        certs.extend(order_chain(chain, &vek.cert)?);
        verify_chain(&certs, &self.anchor, now, &[], Revocation::IfPresent)
            .map_err(SnpError::Chain)?;
        let from = certs.iter().map(|c| c.not_before).max().unwrap_or(now);
        let until = certs.iter().map(|c| c.not_after).min().unwrap_or(now);
        Ok(VerifiedVek {
            vek,
            window: (from, until),
        })
    }
}

/// Put the ASK/ASVK after the VEK and the ARK last, whatever order the file has.
fn order_chain(chain: &[u8], vek: &Cert) -> Result<Vec<Cert>, SnpError> {
    let certs = parse_pem_chain(chain).map_err(|e| SnpError::BadChain {
        reason: e.to_string(),
    })?;
    let ask = certs
        .iter()
        .find(|c| vek.is_issued_by_name(c))
        .ok_or_else(|| SnpError::BadChain {
            reason: format!(
                "no certificate in the chain issued the VEK (its issuer is {:?})",
                vek.issuer()
            ),
        })?;
    let ark = certs
        .iter()
        .find(|c| ask.is_issued_by_name(c) && c.is_issued_by_name(c))
        .ok_or_else(|| SnpError::BadChain {
            reason: format!("no ARK in the chain issued {:?}", ask.subject()),
        })?;
    Ok(vec![ask.clone(), ark.clone()])
}

fn check_key_type(report: &Report, vek: &Vek) -> Result<(), SnpError> {
    let supplied = if vek.is_vlek() { "VLEK" } else { "VCEK" };
    let expected = match report.signing_key() {
        SigningKey::Vcek => "VCEK",
        SigningKey::Vlek => "VLEK",
        SigningKey::None => return Err(SnpError::Unsigned { value: 7 }),
        SigningKey::Reserved(v) => return Err(SnpError::Unsigned { value: v }),
    };
    if expected == supplied {
        Ok(())
    } else {
        Err(SnpError::WrongKeyType { expected, supplied })
    }
}

/// The product line: the VEK names it; a v3+ report's CPUID must agree.
fn check_product(report: &Report, vek: &Vek) -> Result<Product, SnpError> {
    let named = vek.product().ok_or_else(|| SnpError::BadVek {
        reason: "the VEK names no known product line (Milan, Genoa, Turin)".into(),
    })?;
    match report.product() {
        Some(from_cpu) if from_cpu != named => Err(SnpError::ProductMismatch {
            report: from_cpu.name().into(),
            vek: named.name().into(),
        }),
        _ => Ok(named),
    }
}

fn check_binding(report: &Report, vek: &Vek, product: Product) -> Result<(), SnpError> {
    let reported = report.reported_tcb.decode(product);
    let vek_tcb = vek.tcb;
    let same = reported.bootloader == vek_tcb.bootloader
        && reported.tee == vek_tcb.tee
        && reported.snp == vek_tcb.snp
        && reported.microcode == vek_tcb.microcode
        && (product != Product::Turin || reported.fmc == vek_tcb.fmc);
    if !same {
        return Err(SnpError::TcbMismatch {
            report: format_tcb(&reported),
            vek: format_tcb(&vek_tcb),
        });
    }
    if let (Some(hw_id), false) = (&vek.hw_id, report.chip_id_masked())
        && (!report.chip_id.starts_with(hw_id) || hw_id.is_empty())
    {
        return Err(SnpError::ChipIdMismatch);
    }
    Ok(())
}

fn format_tcb(t: &SnpTcb) -> String {
    let fmc = t.fmc.map(|f| format!("fmc {f} ")).unwrap_or_default();
    format!(
        "{fmc}bl {} tee {} snp {} ucode {}",
        t.bootloader, t.tee, t.snp, t.microcode
    )
}

fn claims(report: &Report, product: Product, simulated: bool) -> Claims {
    let signing_key = match report.signing_key() {
        SigningKey::Vlek => SnpSigningKey::Vlek,
        _ => SnpSigningKey::Vcek,
    };
    Claims {
        tee: TeeKind::Snp,
        simulated,
        debug: report.debug_allowed(),
        report_data: report.report_data,
        tcb_status: None,
        advisory_ids: Vec::new(),
        tcb_date: None,
        measurements: Measurements::Snp(Box::new(SnpMeasurements {
            report_version: report.version,
            measurement: report.measurement,
            host_data: report.host_data,
            id_key_digest: report.id_key_digest,
            author_key_digest: report.author_key_digest,
            family_id: report.family_id,
            image_id: report.image_id,
            guest_svn: report.guest_svn,
            policy: report.policy,
            vmpl: report.vmpl,
            reported_tcb: report.reported_tcb.decode(product),
            platform_info: report.platform_info,
            signing_key,
        })),
        platform: Platform {
            chip_id: Some(report.chip_id),
            product: Some(product.name().into()),
            current_tcb: Some(report.current_tcb.decode(product)),
            ..Platform::default()
        },
        vtpm: None,
    }
}
