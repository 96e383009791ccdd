//! End-to-end DCAP verification, with a cache of verified collateral and PCK chains.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use time::OffsetDateTime;

use super::collateral::{Collateral, QeIdentity, SignedJson, TcbInfo};
use super::quote::{Body, Quote};
use super::tcb::{TcbVerdict, match_platform, match_qe};
use super::{DcapError, PckExtensions};
use crate::anchor::TrustAnchor;
use crate::claims::{
    Claims, Measurements, Platform, SgxMeasurements, TcbStatus, TdxMeasurements, TeeKind,
};
use crate::crypto::{sha256, verify_p256_raw};
use crate::x509::{
    Cert, CertError, Crl, Revocation, SigAlg, parse_pem_chain_reusing, rfc3339, verify_chain,
};

/// TCB info and QE identity whose signatures, signing chain and CRLs have been verified; valid
/// for verification times inside `window`.
#[derive(Debug)]
struct VerifiedCollateral {
    tcb_info: TcbInfo,
    qe_identity: QeIdentity,
    window: (OffsetDateTime, OffsetDateTime),
}

/// A PCK leaf whose chain (and revocation) has been verified; valid inside `window`.
#[derive(Debug)]
struct VerifiedPck {
    leaf: Cert,
    extensions: PckExtensions,
    window: (OffsetDateTime, OffsetDateTime),
}

#[derive(Debug, Default)]
struct Cache {
    collateral: RwLock<HashMap<[u8; 32], Arc<VerifiedCollateral>>>,
    pck: RwLock<HashMap<[u8; 32], Arc<VerifiedPck>>>,
}

/// Verifies SGX and TDX quotes against Intel's root (or a simulation root).
///
/// With the cache (the default), collateral and PCK chains are verified once per content
/// (keyed by SHA-256) and reused while the verification time lies inside their validity
/// window, so a steady-state quote costs two ECDSA verifications: the QE report and the quote.
/// The verifier is `Send + Sync`; the cache locks are never held across a signature check.
#[derive(Debug)]
pub struct DcapVerifier {
    anchor: TrustAnchor,
    cache: Option<Cache>,
}

fn in_window(window: (OffsetDateTime, OffsetDateTime), now: OffsetDateTime) -> bool {
    window.0 <= now && now <= window.1
}

impl DcapVerifier {
    /// A verifier with a cache of verified collateral and PCK chains.
    pub fn new(anchor: TrustAnchor) -> Self {
        Self {
            anchor,
            cache: Some(Cache::default()),
        }
    }

    /// A verifier that checks everything on every call (for measurement and one-shot use).
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

    /// Verify a quote (raw bytes) with its collateral at `now`.
    pub fn verify(
        &self,
        quote: &[u8],
        collateral: &Collateral,
        now: OffsetDateTime,
    ) -> Result<Claims, DcapError> {
        let quote = Quote::parse(quote)?;
        self.verify_parsed(&quote, collateral, now)
    }

    /// Verify an already parsed quote.
    pub fn verify_parsed(
        &self,
        quote: &Quote,
        collateral: &Collateral,
        now: OffsetDateTime,
    ) -> Result<Claims, DcapError> {
        let tdx = quote.is_tdx();
        let coll = self.verified_collateral(collateral, tdx, now)?;
        let pck = self.verified_pck(quote, collateral, now)?;
        let cert = &quote.certification;
        verify_fixed_by(&pck.leaf, &cert.qe_report_raw, &cert.qe_report_signature)
            .map_err(|_| DcapError::QeReportSignature)?;
        check_key_binding(quote)?;
        let qe_level = match_qe(&coll.qe_identity, &cert.qe_report)?;
        verify_p256_raw(&quote.attestation_key, &quote.signed, &quote.signature)
            .map_err(|_| DcapError::QuoteSignature)?;
        check_platform(&coll.tcb_info, &pck.extensions)?;
        let verdict = match_platform(&coll.tcb_info, &pck.extensions, quote.td_report())?;
        let verdict = verdict.converge(&qe_level);
        if verdict.status == TcbStatus::Revoked {
            return Err(DcapError::TcbRevoked);
        }
        Ok(claims(
            quote,
            &pck.extensions,
            verdict,
            qe_level.status,
            self.anchor.is_simulation(),
        ))
    }

    fn verified_collateral(
        &self,
        collateral: &Collateral,
        tdx: bool,
        now: OffsetDateTime,
    ) -> Result<Arc<VerifiedCollateral>, DcapError> {
        let Some(cache) = &self.cache else {
            return self.verify_collateral(collateral, tdx, now).map(Arc::new);
        };
        let key = sha256(&[collateral.digest().as_slice(), &[u8::from(tdx)]].concat());
        let hit = cache
            .collateral
            .read()
            .ok()
            .and_then(|c| c.get(&key).cloned());
        if let Some(hit) = hit.filter(|h| in_window(h.window, now)) {
            return Ok(hit);
        }
        let fresh = Arc::new(self.verify_collateral(collateral, tdx, now)?);
        if let Ok(mut c) = cache.collateral.write() {
            c.insert(key, fresh.clone());
        }
        Ok(fresh)
    }

    fn verify_collateral(
        &self,
        collateral: &Collateral,
        tdx: bool,
        now: OffsetDateTime,
    ) -> Result<VerifiedCollateral, DcapError> {
        let tcb_json = collateral.tcb_info.as_ref().ok_or_else(|| DcapError::CollateralMissing {
            what: "TCB info",
            hint: "add the PCS tcb_info_response.json for this FMSPC, or a combined collateral.json".into(),
        })?;
        let qe_json =
            collateral
                .qe_identity
                .as_ref()
                .ok_or_else(|| DcapError::CollateralMissing {
                    what: "QE identity",
                    hint: "add the PCS qe_identity_response.json (QE for SGX, TD_QE for TDX)"
                        .into(),
                })?;
        let tcb_info = TcbInfo::parse(&tcb_json.text)?;
        let qe_identity = QeIdentity::parse(&qe_json.text)?;
        check_collateral_kind(&tcb_info, &qe_identity, tdx)?;
        check_issued("TCB info", tcb_info.issue_date, tcb_info.next_update, now)?;
        check_issued(
            "QE identity",
            qe_identity.issue_date,
            qe_identity.next_update,
            now,
        )?;
        let signer = self.tcb_signing_chain(collateral, now)?;
        verify_signed_json(signer, tcb_json, "TCB info")?;
        verify_signed_json(signer, qe_json, "QE identity")?;
        let from = [
            tcb_info.issue_date,
            qe_identity.issue_date,
            signer.not_before,
        ]
        .into_iter()
        .chain(collateral.crls.iter().map(|c| c.this_update))
        .max()
        .unwrap_or(now);
        let until = [
            tcb_info.next_update,
            qe_identity.next_update,
            signer.not_after,
        ]
        .into_iter()
        .chain(collateral.crls.iter().filter_map(|c| c.next_update))
        .min()
        .unwrap_or(now);
        Ok(VerifiedCollateral {
            tcb_info,
            qe_identity,
            window: (from, until),
        })
    }

    /// The first supplied TCB-signing chain that verifies at `now` (certificates are
    /// re-issued with the same key, so generations differ only in validity).
    fn tcb_signing_chain<'c>(
        &self,
        collateral: &'c Collateral,
        now: OffsetDateTime,
    ) -> Result<&'c Cert, DcapError> {
        let mut last_error = None;
        // Intel's TCB-signing certificate is issued directly by the root. Requiring exactly that
        // shape means no deeper key (a platform's PCK, say) can ever sign collateral.
        for chain in collateral
            .tcb_signing_chains
            .iter()
            .filter(|c| c.len() == 2)
        {
            match verify_chain(
                chain,
                &self.anchor,
                now,
                &collateral.crls,
                Revocation::Required,
            ) {
                Ok(()) => {
                    if let Some(leaf) = chain.first() {
                        return Ok(leaf);
                    }
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(match last_error {
            Some(e) => DcapError::TcbSigningChain(e),
            None => DcapError::CollateralMissing {
                what: "TCB signing chain",
                hint: "add the TCB-Info-Issuer-Chain from the PCS response: the TCB Signing certificate and the Root CA that issued it (PEM), or a combined collateral.json".into(),
            },
        })
    }

    fn verified_pck(
        &self,
        quote: &Quote,
        collateral: &Collateral,
        now: OffsetDateTime,
    ) -> Result<Arc<VerifiedPck>, DcapError> {
        let pem = &quote.certification.pck_chain_pem;
        let Some(cache) = &self.cache else {
            return self.verify_pck(pem, collateral, now).map(Arc::new);
        };
        let key = sha256(&[sha256(pem).as_slice(), &collateral.digest()].concat());
        let hit = cache.pck.read().ok().and_then(|c| c.get(&key).cloned());
        if let Some(hit) = hit.filter(|h| in_window(h.window, now)) {
            return Ok(hit);
        }
        let fresh = Arc::new(self.verify_pck(pem, collateral, now)?);
        if let Ok(mut c) = cache.pck.write() {
            c.insert(key, fresh.clone());
        }
        Ok(fresh)
    }

    fn verify_pck(
        &self,
        pem: &[u8],
        collateral: &Collateral,
        now: OffsetDateTime,
    ) -> Result<VerifiedPck, DcapError> {
        let known: Vec<&Cert> = collateral.tcb_signing_chains.iter().flatten().collect();
        let chain = parse_pem_chain_reusing(pem, &known).map_err(DcapError::PckChain)?;
        verify_chain(
            &chain,
            &self.anchor,
            now,
            &collateral.crls,
            Revocation::Required,
        )
        .map_err(DcapError::PckChain)?;
        let leaf = chain
            .first()
            .cloned()
            .ok_or(DcapError::PckChain(CertError::EmptyChain))?;
        let extensions = PckExtensions::from_cert(&leaf)?;
        let window = crl_window(&chain, &collateral.crls, now);
        Ok(VerifiedPck {
            leaf,
            extensions,
            window,
        })
    }
}

/// The window in which a verified chain (and the CRLs consulted for it) stays valid.
fn crl_window(
    chain: &[Cert],
    crls: &[Crl],
    now: OffsetDateTime,
) -> (OffsetDateTime, OffsetDateTime) {
    let from = chain
        .iter()
        .map(|c| c.not_before)
        .chain(crls.iter().map(|c| c.this_update))
        .max()
        .unwrap_or(now);
    let until = chain
        .iter()
        .map(|c| c.not_after)
        .chain(crls.iter().filter_map(|c| c.next_update))
        .min()
        .unwrap_or(now);
    (from, until)
}

/// Check an `r || s` signature with a certificate's key, parsed once for all it checks (the
/// TCB-signing key signs two collateral objects; a cached PCK leaf signs every QE report).
fn verify_fixed_by(cert: &Cert, message: &[u8], sig: &[u8; 64]) -> Result<(), CertError> {
    cert.verify(SigAlg::EcdsaSha256Fixed, message, sig)
}

/// The QE report's REPORTDATA must be SHA-256(attestation key || QE auth data) || zeros.
fn check_key_binding(quote: &Quote) -> Result<(), DcapError> {
    let cert = &quote.certification;
    let expected = sha256(&[&quote.attestation_key[..], &cert.qe_auth_data].concat());
    let rd = &cert.qe_report.report_data;
    if rd[..32] != expected || rd[32..].iter().any(|&b| b != 0) {
        return Err(DcapError::AttestationKeyBinding);
    }
    Ok(())
}

fn check_collateral_kind(tcb: &TcbInfo, qe: &QeIdentity, tdx: bool) -> Result<(), DcapError> {
    let (tcb_id, qe_id) = if tdx { ("TDX", "TD_QE") } else { ("SGX", "QE") };
    if tcb.id != tcb_id || (tdx && tcb.version < 3) {
        return Err(DcapError::WrongCollateralKind {
            what: "TCB info",
            expected: tcb_id,
            found: format!("{} v{}", tcb.id, tcb.version),
        });
    }
    if qe.id != qe_id {
        return Err(DcapError::WrongCollateralKind {
            what: "QE identity",
            expected: qe_id,
            found: qe.id.clone(),
        });
    }
    Ok(())
}

fn check_issued(
    what: &'static str,
    issue: OffsetDateTime,
    next: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<(), DcapError> {
    if now < issue {
        return Err(DcapError::CollateralNotYetValid {
            what,
            issue_date: rfc3339(issue),
            now: rfc3339(now),
        });
    }
    if now > next {
        return Err(DcapError::CollateralExpired {
            what,
            next_update: rfc3339(next),
            now: rfc3339(now),
        });
    }
    Ok(())
}

fn verify_signed_json(
    signer: &Cert,
    json: &SignedJson,
    what: &'static str,
) -> Result<(), DcapError> {
    verify_fixed_by(signer, json.text.as_bytes(), &json.signature)
        .map_err(|_| DcapError::CollateralSignature { what })
}

fn check_platform(tcb: &TcbInfo, pck: &PckExtensions) -> Result<(), DcapError> {
    if tcb.fmspc != pck.fmspc {
        return Err(DcapError::FmspcMismatch {
            quote: hex::encode(pck.fmspc),
            collateral: hex::encode(tcb.fmspc),
        });
    }
    if tcb.pce_id != pck.pce_id {
        return Err(DcapError::PceIdMismatch {
            quote: hex::encode(pck.pce_id),
            collateral: hex::encode(tcb.pce_id),
        });
    }
    Ok(())
}

fn claims(
    quote: &Quote,
    pck: &PckExtensions,
    verdict: TcbVerdict,
    qe_status: TcbStatus,
    simulated: bool,
) -> Claims {
    let (tee, debug, report_data, measurements) = match &quote.body {
        Body::Sgx(r) => (
            TeeKind::Sgx,
            r.debug(),
            r.report_data,
            Measurements::Sgx(SgxMeasurements {
                mr_enclave: r.mr_enclave,
                mr_signer: r.mr_signer,
                isv_prod_id: r.isv_prod_id,
                isv_svn: r.isv_svn,
                cpu_svn: r.cpu_svn,
                misc_select: r.misc_select,
                attributes: r.attributes,
                config_id: r.config_id,
                config_svn: r.config_svn,
                isv_ext_prod_id: r.isv_ext_prod_id,
                isv_family_id: r.isv_family_id,
            }),
        ),
        Body::Td10(r) | Body::Td15(r) => (
            TeeKind::Tdx,
            r.debug(),
            r.report_data,
            Measurements::Tdx(Box::new(TdxMeasurements {
                mr_td: r.mr_td,
                rtmr: r.rtmr,
                mr_config_id: r.mr_config_id,
                mr_owner: r.mr_owner,
                mr_owner_config: r.mr_owner_config,
                td_attributes: r.td_attributes,
                xfam: r.xfam,
                tee_tcb_svn: r.tee_tcb_svn,
                mr_seam: r.mr_seam,
                mr_signer_seam: r.mr_signer_seam,
                seam_attributes: r.seam_attributes,
                tee_tcb_svn2: r.tee_tcb_svn2,
                mr_service_td: r.mr_service_td,
                sept_ve_disable: r.sept_ve_disable(),
            })),
        ),
    };
    Claims {
        tee,
        simulated,
        debug,
        report_data,
        tcb_status: Some(verdict.status),
        advisory_ids: verdict.advisory_ids,
        tcb_date: Some(verdict.date),
        measurements,
        platform: Platform {
            fmspc: Some(pck.fmspc),
            pck_cpu_svn: Some(pck.cpu_svn),
            pce_svn: Some(pck.pce_svn),
            qe_tcb_status: Some(qe_status),
            ..Platform::default()
        },
        vtpm: None,
    }
}
