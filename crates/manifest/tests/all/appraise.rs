use attest::claims::{Measurements, Platform, Rtmr, SgxMeasurements, TdxMeasurements};
use attest::{Claims, TcbStatus, TeeKind};
use manifest::{Hex, Manifest, Package};

fn sgx_claims() -> Claims {
    Claims {
        tee: TeeKind::Sgx,
        simulated: false,
        debug: false,
        report_data: [0; 64],
        tcb_status: Some(TcbStatus::UpToDate),
        advisory_ids: vec![],
        tcb_date: None,
        measurements: Measurements::Sgx(SgxMeasurements {
            mr_enclave: [0xaa; 32],
            mr_signer: [0xbb; 32],
            isv_prod_id: 7,
            isv_svn: 3,
            cpu_svn: [0; 16],
            misc_select: 0,
            attributes: [0; 16],
            config_id: [0; 64],
            config_svn: 0,
            isv_ext_prod_id: [0; 16],
            isv_family_id: [0; 16],
        }),
        platform: Platform::default(),
        vtpm: None,
    }
}

fn package(json: &str) -> Package {
    let doc = format!(r#"{{"packages": {{"p": {json}}}}}"#);
    let mut m: Manifest = Manifest::parse(doc.as_bytes()).unwrap().manifest;
    m.packages.remove("p").unwrap()
}

fn fields(result: Result<(), Vec<manifest::Mismatch>>) -> Vec<&'static str> {
    result
        .err()
        .unwrap_or_default()
        .iter()
        .map(|m| m.field)
        .collect()
}

const AA: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const BB: &str = "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";

#[test]
fn matching_sgx_claims_pass() {
    let claims = sgx_claims();
    package(&format!(r#"{{"unique_id": "{AA}"}}"#))
        .appraise(&claims, false)
        .unwrap();
    package(&format!(
        r#"{{"signer_id": "{BB}", "product_id": 7, "security_version": 3}}"#
    ))
    .appraise(&claims, false)
    .unwrap();
}

#[test]
fn each_difference_names_its_field() {
    let pkg = package(&format!(r#"{{"unique_id": "{BB}"}}"#));
    let err = pkg.appraise(&sgx_claims(), false).unwrap_err();
    assert_eq!(err.len(), 1);
    assert_eq!(
        err[0].to_string(),
        format!("MRENCLAVE: expected {}, got {AA}", BB.to_lowercase())
    );

    let mut debug = sgx_claims();
    debug.debug = true;
    assert_eq!(
        fields(package(&format!(r#"{{"unique_id": "{AA}"}}"#)).appraise(&debug, false)),
        ["debug"]
    );

    let mut outdated = sgx_claims();
    outdated.tcb_status = Some(TcbStatus::OutOfDate);
    assert_eq!(
        fields(package(&format!(r#"{{"unique_id": "{AA}"}}"#)).appraise(&outdated, false)),
        ["TCB status"]
    );
    let accepting = package(&format!(
        r#"{{"unique_id": "{AA}", "accepted_tcb_statuses": ["OutOfDate"]}}"#
    ));
    accepting.appraise(&outdated, false).unwrap();

    let triple = package(&format!(
        r#"{{"signer_id": "{BB}", "product_id": 8, "security_version": 4}}"#
    ));
    let err = triple.appraise(&sgx_claims(), false).unwrap_err();
    assert_eq!(
        err.iter().map(|m| m.field).collect::<Vec<_>>(),
        ["ISVPRODID", "ISVSVN"]
    );
    assert_eq!(err[1].to_string(), "ISVSVN: expected at least 4, got 3");
}

#[test]
fn all_mismatches_are_returned_together() {
    let mut claims = sgx_claims();
    claims.debug = true;
    claims.tcb_status = Some(TcbStatus::SWHardeningNeeded);
    claims.advisory_ids = vec!["INTEL-SA-00615".into(), "INTEL-SA-00657".into()];
    let pkg = package(&format!(
        r#"{{"unique_id": "{BB}", "signer_id": "{AA}", "accepted_advisories": ["INTEL-SA-00615"]}}"#
    ));
    assert_eq!(
        fields(pkg.appraise(&claims, false)),
        ["debug", "advisory", "MRENCLAVE", "MRSIGNER"]
    );
    // An empty advisory list accepts all of them (MarbleRun).
    let any = package(&format!(
        r#"{{"unique_id": "{AA}", "debug": true, "accepted_advisories": []}}"#
    ));
    any.appraise(&claims, false).unwrap();
}

#[test]
fn simulated_claims_need_simulation_enabled() {
    let mut sim = sgx_claims();
    sim.simulated = true;
    let hw = package(&format!(r#"{{"unique_id": "{AA}"}}"#));
    assert_eq!(fields(hw.appraise(&sim, false)), ["simulation"]);
    hw.appraise(&sim, true).unwrap();

    let sim_pkg = package(r#"{"tee": "simulation"}"#);
    sim_pkg.appraise(&sim, true).unwrap();
    assert_eq!(fields(sim_pkg.appraise(&sim, false)), ["simulation", "TEE"]);
    assert_eq!(fields(sim_pkg.appraise(&sgx_claims(), true)), ["TEE"]);
}

#[test]
fn tdx_measurements_and_tee_kind() {
    let mut claims = sgx_claims();
    claims.tee = TeeKind::Tdx;
    claims.measurements = Measurements::Tdx(Box::new(TdxMeasurements {
        mr_td: [1; 48],
        rtmr: [Rtmr([2; 48]), Rtmr([3; 48]), Rtmr([4; 48]), Rtmr([5; 48])],
        mr_config_id: [0; 48],
        mr_owner: [0; 48],
        mr_owner_config: [0; 48],
        td_attributes: [0; 8],
        xfam: [0xe7, 0x18, 6, 0, 0, 0, 0, 0],
        tee_tcb_svn: [3; 16],
        mr_seam: [0; 48],
        mr_signer_seam: [0; 48],
        seam_attributes: [0; 8],
        tee_tcb_svn2: None,
        mr_service_td: None,
        sept_ve_disable: true,
    }));
    let mut pkg = Package::default();
    pkg.tee = manifest::PackageTee::Tdx;
    pkg.mr_td = Some(Hex([1; 48]));
    pkg.rtmrs = Some([None, Some(Hex([3; 48])), Some(Hex([9; 48])), None]);
    pkg.min_tee_tcb_svn = Some(Hex([4; 16]));
    assert_eq!(
        fields(pkg.appraise(&claims, false)),
        ["RTMR2", "TEE_TCB_SVN"]
    );
    // The same claims never satisfy an SGX package.
    assert!(
        fields(package(&format!(r#"{{"unique_id": "{AA}"}}"#)).appraise(&claims, false))
            .contains(&"TEE")
    );
}
