//! SEV-SNP: the real vectors with a published result, and every tampered variant.

use attest::claims::{Measurements, SnpMeasurements, SnpTcb};
use attest::policy::PolicyViolation;
use attest::snp::{Report, SnpError, SnpVerifier};
use attest::x509::CertError;
use attest::{Claims, Policy, TrustAnchor, decode_input};

use crate::support::{at, flip, read};

struct Vector {
    report: &'static str,
    vek: &'static str,
    chain: &'static str,
    now: &'static str,
}

const VIRTEE: Vector = Vector {
    report: "snp/virtee_report_milan.hex",
    vek: "snp/virtee_vcek_milan.der",
    chain: "snp/amd_milan_ask_ark.pem",
    now: "2025-01-01T00:00:00Z",
};
const GOSEVGUEST: Vector = Vector {
    report: "snp/gosevguest_attestation.bin",
    vek: "snp/gosevguest_vcek.der",
    chain: "snp/amd_milan_ask_ark.pem",
    now: "2025-01-01T00:00:00Z",
};
const IDBLOCK: Vector = Vector {
    report: "snp/trustee_report_idblock.bin",
    vek: "snp/trustee_vcek.der",
    chain: "snp/amd_milan_ask_ark.pem",
    now: "2025-01-01T00:00:00Z",
};
const GCP_V5: Vector = Vector {
    report: "snp/teekit_gcp_v5_reportdata.bin",
    vek: "snp/teekit_gcp_vcek.pem",
    chain: "snp/amd_milan_ask_ark.pem",
    now: "2026-01-01T00:00:00Z",
};
const GENOA: Vector = Vector {
    report: "snp/oak_genoa_report.bin",
    vek: "snp/oak_genoa_vcek.der",
    chain: "snp/amd_genoa_ask_ark.pem",
    now: "2025-09-01T00:00:00Z",
};
const AZURE_MILAN: Vector = Vector {
    report: "azure/az-snp-v1.snp_report.bin",
    vek: "azure/az-snp-v1.vcek.der",
    chain: "snp/amd_milan_ask_ark.pem",
    now: "2026-01-01T00:00:00Z",
};
const PUBLISHED: [Vector; 6] = [VIRTEE, GOSEVGUEST, IDBLOCK, GCP_V5, GENOA, AZURE_MILAN];

fn report_bytes(v: &Vector) -> Vec<u8> {
    decode_input(&read(v.report)).0
}

fn verify_with(v: &Vector, report: &[u8], now: &str) -> Result<Claims, SnpError> {
    SnpVerifier::new(TrustAnchor::amd()).verify(report, &read(v.vek), &read(v.chain), at(now))
}

fn verify(v: &Vector) -> Result<Claims, SnpError> {
    verify_with(v, &report_bytes(v), v.now)
}

fn snp(c: &Claims) -> &SnpMeasurements {
    match &c.measurements {
        Measurements::Snp(m) => m,
        other => panic!("not SNP: {other:?}"),
    }
}

fn tcb(bootloader: u8, tee: u8, snp: u8, microcode: u8) -> SnpTcb {
    SnpTcb {
        fmc: None,
        bootloader,
        tee,
        snp,
        microcode,
    }
}

#[test]
fn every_published_vector_verifies_with_its_fields() {
    for v in &PUBLISHED {
        let c = verify(v).unwrap_or_else(|e| panic!("{}: {e}", v.report));
        assert!(!c.simulated && c.tcb_status.is_none(), "{}", v.report);
    }
    let c = verify(&VIRTEE).unwrap();
    let m = snp(&c);
    assert_eq!(
        (m.report_version, m.vmpl, m.policy, m.platform_info),
        (2, 0, 0x30000, 1)
    );
    assert_eq!(m.reported_tcb, tcb(3, 0, 8, 115));
    assert_eq!(
        hex::encode(m.measurement),
        "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f"
    );
    assert_eq!(
        hex::encode(c.report_data),
        "d447b55d197491bfe15cf298f9de9986b7a7c4be2468b4f6e2d53b71d7c645810b0f2cdfca0040433be063fc1a8293f0f3f8dae7b79fecb3d1cd82bd6a93ebfd"
    );
    assert_eq!(
        hex::encode(c.platform.chip_id.unwrap()),
        "d49554ec717f4e5b0fe6b143bcf0405bd7ae304727edf46603f2a76aef6a3abc15d7af38db757039029f0efacfd08e244324884738c72b082e2f87a44d541eb6"
    );
    assert_eq!(c.platform.product.as_deref(), Some("Milan"));
    assert!(!c.debug);

    let c = verify(&GOSEVGUEST).unwrap();
    assert_eq!(snp(&c).policy, 0xb0000);
    assert_eq!(snp(&c).reported_tcb, tcb(2, 0, 5, 68));
    assert!(c.debug, "POLICY bit 19 allows debugging");
    assert_eq!(&c.report_data[..6], &[1, 2, 3, 4, 5, 0]);

    let c = verify(&IDBLOCK).unwrap();
    let m = snp(&c);
    assert_eq!((m.guest_svn, m.policy), (4, 0x3001f));
    assert_eq!(hex::encode(m.family_id), "01000000000000000000000000000000");
    assert_eq!(hex::encode(m.image_id), "02000000000000000000000000000000");
    assert_eq!(
        hex::encode(m.id_key_digest),
        "0356215882a825279a85b300b0b742931d113bf7e32dde2e50ffde7ec743ca491ecdd7f336dc28a6e0b2bb57af7a44a3"
    );
    assert_eq!(
        hex::encode(m.measurement),
        "a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f63fd75d98f1ef827c23500644e0e692e6be917f9050d3d38c"
    );
    assert_eq!(c.platform.current_tcb.unwrap().microcode, 206);

    let c = verify(&GCP_V5).unwrap();
    let m = snp(&c);
    assert_eq!(
        (m.report_version, m.vmpl, m.policy, m.platform_info),
        (5, 1, 0x30000, 0x25)
    );
    assert_eq!(m.reported_tcb, tcb(4, 0, 27, 222));
    assert_eq!(
        hex::encode(m.measurement),
        "b747d55452e0b9e9079770a49e397c5e6d9573581e246da7baac4f28b5cdc5b1b6d19251b8ee600fd16a3708f58406f3"
    );
    assert_eq!(
        hex::encode(c.report_data),
        "32fc4f6c1971cbf91566231f8d6153eeb9d093aa94306cb48d39bcc4861a3d395f149876a37bc91332fe493f46294fd135d5b95d363ae96352b8c45f906079f5"
    );

    let c = verify(&GENOA).unwrap();
    assert_eq!(c.platform.product.as_deref(), Some("Genoa"));
    assert_eq!(snp(&c).reported_tcb, tcb(10, 0, 25, 84));
    assert_eq!(
        hex::encode(snp(&c).measurement),
        "c57729018b0a6fb90dc17bb138b0aa35e4401004283ff4a2c24d3739ff3750f52384370e77b7032862a08c440a9bc4dc"
    );

    let c = verify(&AZURE_MILAN).unwrap();
    let m = snp(&c);
    assert_eq!((m.report_version, m.guest_svn, m.policy), (3, 10, 0x3001f));
    assert_eq!(m.reported_tcb, tcb(4, 0, 24, 219));
    assert_eq!(
        hex::encode(m.id_key_digest),
        "942fd93ebde6ea7a96efadeafc60f1c6b3d10e703b1dafd7555b92f7f3d32d0e006767648cba5b102af3d65756af4177"
    );
}

#[test]
fn debug_policy_is_a_policy_decision() {
    let c = verify(&GOSEVGUEST).unwrap();
    assert_eq!(Policy::default().check(&c), Err(PolicyViolation::Debug));
    let allow = Policy {
        allow_debug: true,
        ..Policy::default()
    };
    allow.check(&c).unwrap();
    let vmpl0 = Policy {
        max_vmpl: Some(0),
        ..Policy::default()
    };
    assert!(matches!(
        vmpl0.check(&verify(&GCP_V5).unwrap()),
        Err(PolicyViolation::Vmpl { vmpl: 1, max: 0 })
    ));
}

#[test]
fn flipped_bytes_are_rejected() {
    for v in &PUBLISHED {
        let good = report_bytes(v);
        for offset in [0x90, 0x50, 0x1F0, 0x2A0] {
            let err = verify_with(v, &flip(&good, offset), v.now).unwrap_err();
            assert_eq!(err, SnpError::BadSignature, "{} @{offset:#x}", v.report);
        }
        let err = verify_with(v, &flip(&good, 0x200), v.now).unwrap_err();
        let version = Report::parse(&good).unwrap().version;
        if version >= 5 {
            assert_eq!(err, SnpError::BadSignature, "{}", v.report);
        } else {
            assert_eq!(
                err,
                SnpError::ReservedNotZero { offset: 0x200 },
                "{}",
                v.report
            );
        }
    }
}

#[test]
fn another_chips_vcek_is_rejected() {
    let wrong = Vector {
        vek: "snp/trustee_vcek.der",
        ..VIRTEE
    };
    assert_eq!(verify(&wrong).unwrap_err(), SnpError::BadSignature);
}

#[test]
fn a_genoa_vcek_under_the_milan_chain_is_rejected() {
    let mixed = Vector {
        chain: "snp/amd_milan_ask_ark.pem",
        ..GENOA
    };
    assert!(matches!(
        verify(&mixed).unwrap_err(),
        SnpError::BadChain { .. } | SnpError::Chain(_)
    ));
}

#[test]
fn the_vcek_must_be_valid_at_the_verification_time() {
    // virtee's VCEK is valid from 2023-04-03T19:23:43Z.
    let err = verify_with(&VIRTEE, &report_bytes(&VIRTEE), "2023-04-01T00:00:00Z").unwrap_err();
    assert!(
        matches!(err, SnpError::Chain(CertError::NotYetValid { .. })),
        "{err}"
    );
    let err = verify_with(&VIRTEE, &report_bytes(&VIRTEE), "2031-01-01T00:00:00Z").unwrap_err();
    assert!(
        matches!(err, SnpError::Chain(CertError::Expired { .. })),
        "{err}"
    );
}

#[test]
fn the_cache_still_checks_time() {
    let verifier = SnpVerifier::new(TrustAnchor::amd());
    let (report, vek, chain) = (report_bytes(&VIRTEE), read(VIRTEE.vek), read(VIRTEE.chain));
    verifier
        .verify(&report, &vek, &chain, at(VIRTEE.now))
        .unwrap();
    verifier
        .verify(&report, &vek, &chain, at(VIRTEE.now))
        .unwrap();
    let err = verifier
        .verify(&report, &vek, &chain, at("2031-01-01T00:00:00Z"))
        .unwrap_err();
    assert!(matches!(err, SnpError::Chain(CertError::Expired { .. })));
    assert_eq!(
        verifier
            .verify(&flip(&report, 0x90), &vek, &chain, at(VIRTEE.now))
            .unwrap_err(),
        SnpError::BadSignature
    );
}

#[test]
fn an_intel_anchor_does_not_trust_amd() {
    let err = SnpVerifier::new(TrustAnchor::intel())
        .verify(
            &report_bytes(&VIRTEE),
            &read(VIRTEE.vek),
            &read(VIRTEE.chain),
            at(VIRTEE.now),
        )
        .unwrap_err();
    assert!(matches!(
        err,
        SnpError::Chain(CertError::UntrustedRoot { .. })
    ));
}

#[test]
fn malformed_reports_are_errors_never_panics() {
    let good = report_bytes(&VIRTEE);
    for len in 0..good.len() {
        assert!(Report::parse(&good[..len]).is_err());
    }
    for offset in 0..good.len() {
        let _ = Report::parse(&flip(&good, offset));
    }
    let mut padded = good.clone();
    padded.extend([0u8; 64]);
    Report::parse(&padded).unwrap();
    padded.push(1);
    assert!(Report::parse(&padded).is_err());
}

#[test]
fn coco_snp_json_evidence_verifies_through_the_front_door() {
    use attest::evidence::{Form, Inputs, Verifiers, detect};
    use attest::snp::coco::{self, CertEntry};
    let chain = attest::x509::parse_pem_chain(&read(GENOA.chain)).unwrap();
    let report = Report::parse(&report_bytes(&GENOA)).unwrap();
    let certs = vec![
        CertEntry {
            cert_type: "VCEK".into(),
            data: read(GENOA.vek),
        },
        CertEntry {
            cert_type: "ASK".into(),
            data: chain[0].der().to_vec(),
        },
        CertEntry {
            cert_type: "ARK".into(),
            data: chain[1].der().to_vec(),
        },
    ];
    let json = coco::to_json(&report, attest::snp::Product::Genoa, certs).unwrap();
    assert_eq!(
        coco::parse(json.as_bytes()).unwrap().report,
        report.raw,
        "byte-exact re-encoding"
    );
    let detected = detect(json.as_bytes(), None).unwrap();
    assert_eq!(
        (detected.tee, detected.form),
        (attest::TeeKind::Snp, Form::CocoJson)
    );
    let (_, claims) = Verifiers::production()
        .verify(json.as_bytes(), &Inputs::default(), at(GENOA.now))
        .unwrap();
    assert_eq!(snp(&claims).reported_tcb, tcb(10, 0, 25, 84));
    // A changed measurement in the JSON breaks the signature.
    let tampered = json.replacen("\"measurement\":[197", "\"measurement\":[196", 1);
    assert_ne!(tampered, json);
    assert!(
        Verifiers::production()
            .verify(tampered.as_bytes(), &Inputs::default(), at(GENOA.now))
            .is_err()
    );
}
