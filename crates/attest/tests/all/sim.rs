//! Simulation: real formats, the real verifiers, and never mistaken for hardware.

use std::sync::OnceLock;

use attest::dcap::{DcapError, DcapVerifier};
use attest::evidence::Verifiers;
use attest::policy::PolicyViolation;
use attest::sim::amd::{AmdPki, SnpParams};
use attest::sim::intel::{IntelPki, SIMULATED_ADVISORY, SgxParams, TdxParams};
use attest::sim::{SimOptions, simulate};
use attest::snp::SnpVerifier;
use attest::x509::CertError;
use attest::{Policy, TcbStatus, TeeKind, TrustAnchor};
use time::OffsetDateTime;

fn now() -> OffsetDateTime {
    crate::support::at("2026-11-22T12:00:00Z")
}

fn intel() -> &'static IntelPki {
    static PKI: OnceLock<IntelPki> = OnceLock::new();
    PKI.get_or_init(|| IntelPki::generate(now()).unwrap())
}

fn amd() -> &'static AmdPki {
    static PKI: OnceLock<AmdPki> = OnceLock::new();
    PKI.get_or_init(|| AmdPki::generate(now()).unwrap())
}

#[test]
fn every_tcb_knob_lands_in_its_status() {
    let pki = intel();
    let anchor = TrustAnchor::simulation(pki.root_pem().as_bytes()).unwrap();
    let verifier = DcapVerifier::new(anchor);
    let quote = pki.sgx_quote(&SgxParams::default()).unwrap();
    let tdx_quote = pki.tdx_quote(&TdxParams::default()).unwrap();
    for status in [
        TcbStatus::UpToDate,
        TcbStatus::SWHardeningNeeded,
        TcbStatus::ConfigurationNeeded,
        TcbStatus::ConfigurationAndSWHardeningNeeded,
        TcbStatus::OutOfDate,
    ] {
        for (tdx, q) in [(false, &quote), (true, &tdx_quote)] {
            let collateral = pki.collateral(tdx, status, now()).unwrap();
            let claims = verifier.verify(q, &collateral, now()).unwrap();
            assert_eq!(claims.tcb_status, Some(status), "tdx={tdx}");
            assert!(claims.simulated);
            let expected: Vec<String> = if status == TcbStatus::UpToDate {
                vec![]
            } else {
                vec![SIMULATED_ADVISORY.to_string()]
            };
            assert_eq!(claims.advisory_ids, expected);
        }
    }
    let revoked = pki.collateral(false, TcbStatus::Revoked, now()).unwrap();
    assert_eq!(
        verifier.verify(&quote, &revoked, now()).unwrap_err(),
        DcapError::TcbRevoked
    );
}

#[test]
fn simulated_evidence_never_passes_for_hardware() {
    for tee in [TeeKind::Sgx, TeeKind::Tdx, TeeKind::Snp] {
        let sim = simulate(tee, &[7; 64], &SimOptions::default(), now()).unwrap();
        let production = Verifiers::production().verify(&sim.evidence, &sim.inputs(), now());
        let err = production.unwrap_err().to_string();
        assert!(err.contains("not a trusted root"), "{tee}: {err}");
        // A simulation root cannot be passed off as a production root either.
        assert_eq!(
            TrustAnchor::from_root(sim.anchor_pem.as_bytes()).unwrap_err(),
            CertError::SimulationNotEnabled
        );
        let anchor = TrustAnchor::simulation(sim.anchor_pem.as_bytes()).unwrap();
        let (_, claims) = Verifiers::with_anchor(anchor)
            .verify(&sim.evidence, &sim.inputs(), now())
            .unwrap();
        assert!(claims.simulated);
        assert_eq!(claims.report_data, [7; 64]);
        assert_eq!(
            Policy::default().check(&claims),
            Err(PolicyViolation::Simulated)
        );
        let allowed = Policy {
            allow_simulation: true,
            ..Policy::default()
        };
        allowed.check(&claims).unwrap();
    }
}

#[test]
fn debug_knob_reaches_the_claims() {
    for tee in [TeeKind::Sgx, TeeKind::Tdx, TeeKind::Snp] {
        let options = SimOptions {
            debug: true,
            ..SimOptions::default()
        };
        let sim = simulate(tee, &[0; 64], &options, now()).unwrap();
        let anchor = TrustAnchor::simulation(sim.anchor_pem.as_bytes()).unwrap();
        let (_, claims) = Verifiers::with_anchor(anchor)
            .verify(&sim.evidence, &sim.inputs(), now())
            .unwrap();
        assert!(claims.debug, "{tee}");
    }
}

#[test]
fn simulated_snp_report_carries_its_parameters() {
    let pki = amd();
    let params = SnpParams {
        vmpl: 2,
        host_data: [9; 32],
        ..SnpParams::default()
    };
    let (report, vcek) = pki.report(&params).unwrap();
    let anchor = TrustAnchor::simulation(pki.ark_pem().as_bytes()).unwrap();
    let verifier = SnpVerifier::new(anchor);
    let claims = verifier
        .verify(&report, &vcek, pki.chain_pem().as_bytes(), now())
        .unwrap();
    match &claims.measurements {
        attest::Measurements::Snp(m) => {
            assert_eq!((m.vmpl, m.host_data, m.report_version), (2, [9; 32], 5));
            assert_eq!(m.reported_tcb, params.tcb);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(claims.platform.chip_id, Some(pki.chip_id()));
    // Tampering with a simulated report fails exactly like with a real one.
    let mut bad = report.clone();
    bad[0x90] ^= 1;
    assert_eq!(
        verifier
            .verify(&bad, &vcek, pki.chain_pem().as_bytes(), now())
            .unwrap_err(),
        attest::snp::SnpError::BadSignature
    );
}

#[test]
fn simulated_quotes_parse_like_hardware_quotes() {
    let pki = intel();
    let q = attest::dcap::Quote::parse(
        &pki.sgx_quote(&SgxParams {
            isv_svn: 7,
            ..SgxParams::default()
        })
        .unwrap(),
    )
    .unwrap();
    assert_eq!((q.header.version, q.header.tee_type), (3, 0));
    let q = attest::dcap::Quote::parse(&pki.tdx_quote(&TdxParams::default()).unwrap()).unwrap();
    assert_eq!((q.header.version, q.header.tee_type), (4, 0x81));
    assert_eq!(q.certification.cert_data_type, 5);
}

#[test]
fn the_simulated_attester_produces_verifiable_evidence() {
    use attest::attester::{Attester, AttesterKind, SimulatedAttester};

    for tee in [TeeKind::Sgx, TeeKind::Tdx, TeeKind::Snp] {
        let attester = SimulatedAttester::new(tee, now()).unwrap();
        assert_eq!(
            (attester.kind(), attester.tee()),
            (AttesterKind::Simulated, tee)
        );
        let evidence = attester.evidence(&[0x42; 64]).unwrap();
        let inputs = evidence.verification_inputs();
        let anchor = TrustAnchor::simulation(attester.anchor_pem().as_bytes()).unwrap();
        let (_, claims) = Verifiers::with_anchor(anchor)
            .verify(&evidence.bytes, &inputs, OffsetDateTime::now_utc())
            .unwrap();
        assert_eq!(claims.report_data, [0x42; 64], "{tee}");
        assert!(claims.simulated);
    }
}

#[test]
fn simulated_azure_vtpm_evidence_binds_its_nonce_exactly() {
    use attest::attester::{Attester, SimulatedAttester};
    use attest::evidence::Inputs;

    for tee in [TeeKind::AzSnpVtpm, TeeKind::AzTdxVtpm] {
        let attester = SimulatedAttester::new(tee, now()).unwrap();
        let nonce = [0x5a; 48];
        let evidence = attester.evidence_for(&nonce).unwrap();
        assert_eq!(evidence.tee, tee);
        // What the evidence does not carry: the AMD chain, or the Intel collateral.
        let base = match (attester.amd(), attester.intel()) {
            (Some(amd), _) => Inputs {
                chain: Some(amd.chain_pem().into_bytes()),
                ..Inputs::default()
            },
            (None, Some(intel)) => {
                let collateral = intel
                    .collateral(true, TcbStatus::UpToDate, OffsetDateTime::now_utc())
                    .unwrap()
                    .to_combined_json()
                    .unwrap();
                Inputs {
                    collateral: vec![("collateral.json".into(), collateral.into_bytes())],
                    ..Inputs::default()
                }
            }
            (None, None) => unreachable!(),
        };
        let anchor = TrustAnchor::simulation(attester.anchor_pem().as_bytes()).unwrap();
        let verifiers = Verifiers::with_anchor(anchor);
        let inputs = |nonce: &[u8]| Inputs {
            nonce: Some(nonce.to_vec()),
            ..base.clone()
        };
        let (_, claims) = verifiers
            .verify(&evidence.bytes, &inputs(&nonce), OffsetDateTime::now_utc())
            .unwrap();
        assert_eq!(claims.tee, tee);
        assert!(claims.simulated);
        let vtpm = claims.vtpm.unwrap();
        assert_eq!(vtpm.nonce, nonce);
        assert_eq!(vtpm.pcrs.len(), 24);

        // The nonce is exact: the zero-padded report data is another nonce.
        let mut padded = [0u8; 64];
        padded[..48].copy_from_slice(&nonce);
        let err = verifiers
            .verify(&evidence.bytes, &inputs(&padded), OffsetDateTime::now_utc())
            .unwrap_err();
        assert!(err.to_string().contains("nonce"), "{tee}: {err}");

        // Another VM's TPM quote does not verify under this VM's vTPM key.
        let mut json: serde_json::Value = serde_json::from_slice(&evidence.bytes).unwrap();
        let other = attester.evidence_for(&nonce).unwrap();
        let other: serde_json::Value = serde_json::from_slice(&other.bytes).unwrap();
        json["tpm_quote"] = other["tpm_quote"].clone();
        let err = verifiers
            .verify(
                json.to_string().as_bytes(),
                &inputs(&nonce),
                OffsetDateTime::now_utc(),
            )
            .unwrap_err();
        assert!(err.to_string().contains("HCLAkPub"), "{tee}: {err}");
    }
}

#[test]
fn a_saved_platform_is_shared_and_its_knobs_reach_the_claims() {
    use attest::attester::{Attester, SimMeasurements, SimulatedAttester};
    use attest::sim::SimPlatform;

    let dir = std::env::temp_dir().join(format!("cloister-sim-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let first = SimPlatform::open(&dir, now()).unwrap();
    let second = SimPlatform::open(&dir, now()).unwrap();
    assert_eq!(first.intel().root_pem(), second.intel().root_pem());
    assert_eq!(*first.sealing_seed(), *second.sealing_seed());

    let mut measurements = SimMeasurements::default();
    measurements.sgx.mr_enclave = [7; 32];
    let attester = SimulatedAttester::on_platform(TeeKind::Sgx, &first, now())
        .unwrap()
        .with_measurements(measurements)
        .with_tcb(TcbStatus::OutOfDate);
    let evidence = attester.evidence(&[1; 64]).unwrap();
    let (dcap, snp) = second.anchors(now()).unwrap();
    let (_, claims) = Verifiers::with_anchors(dcap, snp)
        .verify(
            &evidence.bytes,
            &evidence.verification_inputs(),
            OffsetDateTime::now_utc(),
        )
        .unwrap();
    let attest::Measurements::Sgx(sgx) = &claims.measurements else {
        panic!("not SGX claims: {claims:?}");
    };
    assert_eq!(sgx.mr_enclave, [7; 32]);
    assert_eq!(claims.tcb_status, Some(TcbStatus::OutOfDate));
    // Another platform's root does not verify this one's evidence.
    let other = SimPlatform::open(&dir.join("other"), now()).unwrap();
    let (dcap, snp) = other.anchors(now()).unwrap();
    assert!(
        Verifiers::with_anchors(dcap, snp)
            .verify(
                &evidence.bytes,
                &evidence.verification_inputs(),
                OffsetDateTime::now_utc()
            )
            .is_err()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn certificate_tables_round_trip_and_reject_garbage() {
    use attest::snp::cert_table::{self, CertKind};
    let table = cert_table::build(&[(CertKind::Vcek, b"vcek"), (CertKind::Ark, b"ark!")]);
    let parsed = cert_table::parse(&table).unwrap();
    assert_eq!(
        parsed,
        vec![
            (CertKind::Vcek, b"vcek".to_vec()),
            (CertKind::Ark, b"ark!".to_vec())
        ]
    );
    for len in 0..table.len() {
        let _ = cert_table::parse(&table[..len]);
    }
    assert!(cert_table::parse(&[1; 24]).is_err());
}
