//! `bench kbs`: full key-broker round trips (auth → attest with fresh simulated SGX evidence →
//! resource) against a coordinator in its own process, with its CPU time per round trip next to
//! the floor measured in the same run: the cached evidence verification (two P-256 verifies),
//! the token signature (one P-256 sign) and the JWE key agreement (one P-256 ECDH with a fresh
//! ephemeral key).
//!
//! Like `bench activate`, it runs in rounds and takes the median of each round's own ratio.
//!
//! `cargo run --release -p bench -- kbs [CONCURRENCY (16)] [SECONDS (10)]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use attest::TeeKind;
use attest::attester::SimulatedAttester;
use attest::sim::SimPlatform;
use aws_lc_rs::agreement::{self, ECDH_P256, PrivateKey, UnparsedPublicKey};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use kbs::jwe::{Curve, TeeKeyPair};
use launcher::client::Client;
use launcher::kbs_client::{Credential, KbsClient, Prover};
use serde_json::json;
use time::OffsetDateTime;

use crate::activate::{ROUNDS, attested_root, cpu_time, median, ms, percentile, start_server};
use crate::harness::Harness;

struct Guest {
    client: KbsClient,
    key: TeeKeyPair,
    attester: SimulatedAttester,
}

async fn round_trip(guest: &Guest) -> Result<Duration> {
    let start = Instant::now();
    let attested = guest
        .client
        .attest(&Prover::Attester(&guest.attester), &guest.key, None)
        .await?;
    let resource = guest
        .client
        .get_resource(
            "bench/key/1",
            &guest.key,
            &Credential::Cookie(attested.cookie),
        )
        .await?;
    anyhow::ensure!(resource.len() == 32, "unexpected resource");
    Ok(start.elapsed())
}

async fn closed_loop(guests: &[Arc<Guest>], length: Duration) -> Result<Vec<Duration>> {
    let deadline = Instant::now() + length;
    let tasks: Vec<_> = guests
        .iter()
        .map(|g| {
            let g = Arc::clone(g);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    latencies.push(round_trip(&g).await?);
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(all)
}

/// One round: the coordinator's CPU per round trip, and the floor measured right after.
struct Round {
    per_trip: f64,
    /// Two P-256 verifies, one P-256 sign, one ephemeral P-256 ECDH.
    floor: (f64, f64, f64),
}

impl Round {
    fn floor_total(&self) -> f64 {
        self.floor.0 + self.floor.1 + self.floor.2
    }
}

/// The floor: two P-256 verifies, one P-256 sign, one ephemeral P-256 ECDH.
fn floor(h: &Harness) -> Result<(f64, f64, f64)> {
    let p256 = crate::floor::p256()?;
    let verify = h.measure("floor: ECDSA P-256 verify", || p256.verify())?;
    let rng = SystemRandom::new();
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| anyhow::anyhow!("keygen"))?;
    let signer = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref())
        .map_err(|_| anyhow::anyhow!("key"))?;
    let sign = h.measure("floor: ECDSA P-256 sign", || {
        signer
            .sign(&rng, b"token")
            .map(|_| ())
            .map_err(|_| anyhow::anyhow!("sign"))
    })?;
    let peer = PrivateKey::generate(&ECDH_P256)
        .and_then(|k| k.compute_public_key())
        .map_err(|_| anyhow::anyhow!("peer"))?;
    let ecdh = h.measure("floor: ephemeral P-256 ECDH", || {
        let ephemeral = PrivateKey::generate(&ECDH_P256).map_err(|_| anyhow::anyhow!("keygen"))?;
        ephemeral
            .compute_public_key()
            .map_err(|_| anyhow::anyhow!("public"))?;
        agreement::agree(
            &ephemeral,
            UnparsedPublicKey::new(&ECDH_P256, peer.as_ref()),
            anyhow::anyhow!("agree"),
            |_| Ok(()),
        )
    })?;
    Ok((2.0 * verify.micros(), sign.micros(), ecdh.micros()))
}

/// Run the key-broker benchmark.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let concurrency: usize = args.first().map_or(Ok(16), |a| a.parse())?;
    let seconds: u64 = args.get(1).map_or(Ok(10), |a| a.parse())?;
    let per_round = Duration::from_secs(seconds) / ROUNDS as u32;
    let h = Harness {
        rounds: 3,
        round: Duration::from_millis(50),
    };
    let dir = std::env::temp_dir().join(format!("cloister-bench-kbs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let now = OffsetDateTime::now_utc();
    let platform = SimPlatform::open(&dir.join("sim"), now)?;
    let (server, url, placement) = start_server(&dir)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(async {
        let root = attested_root(&url, &dir).await?;
        let mrenclave = hex::encode(attest::crypto::sha256(b"cloister simulated enclave"));
        let manifest = json!({
            "packages": { "enclave": { "unique_id": mrenclave } },
            "secrets": { "k": { "type": "symmetric-key", "size": 256, "shared": true } },
            "kbs": { "resources": { "bench/key/1": { "secret": "k" } } }
        });
        let admin = Client::pinned(&url, &root, None)?;
        let _: Option<serde_json::Value> = admin
            .post("/manifest", manifest.to_string().into_bytes())
            .await?;
        let guests = (0..concurrency)
            .map(|_| {
                Ok(Arc::new(Guest {
                    client: KbsClient::new(&url, &root)?,
                    key: TeeKeyPair::generate_ec(Curve::P256)?,
                    attester: SimulatedAttester::on_platform(TeeKind::Sgx, &platform, now)?,
                }))
            })
            .collect::<Result<Vec<_>>>()?;
        closed_loop(&guests, Duration::from_secs(1)).await?; // warm-up: connections, collateral
        let pid = server.0.id();
        let (mut rounds, mut latencies, mut wall) = (Vec::new(), Vec::new(), Duration::ZERO);
        for _ in 0..ROUNDS {
            let cpu_before = cpu_time(pid)?;
            let started = Instant::now();
            let mut these = closed_loop(&guests, per_round).await?;
            wall += started.elapsed();
            let cpu = cpu_time(pid)? - cpu_before;
            rounds.push(Round {
                per_trip: cpu.as_secs_f64() * 1e6 / these.len().max(1) as f64,
                floor: floor(&h)?,
            });
            latencies.append(&mut these);
        }
        latencies.sort();
        anyhow::Ok((rounds, latencies, wall))
    });
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    let (rounds, latencies, wall) = result?;
    let of = |f: &dyn Fn(&Round) -> f64| median(rounds.iter().map(f).collect());
    let (verify, sign, ecdh) = (of(&|r| r.floor.0), of(&|r| r.floor.1), of(&|r| r.floor.2));
    let n = latencies.len() as f64;
    let per_trip = of(&|r| r.per_trip);
    let floor_us = of(&Round::floor_total);
    let ratio = of(&|r| r.per_trip / r.floor_total());
    let capacity = 2.0 * 1e6 / per_trip;
    println!(
        "\nkey-broker benchmark: auth → attest (simulated SGX, fresh evidence) → resource, {concurrency} clients, {seconds} s in {ROUNDS} rounds; medians over the rounds\n  ({placement})"
    );
    println!(
        "  round trips                          {n:.0} in {:.2} s = {:.0}/s (clients on the same machine)",
        wall.as_secs_f64(),
        n / wall.as_secs_f64()
    );
    println!(
        "  latency p50 / p99                    {:.2} / {:.2} ms",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99))
    );
    println!(
        "  coordinator CPU per round trip       {per_trip:.0} µs → capacity {capacity:.0}/s on 2 cores"
    );
    println!("  floor, measured in each round:");
    println!("    2 × ECDSA P-256 verify (evidence)  {verify:.0} µs");
    println!("    ECDSA P-256 sign (token)           {sign:.0} µs");
    println!("    ephemeral P-256 ECDH (JWE)         {ecdh:.0} µs");
    println!("    total                              {floor_us:.0} µs");
    println!("  CPU per round trip × floor           {ratio:.2}");
    println!("\ntarget: ≥ 2,500 round trips/s server-side on 2 cores with cached collateral");
    println!(
        "{}",
        json!({
            "round_trips_per_s": n / wall.as_secs_f64(),
            "server_capacity_per_s": capacity,
            "cpu_us_per_round_trip": per_trip,
            "floor_us": floor_us,
            "ratio_to_floor": ratio,
            "p50_ms": ms(percentile(&latencies, 0.5)),
            "p99_ms": ms(percentile(&latencies, 0.99)),
        })
    );
    Ok(())
}
