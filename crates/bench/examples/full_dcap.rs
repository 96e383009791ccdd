//! Profiling driver: run the full (uncached) DCAP path in a loop, for `perf record`.

use std::path::PathBuf;

/// The allocator `cloister` ships with, as in the benchmark.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let base =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/attestation");
    let quote = std::fs::read(base.join("tdx/phala_tdx_quote.bin"))?;
    let json = std::fs::read(base.join("tdx/phala_tdx_quote_collateral.json"))?;
    let now = time::OffsetDateTime::from_unix_timestamp(1_751_328_000)?;
    let verifier = attest::dcap::DcapVerifier::uncached(attest::TrustAnchor::intel());
    let iterations: u32 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    for _ in 0..iterations {
        let collateral = attest::dcap::Collateral::from_combined_json(&json)?;
        std::hint::black_box(verifier.verify(&quote, &collateral, now)?);
    }
    Ok(())
}
