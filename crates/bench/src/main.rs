//! The trust core's speed, side by side: our full and cached verification next to dcap-qvl,
//! the `sev` crate, and the primitive floor (the signature verifications themselves), all
//! measured in one run on the same real quotes and reports. Prints ratios; the last line is
//! JSON.
//!
//! `cargo run --release -p bench` (vectors from `../shared/testdata/attestation` or
//! `$CLOISTER_TESTDATA`; `BENCH_ROUNDS` and `BENCH_ROUND_MS` tune the harness).

mod floor;
mod harness;
mod peers;

use std::path::PathBuf;

use anyhow::{Context, Result};
use attest::dcap::{Collateral, DcapVerifier};
use attest::snp::SnpVerifier;
use attest::{TrustAnchor, decode_input};
use serde_json::json;
use time::OffsetDateTime;

use crate::harness::{Harness, Measured};

fn testdata(rel: &str) -> Result<Vec<u8>> {
    let base = std::env::var_os("CLOISTER_TESTDATA").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/attestation"),
        PathBuf::from,
    );
    let path = base.join(rel);
    std::fs::read(&path)
        .with_context(|| format!("reading {} (set CLOISTER_TESTDATA)", path.display()))
}

fn at(text: &str) -> Result<OffsetDateTime> {
    Ok(OffsetDateTime::parse(
        text,
        &time::format_description::well_known::Rfc3339,
    )?)
}

/// One row of the report: a measurement and its ratios.
struct Row {
    measured: Measured,
    floor: Option<(f64, &'static str)>,
    peer: Option<(f64, String)>,
}

impl Row {
    fn plain(measured: Measured) -> Self {
        Self {
            measured,
            floor: None,
            peer: None,
        }
    }
}

fn print_rows(title: &str, rows: &[Row]) {
    println!("\n{title}");
    println!(
        "  {:<52} {:>10} {:>10} {:>16} {:>16}",
        "", "µs/op", "ops/s", "× floor", "× peer"
    );
    for r in rows {
        let us = r.measured.micros();
        let floor = r
            .floor
            .map_or(String::new(), |(f, what)| format!("{:.2} ({what})", us / f));
        let peer = r
            .peer
            .as_ref()
            .map_or(String::new(), |(p, _)| format!("{:.2}", us / p));
        println!(
            "  {:<52} {:>10.1} {:>10.0} {:>16} {:>16}",
            r.measured.name,
            us,
            1e6 / us,
            floor,
            peer
        );
    }
}

struct DcapCase {
    name: &'static str,
    quote: Vec<u8>,
    collateral: Vec<u8>,
    now: OffsetDateTime,
}

fn dcap(h: &Harness, case: &DcapCase, floor_p256: f64) -> Result<(Vec<Row>, serde_json::Value)> {
    let qvl = peers::dcap_qvl(
        h,
        &format!("dcap-qvl 0.7.1 (ring), {}", case.name),
        &case.quote,
        &case.collateral,
        case.now.unix_timestamp().try_into()?,
    )?;
    let uncached = DcapVerifier::uncached(TrustAnchor::intel());
    let full = h.measure(&format!("cloister full, {}", case.name), || {
        let collateral = Collateral::from_combined_json(&case.collateral)?;
        uncached.verify(&case.quote, &collateral, case.now)
    })?;
    let cached_verifier = DcapVerifier::new(TrustAnchor::intel());
    let collateral = Collateral::from_combined_json(&case.collateral)?;
    let cached = h.measure(&format!("cloister cached, {}", case.name), || {
        cached_verifier.verify(&case.quote, &collateral, case.now)
    })?;
    let load = h.measure(
        &format!("  of which: collateral JSON → Collateral, {}", case.name),
        || Collateral::from_combined_json(&case.collateral),
    )?;
    let tcb_text = collateral
        .tcb_info
        .as_ref()
        .map(|t| t.text.clone())
        .unwrap_or_default();
    let tcb_parse = h.measure(
        &format!("  of which: TCB info JSON parse, {}", case.name),
        || attest::dcap::TcbInfo::parse(&tcb_text),
    )?;
    let quote_parse = h.measure(
        &format!("  of which: quote parse + PCK chain parse, {}", case.name),
        || {
            let q = attest::dcap::Quote::parse(&case.quote)?;
            attest::x509::parse_pem_chain(&q.certification.pck_chain_pem)
                .map_err(|e| anyhow::anyhow!(e))
        },
    )?;
    let peer = Some((qvl.micros(), qvl.name.clone()));
    let summary = json!({
        "full_us": full.micros(), "cached_us": cached.micros(), "dcap_qvl_us": qvl.micros(),
        "full_over_9_sig_floor": full.micros() / (9.0 * floor_p256),
        "cached_over_2_sig_floor": cached.micros() / (2.0 * floor_p256),
        "full_over_dcap_qvl": full.micros() / qvl.micros(),
        "cached_over_dcap_qvl": cached.micros() / qvl.micros(),
    });
    let rows = vec![
        Row {
            measured: full,
            floor: Some((9.0 * floor_p256, "9 sig")),
            peer: peer.clone(),
        },
        Row {
            measured: cached,
            floor: Some((2.0 * floor_p256, "2 sig")),
            peer: peer.clone(),
        },
        Row {
            measured: qvl,
            floor: Some((9.0 * floor_p256, "9 sig")),
            peer: None,
        },
        Row::plain(load),
        Row::plain(tcb_parse),
        Row::plain(quote_parse),
    ];
    Ok((rows, summary))
}

fn snp(h: &Harness, floor: &floor::Floor) -> Result<(Vec<Row>, serde_json::Value)> {
    let report = decode_input(&testdata("snp/virtee_report_milan.hex")?).0;
    let vek = testdata("snp/virtee_vcek_milan.der")?;
    let chain = testdata("snp/amd_milan_ask_ark.pem")?;
    let certs = attest::x509::parse_pem_chain(&chain)?;
    let (ask, ark) = (
        certs.first().context("no ASK")?,
        certs.get(1).context("no ARK")?,
    );
    let now = at("2025-01-01T00:00:00Z")?;
    let rsa = h.measure("floor: RSA-4096 PSS-SHA384 verify (ARK signs ASK)", || {
        ask.verify_signed_by(ark)
    })?;
    let uncached = SnpVerifier::uncached(TrustAnchor::amd());
    let full = h.measure("cloister full (ASK, VCEK, report)", || {
        uncached.verify(&report, &vek, &chain, now)
    })?;
    let cached_verifier = SnpVerifier::new(TrustAnchor::amd());
    let cached = h.measure("cloister cached VEK (report)", || {
        cached_verifier.verify(&report, &vek, &chain, now)
    })?;
    let ask_pem = attest::dcap::to_pem_string(&ask.der);
    let ark_pem = attest::dcap::to_pem_string(&ark.der);
    let (sev_full, sev_report) =
        peers::sev(h, &report, &vek, ask_pem.as_bytes(), ark_pem.as_bytes())?;
    let full_floor = 2.0 * rsa.micros() + floor.p384.micros();
    let one_p384 = floor.p384.micros();
    let summary = json!({
        "full_us": full.micros(), "cached_us": cached.micros(),
        "sev_full_us": sev_full.micros(), "sev_report_us": sev_report.micros(),
        "p384_verify_us": one_p384, "rsa4096_pss_verify_us": rsa.micros(),
        "full_over_floor": full.micros() / full_floor,
        "cached_over_one_p384": cached.micros() / one_p384,
        "full_over_sev": full.micros() / sev_full.micros(),
        "cached_over_sev_report_only": cached.micros() / sev_report.micros(),
    });
    let rows = vec![
        Row {
            measured: full,
            floor: Some((full_floor, "2 RSA+P384")),
            peer: Some((sev_full.micros(), sev_full.name.clone())),
        },
        Row {
            measured: cached,
            floor: Some((one_p384, "1 P-384")),
            peer: Some((sev_report.micros(), sev_report.name.clone())),
        },
        Row {
            measured: sev_full,
            floor: Some((3.0 * rsa.micros() + one_p384, "3 RSA+P384")),
            peer: None,
        },
        Row {
            measured: sev_report,
            floor: Some((one_p384, "1 P-384")),
            peer: None,
        },
        Row {
            measured: rsa,
            floor: None,
            peer: None,
        },
    ];
    Ok((rows, summary))
}

fn main() -> Result<()> {
    let h = Harness::from_env();
    println!(
        "cloister trust-core benchmark: median of {} rounds of {:?}",
        h.rounds, h.round
    );
    let floor = floor::measure(&h)?;
    print_rows(
        "floor (aws-lc-rs)",
        &[
            Row {
                measured: floor.p256.clone(),
                floor: None,
                peer: None,
            },
            Row {
                measured: floor.p384.clone(),
                floor: None,
                peer: None,
            },
        ],
    );
    let p256 = floor.p256.micros();
    let sgx = DcapCase {
        name: "SGX quote v3",
        quote: testdata("sgx/phala_sgx_quote.bin")?,
        collateral: testdata("sgx/phala_sgx_quote_collateral.json")?,
        now: at("2025-07-01T00:00:00Z")?,
    };
    let tdx = DcapCase {
        name: "TDX quote v4",
        quote: testdata("tdx/phala_tdx_quote.bin")?,
        collateral: testdata("tdx/phala_tdx_quote_collateral.json")?,
        now: at("2025-07-01T00:00:00Z")?,
    };
    let (sgx_rows, sgx_summary) = dcap(&h, &sgx, p256)?;
    print_rows(
        "SGX DCAP (ratios: × floor = over N P-256 verifies; × peer = over dcap-qvl)",
        &sgx_rows,
    );
    let (tdx_rows, tdx_summary) = dcap(&h, &tdx, p256)?;
    print_rows("TDX DCAP", &tdx_rows);
    let (snp_rows, snp_summary) = snp(&h, &floor)?;
    print_rows("SEV-SNP (× peer = over the sev crate)", &snp_rows);
    println!(
        "\ntargets: DCAP full ≤ 1.10× 9-sig floor and < dcap-qvl; cached ≤ 1.20× 2-sig floor; SNP cached ≤ 1.20× one P-384"
    );
    let out = json!({
        "p256_verify_us": p256, "p384_verify_us": floor.p384.micros(),
        "sgx": sgx_summary, "tdx": tdx_summary, "snp": snp_summary,
    });
    println!("{out}");
    Ok(())
}
