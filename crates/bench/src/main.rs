//! The trust core's speed, side by side: our full and cached verification next to dcap-qvl,
//! the `sev` crate, and the primitive floor (the signature verifications themselves), all
//! measured in one run on the same real quotes and reports. Prints ratios; the last line is
//! JSON.
//!
//! Every item is timed in rounds that alternate with rounds of its floor primitive, and the
//! ratio reported is the median of the per-round ratios, so a shared machine's drift cancels.
//! Ratios to a peer are ratios of those floor-normalized figures.
//!
//! `cargo run --release -p bench -- activate` measures activations instead (see [`activate`]),
//! `kbs` key-broker round trips, `keep` WebAssembly keeps next to bare wasmtime, `image`
//! confidential images next to skopeo and umoci.
//!
//! `cargo run --release -p bench` (vectors from `../shared/testdata/attestation` or
//! `$CLOISTER_TESTDATA`; `BENCH_ROUNDS` and `BENCH_ROUND_MS` tune the harness).

mod activate;
mod floor;
mod harness;
mod image_bench;
mod kbs_bench;
mod keep_bench;
mod peers;
mod replicas_bench;
mod tls_floor;

use std::path::PathBuf;

use anyhow::{Context, Result};
use attest::dcap::{Collateral, DcapVerifier};
use attest::snp::SnpVerifier;
use attest::{TrustAnchor, decode_input};
use serde_json::json;
use time::OffsetDateTime;

use crate::floor::{DcapSignatures, Signed};
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

/// One row: a measurement, what its floor ratio is over, and the peer it is compared with.
struct Row<'a> {
    measured: &'a Measured,
    floor: &'static str,
    peer: Option<&'a Measured>,
}

fn ratio(m: &Measured) -> f64 {
    m.ratio_to_floor.unwrap_or(f64::NAN)
}

fn print_rows(title: &str, rows: &[Row<'_>]) {
    println!("\n{title}");
    println!(
        "  {:<48} {:>9} {:>9} {:>20} {:>9}",
        "", "µs/op", "ops/s", "× floor", "× peer"
    );
    for r in rows {
        let us = r.measured.micros();
        let floor = match r.measured.ratio_to_floor {
            Some(x) => format!("{x:.2} ({})", r.floor),
            None => String::new(),
        };
        let peer = r.peer.map_or(String::new(), |p| {
            format!("{:.2}", r.measured.in_floor_ops() / p.in_floor_ops())
        });
        println!(
            "  {:<48} {:>9.1} {:>9.0} {:>20} {:>9}",
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

fn dcap(h: &Harness, case: &DcapCase, p256: &Signed) -> Result<serde_json::Value> {
    // The floor: the nine signatures this quote rests on, verified over their real signed bytes
    // (two for a cached verification). Each is first measured against synthetic P-256 verifies
    // so that every figure can also be put in those units.
    let nine = DcapSignatures::read(&case.quote, &case.collateral, true)?;
    let two = DcapSignatures::read(&case.quote, &case.collateral, false)?;
    let in_p256 = |sigs: &DcapSignatures, what: &str| {
        h.paired(
            &format!("  the {} signatures alone, {}", sigs.len(), case.name),
            || sigs.verify(),
            sigs.len() as f64,
            || p256.verify(),
        )
        .map(|m| (m.in_floor_ops(), m))
        .with_context(|| format!("the {what} floor"))
    };
    let (nine_units, nine_alone) = in_p256(&nine, "full")?;
    let (two_units, _) = in_p256(&two, "cached")?;
    let qvl = peers::dcap_qvl(
        h,
        &format!("dcap-qvl 0.7.1 (ring), {}", case.name),
        &case.quote,
        &case.collateral,
        case.now.unix_timestamp().try_into()?,
        || nine.verify(),
    )?
    .in_units_of(nine_units);
    let uncached = DcapVerifier::uncached(TrustAnchor::intel());
    let full = h
        .paired(
            &format!("cloister full, {}", case.name),
            || {
                let collateral = Collateral::from_combined_json(&case.collateral)?;
                uncached.verify(&case.quote, &collateral, case.now)
            },
            1.0,
            || nine.verify(),
        )?
        .in_units_of(nine_units);
    let cached_verifier = DcapVerifier::new(TrustAnchor::intel());
    let collateral = Collateral::from_combined_json(&case.collateral)?;
    let cached = h
        .paired(
            &format!("cloister cached, {}", case.name),
            || cached_verifier.verify(&case.quote, &collateral, case.now),
            1.0,
            || two.verify(),
        )?
        .in_units_of(two_units);
    let load = h.measure(
        &format!("  of which: load collateral, {}", case.name),
        || Collateral::from_combined_json(&case.collateral),
    )?;
    print_rows(
        &format!(
            "{} (× floor: over its N signatures on their real bytes; × peer: over dcap-qvl)",
            case.name
        ),
        &[
            Row {
                measured: &full,
                floor: "9 sig",
                peer: Some(&qvl),
            },
            Row {
                measured: &cached,
                floor: "2 sig",
                peer: Some(&qvl),
            },
            Row {
                measured: &qvl,
                floor: "9 sig",
                peer: None,
            },
            Row {
                measured: &nine_alone,
                floor: "9 P-256 on 384 B",
                peer: None,
            },
            Row {
                measured: &load,
                floor: "",
                peer: None,
            },
        ],
    );
    Ok(json!({
        "full_us": full.micros(), "cached_us": cached.micros(), "dcap_qvl_us": qvl.micros(),
        "full_over_9_sig_floor": ratio(&full),
        "cached_over_2_sig_floor": ratio(&cached),
        "dcap_qvl_over_9_sig_floor": ratio(&qvl),
        "full_over_9_synthetic_p256": full.in_floor_ops() / 9.0,
        "nine_real_signatures_over_9_synthetic_p256": ratio(&nine_alone),
        "full_over_dcap_qvl": full.in_floor_ops() / qvl.in_floor_ops(),
        "cached_over_dcap_qvl": cached.in_floor_ops() / qvl.in_floor_ops(),
    }))
}

fn snp(h: &Harness, p384: &Signed) -> Result<serde_json::Value> {
    let report = decode_input(&testdata("snp/virtee_report_milan.hex")?).0;
    let vek = testdata("snp/virtee_vcek_milan.der")?;
    let chain = testdata("snp/amd_milan_ask_ark.pem")?;
    let certs = attest::x509::parse_pem_chain(&chain)?;
    let (ask, ark) = (
        certs.first().context("no ASK")?,
        certs.get(1).context("no ARK")?,
    );
    let now = at("2025-01-01T00:00:00Z")?;
    let floor = || p384.verify();
    let rsa = h.paired(
        "RSA-4096 PSS verify (ARK signs ASK)",
        || ask.verify_signed_by(ark),
        1.0,
        floor,
    )?;
    // The full floor is 2 RSA-4096 verifies and one P-384, in units of one P-384.
    let full_floor = 2.0 * ratio(&rsa) + 1.0;
    let uncached = SnpVerifier::uncached(TrustAnchor::amd());
    let full = h.paired(
        "cloister full (ASK, VCEK, report)",
        || uncached.verify(&report, &vek, &chain, now),
        full_floor,
        floor,
    )?;
    let cached_verifier = SnpVerifier::new(TrustAnchor::amd());
    let cached = h.paired(
        "cloister cached VEK (report)",
        || cached_verifier.verify(&report, &vek, &chain, now),
        1.0,
        floor,
    )?;
    let ask_pem = attest::dcap::to_pem_string(ask.der());
    let ark_pem = attest::dcap::to_pem_string(ark.der());
    let (sev_full, sev_report) = peers::sev(
        h,
        &report,
        &vek,
        ask_pem.as_bytes(),
        ark_pem.as_bytes(),
        full_floor,
        floor,
    )?;
    print_rows(
        "SEV-SNP (× floor: over 2 RSA-4096 + 1 P-384, or 1 P-384; × peer: over the sev crate)",
        &[
            Row {
                measured: &full,
                floor: "2 RSA+P384",
                peer: Some(&sev_full),
            },
            Row {
                measured: &cached,
                floor: "1 P-384",
                peer: Some(&sev_report),
            },
            Row {
                measured: &sev_full,
                floor: "2 RSA+P384",
                peer: None,
            },
            Row {
                measured: &sev_report,
                floor: "1 P-384",
                peer: None,
            },
            Row {
                measured: &rsa,
                floor: "1 P-384",
                peer: None,
            },
        ],
    );
    Ok(json!({
        "full_us": full.micros(), "cached_us": cached.micros(),
        "sev_full_us": sev_full.micros(), "sev_report_us": sev_report.micros(),
        "full_over_floor": ratio(&full),
        "cached_over_one_p384": ratio(&cached),
        "full_over_sev": full.in_floor_ops() / sev_full.in_floor_ops(),
        "cached_over_sev_report_only": cached.in_floor_ops() / sev_report.in_floor_ops(),
    }))
}

/// The allocator `cloister` ships with, so the coordinator measured here is the one it runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("activate") if args.get(1).is_some_and(|a| a == "--store") => {
            return replicas_bench::run(&args[3..]);
        }
        Some("activate") => return activate::run(&args[1..]),
        Some("kbs") => return kbs_bench::run(&args[1..]),
        Some("keep") => return keep_bench::run(),
        Some("image" | "image-child") => return image_bench::run(&args[1..]),
        Some("serve-coordinator") => {
            let dir = args.get(1).context("serve-coordinator DIR [STORE]")?;
            return activate::serve_child(
                std::path::Path::new(dir),
                args.get(2).map(String::as_str),
            );
        }
        _ => {}
    }
    let h = Harness::from_env();
    println!(
        "cloister trust-core benchmark: median of {} paired rounds of {:?}",
        h.rounds, h.round
    );
    let (p256, p384) = (floor::p256()?, floor::p384()?);
    let p256_alone = h.measure("floor: ECDSA P-256 verify", || p256.verify())?;
    let p384_alone = h.measure("floor: ECDSA P-384 verify", || p384.verify())?;
    println!(
        "\nfloor (aws-lc-rs): P-256 verify {:.1} µs, P-384 verify {:.1} µs",
        p256_alone.micros(),
        p384_alone.micros()
    );
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
    let sgx = dcap(&h, &sgx, &p256)?;
    let tdx = dcap(&h, &tdx, &p256)?;
    let snp = snp(&h, &p384)?;
    println!(
        "\ntargets: DCAP full ≤ 1.10× its 9 signatures and < dcap-qvl; cached ≤ 1.20× 2-sig floor; SNP cached ≤ 1.20× one P-384"
    );
    let out = json!({
        "p256_verify_us": p256_alone.micros(), "p384_verify_us": p384_alone.micros(),
        "sgx": sgx, "tdx": tdx, "snp": snp,
    });
    println!("{out}");
    Ok(())
}
