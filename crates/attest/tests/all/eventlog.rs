//! CCEL replay against the GCP COS 113 TD quote's RTMRs.

use attest::eventlog::{CcelTable, EventLog};

use crate::support::read;

#[test]
fn ccel_replays_to_the_quote_rtmrs() {
    let log = EventLog::parse(&read("tdx/gotdx_cos-113_ccel_data.bin")).unwrap();
    assert_eq!(log.events.len(), 43);
    let rtmr = log.replay();
    assert_eq!(
        hex::encode(rtmr[0]),
        "3fa2f61f395b7f5feefb4ec2df61297f109ad8abcd6410c1b7df60f21f37b19297fc35e544039c7e1edece752afd17f6"
    );
    assert_eq!(
        hex::encode(rtmr[1]),
        "f62dbc072bd5d3f3438b7b35c39a727f5aea2ffc2473f43723953f530daf62504f0a7944aa62c41a86e8a878c2b122c1"
    );
    assert_eq!(
        hex::encode(rtmr[2]),
        "4969684dc87381fc3b3134176c8d8806eaf0a901859f5f70cfae8d17714b46c10a8de219048c9fc09f11f381a6fbe7c1"
    );
    assert_eq!(rtmr[3], [0; 48]);
    let quote = attest::dcap::Quote::parse(&read("tdx/gotdx_cos-113-tdx-quote.bin")).unwrap();
    let td = quote.td_report().unwrap();
    for (replayed, quoted) in rtmr.iter().zip(&td.rtmr) {
        assert_eq!(replayed, &quoted.0);
    }
}

#[test]
fn an_altered_event_changes_the_replay() {
    let bytes = read("tdx/gotdx_cos-113_ccel_data.bin");
    let good = EventLog::parse(&bytes).unwrap().replay();
    let mut log = EventLog::parse(&bytes).unwrap();
    let event = log.events.iter_mut().find(|e| e.mr_index == 2).unwrap();
    event.digests[0].value[0] ^= 1;
    assert_ne!(log.replay()[1], good[1]);
}

#[test]
fn the_ccel_table_says_tdx() {
    let table = CcelTable::parse(&read("tdx/gotdx_cos-113_ccel_table.bin")).unwrap();
    assert_eq!(table.cc_type, 2);
    assert_eq!(table.log_area_min_len, 262_144);
    assert_eq!(table.log_area_start, 0xbedb_f000);
}

#[test]
fn truncated_logs_are_errors_never_panics() {
    let bytes = read("tdx/gotdx_cos-113_ccel_data.bin");
    for len in (0..8192).step_by(5) {
        let _ = EventLog::parse(&bytes[..len]);
    }
    assert!(EventLog::parse(&[0xff; 64]).is_err());
}

/// CoCo's `tdx` evidence JSON carries the CCEL log; the front door replays it against the quote.
#[test]
fn coco_tdx_evidence_with_its_event_log_verifies_and_a_forged_log_does_not() {
    use attest::evidence::{Form, Inputs, Verifiers, VerifyError, detect};
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let quote = read("tdx/gotdx_cos-113-tdx-quote.bin");
    let log = read("tdx/gotdx_cos-113_ccel_data.bin");
    let inputs = Inputs {
        collateral: vec![(
            "collateral.json".into(),
            read("tdx/collateral_00806f050000_2025-02/collateral.json"),
        )],
        ..Inputs::default()
    };
    let now = crate::support::at("2025-03-01T00:00:00Z");
    let json = serde_json::json!({ "cc_eventlog": b64(&log), "quote": b64(&quote) }).to_string();
    let detected = detect(json.as_bytes(), None).unwrap();
    assert_eq!(
        (detected.tee, detected.form),
        (attest::TeeKind::Tdx, Form::CocoJson)
    );
    let (_, claims) = Verifiers::production()
        .verify(json.as_bytes(), &inputs, now)
        .unwrap();
    assert_eq!(claims.tcb_status, Some(attest::TcbStatus::UpToDate));

    // Flip one byte inside the first RTMR1 event's SHA-384 digest in the raw log.
    let parsed = EventLog::parse(&log).unwrap();
    let needle = &parsed
        .events
        .iter()
        .find(|e| e.mr_index == 2)
        .unwrap()
        .digests[0]
        .value;
    let digest_offset = log
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .unwrap();
    let mut forged = log.clone();
    forged[digest_offset] ^= 1;
    let json = serde_json::json!({ "cc_eventlog": b64(&forged), "quote": b64(&quote) }).to_string();
    let err = Verifiers::production()
        .verify(json.as_bytes(), &inputs, now)
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::EventLog(attest::eventlog::EventLogError::RtmrMismatch)
        ),
        "{err}"
    );
}
