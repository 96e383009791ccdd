//! Peers measured beside us: dcap-qvl (SGX/TDX) and virtee's sev crate (SNP, OpenSSL backend).

use sev::certs::snp::{Certificate, Chain, Verifiable, ca};
use sev::firmware::guest::AttestationReport;
use sev::parser::ByteParser as _;

use crate::harness::{Harness, Measured};

/// dcap-qvl's full verification of one quote from its collateral JSON, paired with `floor`
/// (the quote's nine signatures).
pub(crate) fn dcap_qvl<U, F>(
    h: &Harness,
    name: &str,
    quote: &[u8],
    collateral_json: &[u8],
    now_secs: u64,
    floor: impl FnMut() -> Result<U, F>,
) -> anyhow::Result<Measured> {
    // Like ours, from the collateral JSON bytes every time.
    h.paired(
        name,
        || {
            let collateral = dcap_qvl_collateral(collateral_json)?;
            dcap_qvl::verify::verify(quote, &collateral, now_secs)
        },
        1.0,
        floor,
    )
}

/// The combined collateral JSON (CRLs and signatures as hex) in dcap-qvl's own type.
fn dcap_qvl_collateral(json: &[u8]) -> anyhow::Result<dcap_qvl::QuoteCollateralV3> {
    let v: serde_json::Value = serde_json::from_slice(json)?;
    let text = |k: &str| -> anyhow::Result<String> {
        Ok(v.get(k)
            .and_then(|x| x.as_str())
            .ok_or_else(|| anyhow::anyhow!("collateral lacks {k}"))?
            .to_string())
    };
    let bytes = |k: &str| -> anyhow::Result<Vec<u8>> { Ok(hex::decode(text(k)?)?) };
    Ok(dcap_qvl::QuoteCollateralV3 {
        pck_crl_issuer_chain: text("pck_crl_issuer_chain")?,
        root_ca_crl: bytes("root_ca_crl")?,
        pck_crl: bytes("pck_crl")?,
        tcb_info_issuer_chain: text("tcb_info_issuer_chain")?,
        tcb_info: text("tcb_info")?,
        tcb_info_signature: bytes("tcb_info_signature")?,
        qe_identity_issuer_chain: text("qe_identity_issuer_chain")?,
        qe_identity: text("qe_identity")?,
        qe_identity_signature: bytes("qe_identity_signature")?,
        pck_certificate_chain: None,
    })
}

/// The sev crate: full chain (ARK, ASK, VEK) plus report, and report only with a parsed VEK,
/// each paired with the P-384 floor (`full_floor` P-384 units for the full path).
pub(crate) fn sev<U, F>(
    h: &Harness,
    report: &[u8],
    vek_der: &[u8],
    ask_pem: &[u8],
    ark_pem: &[u8],
    full_floor: f64,
    mut floor: impl FnMut() -> Result<U, F>,
) -> anyhow::Result<(Measured, Measured)> {
    let full = h.paired(
        "sev 8.0.0 (OpenSSL): chain + report",
        || {
            let report = AttestationReport::from_bytes(report)?;
            let chain = Chain {
                ca: ca::Chain::from_pem(ark_pem, ask_pem)?,
                vek: Certificate::from_der(vek_der)?,
            };
            (&chain, &report).verify().map(|_| ())
        },
        full_floor,
        &mut floor,
    )?;
    let vek = Certificate::from_der(vek_der)?;
    let report_only = h.paired(
        "sev 8.0.0 (OpenSSL): report, VEK parsed",
        || {
            let report = AttestationReport::from_bytes(report)?;
            (&vek, &report).verify().map(|_| ())
        },
        1.0,
        &mut floor,
    )?;
    Ok((full, report_only))
}
