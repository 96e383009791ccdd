//! Profiling driver: run the full (uncached) DCAP path in a loop, for `perf record`:
//! `full_dcap [ITERATIONS] [tdx|sgx]`.

use std::path::PathBuf;

/// The allocator `cloister` ships with, as in the benchmark.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let base =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/attestation");
    let args: Vec<String> = std::env::args().collect();
    let iterations: u32 = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(2000);
    let kind = args.get(2).map_or("tdx", String::as_str);
    let quote = std::fs::read(base.join(format!("{kind}/phala_{kind}_quote.bin")))?;
    let json = std::fs::read(base.join(format!("{kind}/phala_{kind}_quote_collateral.json")))?;
    let now = time::OffsetDateTime::from_unix_timestamp(1_751_328_000)?;
    let verifier = attest::dcap::DcapVerifier::uncached(attest::TrustAnchor::intel());
    for _ in 0..iterations {
        let collateral = attest::dcap::Collateral::from_combined_json(&json)?;
        std::hint::black_box(verifier.verify(&quote, &collateral, now)?);
    }
    Ok(())
}
