//! Azure vTPM evidence: the real Milan SNP and TDX evidence, and every tampered variant.

use attest::azure::{AzureError, VtpmEvidence, verify_snp, verify_tdx};
use attest::dcap::{Collateral, DcapVerifier};
use attest::snp::SnpVerifier;
use attest::{Claims, TeeKind, TrustAnchor};
use serde_json::Value;

use crate::support::{at, read};

const SNP_EVIDENCE: &str = "azure/trustee_az-snp-vtpm_evidence-v1.json";
const TDX_EVIDENCE: &str = "azure/trustee_az-tdx-vtpm_evidence-v1.json";
const MILAN_CHAIN: &str = "snp/amd_milan_ask_ark.pem";

fn snp(json: &[u8], nonce: Option<&[u8]>) -> Result<Claims, AzureError> {
    let evidence = VtpmEvidence::parse(json)?;
    verify_snp(
        &evidence,
        &SnpVerifier::new(TrustAnchor::amd()),
        &read(MILAN_CHAIN),
        nonce,
        at("2026-01-01T00:00:00Z"),
    )
}

fn tdx(json: &[u8]) -> Result<Claims, AzureError> {
    let evidence = VtpmEvidence::parse(json)?;
    let collateral = Collateral::from_combined_json(&read(
        "tdx/collateral_00806f050000_2025-02/collateral.json",
    ))
    .unwrap();
    verify_tdx(
        &evidence,
        &DcapVerifier::new(TrustAnchor::intel()),
        &collateral,
        Some(b"challenge"),
        at("2025-03-01T00:00:00Z"),
    )
}

/// The evidence JSON with one hex field edited by `edit`.
fn edited(path: &str, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&read(path)).unwrap();
    edit(&mut v);
    serde_json::to_vec(&v).unwrap()
}

fn flip_hex(v: &mut Value, index: usize) {
    let s = v.as_str().unwrap();
    let mut bytes = hex::decode(s).unwrap();
    bytes[index] ^= 1;
    *v = Value::String(hex::encode(bytes));
}

#[test]
fn azure_snp_milan_verifies_with_nonce_and_pcrs() {
    let c = snp(&read(SNP_EVIDENCE), Some(b"challenge")).unwrap();
    assert_eq!(c.tee, TeeKind::AzSnpVtpm);
    let vtpm = c.vtpm.as_ref().unwrap();
    assert_eq!(vtpm.nonce, b"challenge");
    assert_eq!(vtpm.pcrs.len(), 24);
    assert_eq!(
        hex::encode(vtpm.pcrs[0].0),
        "e15c44796beabf46abcec7c57e590942041e47497e4ec27571c8b7664f48dced"
    );
    assert_eq!(
        hex::encode(&c.report_data[..32]),
        "af2910341dd8108360e485f1b72494255190b9cdd5ccb44b73b883037cf99f21"
    );
    match &c.measurements {
        attest::Measurements::Snp(m) => assert_eq!(
            hex::encode(m.measurement),
            "6a063be9dd79f6371c842e480f8dc3b5c725961344e57130e88c5adf49e8f7f6c79b75a5eb77fc769959f4aeb2f9401e"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn azure_snp_tampering_is_rejected_with_the_right_error() {
    let wrong_nonce = snp(&read(SNP_EVIDENCE), Some(b"other")).unwrap_err();
    assert!(matches!(wrong_nonce, AzureError::Nonce { .. }));
    let msg = edited(SNP_EVIDENCE, |v| {
        flip_hex(&mut v["tpm_quote"]["message"], 40)
    });
    assert_eq!(snp(&msg, None).unwrap_err(), AzureError::TpmSignature);
    let sig = edited(SNP_EVIDENCE, |v| {
        flip_hex(&mut v["tpm_quote"]["signature"], 10)
    });
    assert_eq!(snp(&sig, None).unwrap_err(), AzureError::TpmSignature);
    let pcr = edited(SNP_EVIDENCE, |v| {
        flip_hex(&mut v["tpm_quote"]["pcrs"][4], 0)
    });
    assert_eq!(snp(&pcr, None).unwrap_err(), AzureError::PcrDigest);
    // Change var_data inside the HCL report: the SNP report no longer binds it.
    let mut hcl = read("azure/az-snp-v1.hcl_report.bin");
    let pos = hcl.windows(8).position(|w| w == b"HCLAkPub").unwrap();
    hcl[pos + 20] ^= 1;
    let forged = edited(SNP_EVIDENCE, |v| {
        v["hcl_report"] = Value::String(hex::encode(&hcl));
    });
    assert_eq!(snp(&forged, None).unwrap_err(), AzureError::HclBinding);
    // The SNP report itself.
    let mut hcl = read("azure/az-snp-v1.hcl_report.bin");
    hcl[0x20 + 0x90] ^= 1;
    let forged = edited(SNP_EVIDENCE, |v| {
        v["hcl_report"] = Value::String(hex::encode(&hcl));
    });
    assert!(matches!(
        snp(&forged, None).unwrap_err(),
        AzureError::Snp(_)
    ));
}

#[test]
fn azure_tdx_binds_the_td_quote_and_the_vtpm() {
    let c = tdx(&read(TDX_EVIDENCE)).unwrap();
    assert_eq!(c.tee, TeeKind::AzTdxVtpm);
    assert_eq!(c.tcb_status, Some(attest::TcbStatus::OutOfDate));
    assert_eq!(
        hex::encode(&c.report_data[..32]),
        "9734504f161d104c74e3165c15f779b06a9bb40dfa71937817d7eee68e593839"
    );
    assert_eq!(c.vtpm.unwrap().nonce, b"challenge");
    let msg = edited(TDX_EVIDENCE, |v| {
        flip_hex(&mut v["tpm_quote"]["message"], 40)
    });
    assert_eq!(tdx(&msg).unwrap_err(), AzureError::TpmSignature);
}

#[test]
fn derived_binaries_match_the_json() {
    let evidence = VtpmEvidence::parse(&read(SNP_EVIDENCE)).unwrap();
    assert_eq!(
        attest::azure::HclReport::parse(&read("azure/az-snp-v1.hcl_report.bin")).unwrap(),
        evidence.hcl
    );
    match &evidence.hcl.hw_report {
        attest::azure::HwReport::Snp(r) => assert_eq!(r, &read("azure/az-snp-v1.snp_report.bin")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_vtpm_inputs_are_errors_never_panics() {
    let hcl = read("azure/az-snp-v1.hcl_report.bin");
    for len in (0..hcl.len()).step_by(3) {
        let _ = attest::azure::HclReport::parse(&hcl[..len]);
    }
    let evidence = VtpmEvidence::parse(&read(SNP_EVIDENCE)).unwrap();
    let msg = &evidence.quote.message;
    for len in 0..msg.len() {
        assert!(attest::azure::TpmQuote::parse(&msg[..len], &[], vec![]).is_err());
    }
    assert!(VtpmEvidence::parse(b"{}").is_err());
    assert!(VtpmEvidence::parse(b"[1,2]").is_err());
}
