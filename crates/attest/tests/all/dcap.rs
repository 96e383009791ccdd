//! Intel DCAP: every SGX/TDX vector with a published result, and every tampered variant.

use attest::claims::{Measurements, SgxMeasurements, TdxMeasurements};
use attest::dcap::{Collateral, DcapError, DcapVerifier, Quote};
use attest::policy::PolicyViolation;
use attest::x509::CertError;
use attest::{Claims, Policy, TcbStatus, TrustAnchor, decode_input};
use time::Duration;

use crate::support::{at, flip, read};

/// One published vector: quote, collateral files, time, expected status and advisories.
#[derive(Clone, Copy)]
struct Vector {
    quote: &'static str,
    collateral: &'static str,
    now: &'static str,
    status: TcbStatus,
    advisories: &'static [&'static str],
    /// Start and end of the collateral window (for the time tests).
    window: (&'static str, &'static str),
}

const ADVISORIES_960: &[&str] = &["INTEL-SA-00960", "INTEL-SA-00982", "INTEL-SA-00986"];

const SGX_PHALA: Vector = Vector {
    quote: "sgx/phala_sgx_quote.bin",
    collateral: "sgx/phala_sgx_quote_collateral.json",
    now: "2025-07-01T00:00:00Z",
    status: TcbStatus::ConfigurationAndSWHardeningNeeded,
    advisories: &["INTEL-SA-00289", "INTEL-SA-00615"],
    window: ("2025-06-19T10:56:11Z", "2025-07-19T10:01:18Z"),
};
const TDX_PHALA: Vector = Vector {
    quote: "tdx/phala_tdx_quote.bin",
    collateral: "tdx/phala_tdx_quote_collateral.json",
    now: "2025-07-01T00:00:00Z",
    status: TcbStatus::UpToDate,
    advisories: &[],
    window: ("2025-06-19T10:32:27Z", "2025-07-19T10:00:35Z"),
};
const TDX_GOTDX_V5: Vector = Vector {
    quote: "tdx/gotdx_quote_v5_sample.bin",
    collateral: "tdx/phala_tdx_quote_outdated_collateral.json",
    now: "2026-03-01T00:00:00Z",
    status: TcbStatus::UpToDate,
    advisories: &[],
    window: ("2026-02-18T10:58:51Z", "2026-03-20T10:41:15Z"),
};
const TDX_DCAPRS_02: Vector = Vector {
    quote: "tdx/dcaprs_quote_tdx_00806f050000.bin",
    collateral: "tdx/collateral_00806f050000_2025-02/collateral.json",
    now: "2025-03-01T00:00:00Z",
    status: TcbStatus::OutOfDate,
    advisories: ADVISORIES_960,
    window: ("2025-02-13T03:50:41Z", "2025-03-15T03:39:00Z"),
};
const TDX_DCAPRS_10: Vector = Vector {
    collateral: "tdx/collateral_00806f050000_2025-10/collateral.json",
    now: "2025-11-01T00:00:00Z",
    window: ("2025-10-19T17:48:50Z", "2025-11-12T10:45:32Z"),
    ..TDX_DCAPRS_02
};
const TDX_COS113_02: Vector = Vector {
    quote: "tdx/gotdx_cos-113-tdx-quote.bin",
    status: TcbStatus::UpToDate,
    advisories: &[],
    ..TDX_DCAPRS_02
};
const TDX_COS113_10: Vector = Vector {
    quote: "tdx/gotdx_cos-113-tdx-quote.bin",
    status: TcbStatus::UpToDate,
    advisories: &[],
    ..TDX_DCAPRS_10
};
const TDX_NEAR: Vector = Vector {
    quote: "tdx/phala_near_quote.hex",
    collateral: "tdx/phala_near_quote_collateral.json",
    now: "2025-09-15T00:00:00Z",
    status: TcbStatus::UpToDate,
    advisories: &[],
    window: ("2025-09-02T07:41:59Z", "2025-10-02T07:03:51Z"),
};
const TDX_TRUSTEE4: Vector = Vector {
    quote: "tdx/trustee_tdx_quote_4.bin",
    collateral: "tdx/collateral_50806f000000_2023-06/collateral.json",
    now: "2023-07-01T00:00:00Z",
    status: TcbStatus::UpToDate,
    advisories: &[],
    window: ("2023-06-18T08:42:58Z", "2023-07-08T07:24:59Z"),
};
const TDX_AZURE: Vector = Vector {
    quote: "azure/az-tdx-v1.td_quote.bin",
    collateral: "tdx/collateral_00806f050000_2025-02/collateral.json",
    now: "2025-03-01T00:00:00Z",
    status: TcbStatus::OutOfDate,
    advisories: ADVISORIES_960,
    window: ("2025-02-13T03:50:41Z", "2025-03-15T03:39:00Z"),
};

/// Every vector that verifies.
const VERIFYING: [Vector; 10] = [
    SGX_PHALA,
    TDX_PHALA,
    TDX_GOTDX_V5,
    TDX_DCAPRS_02,
    TDX_DCAPRS_10,
    TDX_COS113_02,
    TDX_COS113_10,
    TDX_NEAR,
    TDX_TRUSTEE4,
    TDX_AZURE,
];

fn quote(v: &Vector) -> Vec<u8> {
    decode_input(&read(v.quote)).0
}

fn collateral(v: &Vector) -> Collateral {
    Collateral::from_combined_json(&read(v.collateral)).unwrap()
}

fn verify_at(
    quote: &[u8],
    coll: &Collateral,
    now: time::OffsetDateTime,
) -> Result<Claims, DcapError> {
    DcapVerifier::uncached(TrustAnchor::intel()).verify(quote, coll, now)
}

fn verify(v: &Vector) -> Result<Claims, DcapError> {
    verify_at(&quote(v), &collateral(v), at(v.now))
}

fn tdx(c: &Claims) -> &TdxMeasurements {
    match &c.measurements {
        Measurements::Tdx(m) => m,
        other => panic!("not TDX: {other:?}"),
    }
}

fn sgx(c: &Claims) -> &SgxMeasurements {
    match &c.measurements {
        Measurements::Sgx(m) => m,
        other => panic!("not SGX: {other:?}"),
    }
}

#[test]
fn every_published_vector_has_its_status_and_advisories() {
    for v in &VERIFYING {
        let c = verify(v).unwrap_or_else(|e| panic!("{} with {}: {e}", v.quote, v.collateral));
        assert_eq!(c.tcb_status, Some(v.status), "{}", v.quote);
        let mut advisories = c.advisory_ids.clone();
        advisories.sort();
        assert_eq!(advisories, v.advisories, "{}", v.quote);
        assert!(!c.simulated);
    }
}

#[test]
fn sgx_phala_measurements() {
    let c = verify(&SGX_PHALA).unwrap();
    let m = sgx(&c);
    assert_eq!(
        hex::encode(m.mr_enclave),
        "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
    );
    assert_eq!(
        hex::encode(m.mr_signer),
        "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"
    );
    assert_eq!((m.isv_prod_id, m.isv_svn), (0, 0));
    assert_eq!(hex::encode(m.cpu_svn), "0b0b1a18ffff04000000000000000000");
    assert_eq!(
        hex::encode(m.attributes),
        "0500000000000000e700000000000000"
    );
    assert_eq!(&c.report_data[..13], b"Hello, world!");
    assert!(c.report_data[13..].iter().all(|&b| b == 0));
    assert!(!c.debug);
    assert_eq!(
        c.platform.fmspc.map(hex::encode).as_deref(),
        Some("00a067110000")
    );
    assert_eq!(
        c.platform.pck_cpu_svn.map(hex::encode).as_deref(),
        Some("0b0b0202ff0100000000000000000000")
    );
    assert_eq!(c.platform.pce_svn, Some(13));
    assert_eq!(c.platform.qe_tcb_status, Some(TcbStatus::UpToDate));
    assert_eq!(c.tcb_date.as_deref(), Some("2024-03-13T00:00:00Z"));
    Policy::default().check(&c).unwrap();
}

#[test]
fn tdx_measurements() {
    let c = verify(&TDX_PHALA).unwrap();
    let m = tdx(&c);
    assert_eq!(
        hex::encode(m.mr_td),
        "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"
    );
    assert_eq!(
        hex::encode(m.rtmr[0].0),
        "44c0197b39157fdd7a4dcc44767f9d6b0bb3977c7a8e347b8492f827fe9d9e5c48aca29b220b80b6a540cf994b9bc9c0"
    );
    assert_eq!(
        hex::encode(m.rtmr[2].0),
        "d833feef2cd945148aa38ead2c53e9b7f138190aaaebfc551dccd829fc207aa3ba80b70870d7330733642e01d48c3132"
    );
    assert_eq!(m.rtmr[3].0, [0; 48]);
    assert_eq!(
        hex::encode(m.tee_tcb_svn),
        "06010300000000000000000000000000"
    );
    assert_eq!(hex::encode(m.td_attributes), "0000001000000000");
    assert_eq!(hex::encode(m.xfam), "e702060000000000");
    assert!(m.sept_ve_disable && !c.debug);
    assert_eq!(
        hex::encode(c.report_data),
        "9a9d48e7f6799642d3d1b34e1e5e1742d4bb02dd6ddd551862c1211d35c304f9eca3efdbb481601c163cf52493d6e44aed55d51ec39b7e518fadb92c2b523f20"
    );
    assert_eq!(
        c.platform.fmspc.map(hex::encode).as_deref(),
        Some("b0c06f000000")
    );
    Policy::default().check(&c).unwrap();

    let c = verify(&TDX_GOTDX_V5).unwrap();
    let m = tdx(&c);
    assert_eq!(
        hex::encode(m.mr_td),
        "7348651a34b2d2d3462822e3a750ec6110125f36757c78480bbfc69cc0d21fb001a1ced3ee19747dda8f750c3bc8f876"
    );
    assert_eq!(
        hex::encode(m.tee_tcb_svn2.unwrap()),
        "0d010400000000000000000000000000"
    );
    assert_eq!(m.mr_service_td, Some([0; 48]));
    assert_eq!(c.platform.pce_svn, Some(13));

    let c = verify(&TDX_NEAR).unwrap();
    assert_eq!(
        hex::encode(tdx(&c).rtmr[3].0),
        "287a9242edd8c8429913ec66f44af611b820cf9b574f303a6caeddeb4c9826311aef6e518aaf4a17f55a81154592b7b3"
    );
    assert_eq!(
        hex::encode(tdx(&c).mr_config_id),
        "0112a20aed7d6c68601e9f6e108a93b4199ae7231684307ffc4833c9cd08d45de7000000000000000000000000000000"
    );

    let c = verify(&TDX_COS113_02).unwrap();
    assert_eq!(
        hex::encode(tdx(&c).mr_td),
        "dae67181d3d65e073ad8f95b7907d5e927bfe9761c9ff3e9b89734a45d8954dba41394c7717cb2735396c1d04231f94a"
    );
    assert_eq!(
        c.platform.pck_cpu_svn.map(hex::encode).as_deref(),
        Some("07070202030100030000000000000000")
    );
    let c = verify(&TDX_DCAPRS_02).unwrap();
    assert_eq!(
        c.platform.pck_cpu_svn.map(hex::encode).as_deref(),
        Some("06060202030100030000000000000000")
    );
    assert_eq!(c.tcb_date.as_deref(), Some("2023-08-09T00:00:00Z"));
}

#[test]
fn outdated_tdx_quote_has_no_matching_tcb_level() {
    let v = Vector {
        quote: "tdx/phala_tdx_quote_outdated.bin",
        collateral: "tdx/phala_tdx_quote_outdated_collateral.json",
        now: "2026-03-01T00:00:00Z",
        ..TDX_GOTDX_V5
    };
    assert_eq!(verify(&v).unwrap_err(), DcapError::TcbLevelNotFound);
    assert!(
        DcapError::TcbLevelNotFound
            .to_string()
            .contains("No matching TCB level found")
    );
}

#[test]
fn debug_td_is_a_policy_decision() {
    let c = verify(&TDX_TRUSTEE4).unwrap();
    assert!(c.debug);
    assert_eq!(Policy::default().check(&c), Err(PolicyViolation::Debug));
    let allow = Policy {
        allow_debug: true,
        ..Policy::default()
    };
    allow.check(&c).unwrap();
    assert_eq!(
        hex::encode(tdx(&c).mr_td),
        "705ee9381b8633a9fbe532b52345e8433343d2868959f57889d84ca377c395b689cac1599ccea1b7d420483a9ce5f031"
    );
    assert_eq!(c.tcb_date.as_deref(), Some("2023-02-15T00:00:00Z"));
}

#[test]
fn debug_sgx_enclave_is_rejected_by_default_policy() {
    let v = Vector {
        quote: "sgx/trustee_occlum_quote.bin",
        collateral: "sgx/collateral_00606a000000_2025-08/collateral.json",
        now: "2025-09-01T00:00:00Z",
        ..SGX_PHALA
    };
    let c = verify(&v).unwrap();
    assert!(c.debug);
    assert_eq!(
        hex::encode(sgx(&c).mr_enclave),
        "8f173e4613ff05c52aaf04162d234edae8c9977eae47eb2299ae16a553011c68"
    );
    assert_eq!(Policy::default().check(&c), Err(PolicyViolation::Debug));
}

#[test]
fn azure_td_needs_the_sept_ve_policy_relaxed() {
    let c = verify(&TDX_AZURE).unwrap();
    assert!(!tdx(&c).sept_ve_disable);
    assert_eq!(
        Policy::default().check(&c),
        Err(PolicyViolation::SeptVeDisable)
    );
    let azure = Policy {
        require_sept_ve_disable: false,
        ..Policy::default()
    };
    azure.check(&c).unwrap();
}

#[test]
fn verification_outside_the_collateral_window_is_refused() {
    for v in &VERIFYING {
        let (q, coll) = (quote(v), collateral(v));
        let late = at(v.window.1) + Duration::days(1);
        let err = verify_at(&q, &coll, late).unwrap_err();
        assert!(
            matches!(
                err,
                DcapError::CollateralExpired { .. }
                    | DcapError::PckChain(CertError::CrlExpired { .. })
                    | DcapError::TcbSigningChain(CertError::CrlExpired { .. })
            ),
            "{} late: {err}",
            v.quote
        );
        let early = at(v.window.0) - Duration::days(1);
        let err = verify_at(&q, &coll, early).unwrap_err();
        assert!(
            matches!(
                err,
                DcapError::CollateralNotYetValid { .. }
                    | DcapError::TcbSigningChain(CertError::CrlNotYetValid { .. })
                    | DcapError::PckChain(
                        CertError::CrlNotYetValid { .. } | CertError::NotYetValid { .. }
                    )
            ),
            "{} early: {err}",
            v.quote
        );
    }
}

/// Offsets of REPORTDATA's last byte, the quote signature and the QE report, per layout.
fn tamper_offsets(q: &Quote) -> (usize, usize, usize) {
    let shift = q.signed.len() - if q.is_tdx() { 632 } else { 432 };
    if q.is_tdx() {
        (631 + shift, 646 + shift, 844 + shift)
    } else {
        (431, 446, 638)
    }
}

#[test]
fn flipped_bytes_are_rejected_with_the_right_error() {
    for v in &VERIFYING {
        let (q, coll, now) = (quote(v), collateral(v), at(v.now));
        let (report_data, signature, qe_report) = tamper_offsets(&Quote::parse(&q).unwrap());
        assert_eq!(
            verify_at(&flip(&q, report_data), &coll, now).unwrap_err(),
            DcapError::QuoteSignature,
            "{}",
            v.quote
        );
        assert_eq!(
            verify_at(&flip(&q, signature), &coll, now).unwrap_err(),
            DcapError::QuoteSignature,
            "{}",
            v.quote
        );
        assert_eq!(
            verify_at(&flip(&q, qe_report), &coll, now).unwrap_err(),
            DcapError::QeReportSignature,
            "{}",
            v.quote
        );
    }
}

#[test]
fn tampered_tcb_info_is_rejected() {
    for v in &VERIFYING {
        let mut coll = collateral(v);
        let tcb = coll.tcb_info.as_mut().unwrap();
        let pos = tcb.text.find("\"tcbEvaluationDataNumber\":").unwrap() + 26;
        let digit = tcb.text.as_bytes()[pos];
        let other = if digit == b'1' { "2" } else { "1" };
        tcb.text.replace_range(pos..pos + 1, other);
        let err = verify_at(&quote(v), &coll, at(v.now)).unwrap_err();
        assert_eq!(
            err,
            DcapError::CollateralSignature { what: "TCB info" },
            "{}",
            v.quote
        );
        let mut coll = collateral(v);
        coll.qe_identity.as_mut().unwrap().signature[5] ^= 1;
        let err = verify_at(&quote(v), &coll, at(v.now)).unwrap_err();
        assert_eq!(
            err,
            DcapError::CollateralSignature {
                what: "QE identity"
            },
            "{}",
            v.quote
        );
    }
}

#[test]
fn wrong_chains_and_anchors_are_rejected() {
    // The 2018-2025 TCB-signing certificate expired before the 2025-07 collateral.
    let v = TDX_PHALA;
    let mut coll = collateral(&v);
    coll.tcb_signing_chains =
        attest::x509::parse_pem_chain(&read("intel/tcb_signing_chain_2018-2025.pem"))
            .map(|c| vec![c])
            .unwrap();
    let err = verify_at(&quote(&v), &coll, at(v.now)).unwrap_err();
    assert!(
        matches!(err, DcapError::TcbSigningChain(CertError::Expired { .. })),
        "{err}"
    );
    // Both generations supplied: the one valid at `now` is used.
    let mut both = collateral(&v);
    both.add_file("old", &read("intel/tcb_signing_chain_2018-2025.pem"))
        .unwrap();
    both.add_file("new", &read("intel/tcb_signing_chain_2025-2032.pem"))
        .unwrap();
    verify_at(&quote(&v), &both, at(v.now)).unwrap();
    // A root that is not Intel's.
    let amd =
        DcapVerifier::uncached(TrustAnchor::amd()).verify(&quote(&v), &collateral(&v), at(v.now));
    assert!(matches!(
        amd.unwrap_err(),
        DcapError::TcbSigningChain(CertError::UntrustedRoot { .. })
    ));
    // SGX collateral for a TDX quote.
    let err = verify_at(&quote(&v), &collateral(&SGX_PHALA), at(v.now)).unwrap_err();
    assert!(
        matches!(err, DcapError::WrongCollateralKind { .. }),
        "{err}"
    );
    // TDX collateral of another FMSPC.
    let err = verify_at(&quote(&v), &collateral(&TDX_NEAR), at(TDX_NEAR.now)).unwrap_err();
    assert!(matches!(err, DcapError::FmspcMismatch { .. }), "{err}");
}

#[test]
fn missing_collateral_says_what_to_add() {
    let mut coll = collateral(&SGX_PHALA);
    coll.tcb_info = None;
    let err = verify_at(&quote(&SGX_PHALA), &coll, at(SGX_PHALA.now)).unwrap_err();
    assert!(matches!(
        err,
        DcapError::CollateralMissing {
            what: "TCB info",
            ..
        }
    ));
    let mut coll = collateral(&SGX_PHALA);
    coll.crls.retain(|c| !c.issuer().contains("PCK"));
    let err = verify_at(&quote(&SGX_PHALA), &coll, at(SGX_PHALA.now)).unwrap_err();
    assert!(
        matches!(err, DcapError::PckChain(CertError::CrlMissing { .. })),
        "{err}"
    );
}

#[test]
fn pcs_files_give_the_same_verdict_as_the_combined_json() {
    for dir in [
        "tdx/collateral_00806f050000_2025-02",
        "tdx/collateral_50806f000000_2023-06",
    ] {
        let (tcb_chain, root_crl) = if dir.contains("2023") {
            (
                "intel/tcb_signing_chain_2018-2025.pem",
                "intel/root_ca_crl_2023-04-03.der",
            )
        } else {
            (
                "intel/tcb_signing_chain_2018-2025.pem",
                "intel/root_ca_crl_2024-03-20.der",
            )
        };
        let names = [
            format!("{dir}/tcb_info_response.json"),
            format!("{dir}/qe_identity_response.json"),
            format!("{dir}/pck_platform_crl.der"),
            root_crl.to_string(),
            tcb_chain.to_string(),
        ];
        let files: Vec<(String, Vec<u8>)> = names.iter().map(|n| (n.clone(), read(n))).collect();
        let from_files = Collateral::from_files(&files).unwrap();
        let v = if dir.contains("2023") {
            TDX_TRUSTEE4
        } else {
            TDX_DCAPRS_02
        };
        let a = verify_at(&quote(&v), &from_files, at(v.now)).unwrap();
        let b = verify(&v).unwrap();
        assert_eq!(a, b, "{dir}");
    }
}

#[test]
fn combined_json_round_trips() {
    let coll = collateral(&TDX_PHALA);
    let again =
        Collateral::from_combined_json(coll.to_combined_json().unwrap().as_bytes()).unwrap();
    assert_eq!(again.digest(), coll.digest());
    verify_at(&quote(&TDX_PHALA), &again, at(TDX_PHALA.now)).unwrap();
}

#[test]
fn incomplete_combined_json_names_the_missing_field() {
    let mut json: serde_json::Value = serde_json::from_slice(&read(TDX_PHALA.collateral)).unwrap();
    json.as_object_mut().unwrap().remove("root_ca_crl");
    let err = Collateral::from_combined_json(json.to_string().as_bytes()).unwrap_err();
    assert!(
        matches!(err, DcapError::CollateralMalformed { ref reason, .. } if reason.contains("`root_ca_crl`")),
        "{err}"
    );
    let mut pcs: serde_json::Value = serde_json::from_slice(&read(
        "tdx/collateral_00806f050000_2025-02/tcb_info_response.json",
    ))
    .unwrap();
    pcs.as_object_mut().unwrap().remove("signature");
    let err = Collateral::from_files(&[("tcb_info.json", pcs.to_string())]).unwrap_err();
    assert!(
        matches!(err, DcapError::CollateralMalformed { ref reason, .. } if reason.contains("`signature`")),
        "{err}"
    );
}

#[test]
fn the_cache_gives_the_same_answers_and_still_checks_time_and_signatures() {
    let verifier = DcapVerifier::new(TrustAnchor::intel());
    for v in &VERIFYING {
        let (q, coll) = (quote(v), collateral(v));
        let first = verifier.verify(&q, &coll, at(v.now)).unwrap();
        let second = verifier.verify(&q, &coll, at(v.now)).unwrap();
        assert_eq!(first, second);
        let late = at(v.window.1) + Duration::days(1);
        assert!(verifier.verify(&q, &coll, late).is_err(), "{}", v.quote);
        let (rd, _, qe) = tamper_offsets(&Quote::parse(&q).unwrap());
        assert_eq!(
            verifier
                .verify(&flip(&q, rd), &coll, at(v.now))
                .unwrap_err(),
            DcapError::QuoteSignature
        );
        assert_eq!(
            verifier
                .verify(&flip(&q, qe), &coll, at(v.now))
                .unwrap_err(),
            DcapError::QeReportSignature
        );
    }
}

#[test]
fn malformed_quotes_are_errors_never_panics() {
    for v in [SGX_PHALA, TDX_PHALA, TDX_GOTDX_V5] {
        let q = quote(&v);
        let len = Quote::parse(&q).unwrap().signed.len() + 1200;
        for cut in 0..len.min(q.len()) {
            assert!(Quote::parse(&q[..cut]).is_err(), "{} cut at {cut}", v.quote);
        }
        for offset in (0..q.len()).step_by(7) {
            let _ = Quote::parse(&flip(&q, offset));
        }
    }
    // Bytes after the declared end are outside every signature: counted, and ignored.
    let mut trailing = quote(&TDX_PHALA);
    let padding = Quote::parse(&trailing).unwrap().trailing_bytes;
    trailing.extend(b"junk");
    assert_eq!(Quote::parse(&trailing).unwrap().trailing_bytes, padding + 4);
    let c = verify_at(&trailing, &collateral(&TDX_PHALA), at(TDX_PHALA.now)).unwrap();
    assert_eq!(c, verify(&TDX_PHALA).unwrap());
}

#[test]
fn collateral_must_be_signed_by_a_key_directly_under_the_root() {
    // A three-certificate chain (the PCK chain from the quote, ending in Intel's root) is not a
    // TCB-signing chain, whatever its leaf could sign.
    let v = TDX_PHALA;
    let q = Quote::parse(&quote(&v)).unwrap();
    let mut coll = collateral(&v);
    coll.tcb_signing_chains =
        vec![attest::x509::parse_pem_chain(&q.certification.pck_chain_pem).unwrap()];
    let err = verify_at(&quote(&v), &coll, at(v.now)).unwrap_err();
    assert!(
        matches!(
            err,
            DcapError::CollateralMissing {
                what: "TCB signing chain",
                ..
            }
        ),
        "{err}"
    );
}
