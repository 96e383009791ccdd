//! `bench activate`: activations against a coordinator in its own process, with the
//! coordinator's CPU time per activation next to the floor measured in the same run — the
//! server side of one mTLS handshake, one cached evidence verification and one certificate
//! signature.
//!
//! `cargo run --release -p bench -- activate [CONCURRENCY] [SECONDS]`

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use attest::TeeKind;
use attest::attester::{Attester, SimulatedAttester};
use attest::evidence::Verifiers;
use attest::sim::SimPlatform;
use launcher::WorkloadKey;
use launcher::client::{Client, Identity};
use serde_json::json;
use time::OffsetDateTime;

use crate::harness::Harness;

/// Keys (each with its evidence) the load generator cycles through.
const KEYS: usize = 64;

pub(crate) struct Server(pub(crate) Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The child process: a coordinator on simulated SGX.
pub(crate) fn serve_child(dir: &Path) -> Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let config = coordinator::Config {
            data_dir: dir.join("data"),
            dns_names: vec![],
            simulation: true,
            sim_dir: dir.join("sim"),
            sim_tee: TeeKind::Sgx,
            platform_root: "/".into(),
            pcs_url: pcs::INTEL_PCS.into(),
            pcs_roots: vec![],
            kds_url: pcs::AMD_KDS.into(),
        };
        let running = coordinator::serve(&config, "127.0.0.1:0".parse()?).await?;
        println!("{}", running.addr);
        running.wait().await;
        Ok(())
    })
}

pub(crate) fn start_server(dir: &Path) -> Result<(Server, String)> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("serve-coordinator")
        .arg(dir)
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().context("no stdout")?;
    let server = Server(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    if line.trim().is_empty() {
        bail!("the coordinator did not start");
    }
    Ok((server, format!("https://{}", line.trim())))
}

/// The coordinator's root, from a verified attestation (its own simulated platform in `dir`).
pub(crate) async fn attested_root(url: &str, dir: &Path) -> Result<Vec<u8>> {
    let now = OffsetDateTime::now_utc();
    let (dcap, snp) = SimPlatform::open(&dir.join("sim"), now)?.anchors(now)?;
    let verifiers = Verifiers::with_anchors(dcap, snp);
    let expect = launcher::verify::Expectations {
        verifiers: &verifiers,
        package: None,
        simulation: true,
        now,
    };
    let (_, root, _) = launcher::verify::verify_online(url, &expect).await?;
    Ok(root)
}

/// User + system CPU time of a process, from /proc.
pub(crate) fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("malformed /proc stat")?
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields.get(11).context("utime")?.parse::<u64>()?
        + fields.get(12).context("stime")?.parse::<u64>()?;
    // Linux reports in USER_HZ, 100 per second on every architecture Rust targets here.
    Ok(Duration::from_millis(ticks * 10))
}

struct Worker {
    client: Client,
    body: Vec<u8>,
}

fn workers(url: &str, root: &[u8], attester: &dyn Attester) -> Result<Vec<Arc<Worker>>> {
    (0..KEYS)
        .map(|_| {
            let key = WorkloadKey::generate()?;
            let evidence = attester.evidence(&key.report_data())?;
            let identity = Identity {
                chain: vec![key.self_signed_der().to_vec()],
                key_pkcs8: key.pkcs8_der(),
            };
            let body = serde_json::to_vec(&api::ActivationRequest {
                workload: "bench".into(),
                uuid: None,
                evidence: api::EvidenceBundle::from_evidence(&evidence),
            })?;
            Ok(Arc::new(Worker {
                client: Client::pinned_fresh_connections(url, root, Some(&identity))?,
                body,
            }))
        })
        .collect()
}

/// What each request of a loop does.
#[derive(Debug, Clone, Copy)]
enum Call {
    /// A full activation.
    Activate,
    /// `GET /health` on a new mTLS connection: the transport alone.
    Health,
}

async fn call(worker: &Worker, what: Call) -> Result<Duration> {
    let start = Instant::now();
    match what {
        Call::Activate => {
            let answer: Option<api::ActivationResponse> =
                worker.client.post("/activate", worker.body.clone()).await?;
            answer.context("empty activation answer")?;
        }
        Call::Health => {
            worker.client.get_text("/health").await?;
        }
    }
    Ok(start.elapsed())
}

/// Closed loop: `concurrency` tasks activate back to back for `seconds`.
async fn closed_loop(
    workers: &[Arc<Worker>],
    what: Call,
    concurrency: usize,
    seconds: u64,
) -> Result<Vec<Duration>> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for i in 0..concurrency {
        let pool: Vec<Arc<Worker>> = workers.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = i;
            while Instant::now() < deadline {
                latencies.push(call(&pool[n % pool.len()], what).await?);
                n += concurrency;
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(all)
}

/// Open loop: one activation started every `1/rate` seconds, for `seconds`.
async fn open_loop(workers: &[Arc<Worker>], rate: u64, seconds: u64) -> Result<Vec<Duration>> {
    let mut interval = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::new();
    for i in 0..(rate * seconds) as usize {
        interval.tick().await;
        let worker = Arc::clone(&workers[i % workers.len()]);
        tasks.push(tokio::spawn(
            async move { call(&worker, Call::Activate).await },
        ));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.push(t.await??);
    }
    Ok(all)
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

/// The floor and our cached verification, measured in this process.
struct Floor {
    /// Server side of one full mTLS handshake.
    handshake: f64,
    /// Two ECDSA P-256 verifications (quote, QE report): the cached-verification floor.
    two_p256: f64,
    /// One workload certificate (a P-384 signature).
    issue: f64,
    /// Our whole cached verification of the same evidence (for reference).
    cached_verification: f64,
}

impl Floor {
    fn total(&self) -> f64 {
        self.handshake + self.two_p256 + self.issue
    }
}

fn floor(h: &Harness, dir: &Path, attester: &dyn Attester) -> Result<Floor> {
    let now = OffsetDateTime::now_utc();
    let (dcap, snp) = SimPlatform::open(&dir.join("sim"), now)?.anchors(now)?;
    let verifiers = Verifiers::with_anchors(dcap, snp);
    let key = WorkloadKey::generate()?;
    let evidence = attester.evidence(&key.report_data())?;
    let inputs = evidence.verification_inputs();
    verifiers.verify(&evidence.bytes, &inputs, now)?;
    let cached = h.measure("our cached SGX verification", || {
        verifiers.verify(&evidence.bytes, &inputs, now).map(|_| ())
    })?;
    let p256 = crate::floor::p256()?;
    let one_p256 = h.measure("floor: ECDSA P-256 verify", || p256.verify())?;
    let ca = coordinator::ca::Ca::generate(now)?;
    let spki = key.spki_der();
    let issue = h.measure("floor: workload certificate (P-384 signature)", || {
        ca.issue_workload(
            &spki,
            "bench",
            "00000000-0000-0000-0000-000000000000",
            &[],
            now,
        )
        .map(|_| ())
    })?;
    Ok(Floor {
        handshake: crate::tls_floor::server_handshake(h, &ca, &key)?,
        two_p256: 2.0 * one_p256.micros(),
        issue: issue.micros(),
        cached_verification: cached.micros(),
    })
}

/// Run the activation benchmark.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let concurrency: usize = args.first().map_or(Ok(16), |a| a.parse())?;
    let seconds: u64 = args.get(1).map_or(Ok(5), |a| a.parse())?;
    let dir: PathBuf = std::env::temp_dir().join(format!("cloister-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let now = OffsetDateTime::now_utc();
    let platform = SimPlatform::open(&dir.join("sim"), now)?;
    let attester = SimulatedAttester::on_platform(TeeKind::Sgx, &platform, now)?;
    let (server, url) = start_server(&dir)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(async {
        let root = attested_root(&url, &dir).await?;
        let mrenclave = hex::encode(attest::crypto::sha256(b"cloister simulated enclave"));
        let manifest = json!({
            "packages": { "bench": { "unique_id": mrenclave } },
            "workloads": { "bench": { "package": "bench" } }
        });
        let admin = Client::pinned(&url, &root, None)?;
        let _: Option<serde_json::Value> = admin
            .post("/manifest", manifest.to_string().into_bytes())
            .await?;
        let workers = workers(&url, &root, &attester)?;
        closed_loop(&workers, Call::Activate, concurrency, 1).await?; // warm-up
        let pid = server.0.id();
        let cpu_before = cpu_time(pid)?;
        let transport = closed_loop(&workers, Call::Health, concurrency, 2)
            .await?
            .len();
        let transport_cpu = cpu_time(pid)? - cpu_before;
        let cpu_before = cpu_time(pid)?;
        let started = Instant::now();
        let mut latencies = closed_loop(&workers, Call::Activate, concurrency, seconds).await?;
        let wall = started.elapsed();
        let cpu = cpu_time(pid)? - cpu_before;
        latencies.sort();
        let transport_us = transport_cpu.as_secs_f64() * 1e6 / transport as f64;
        let mut paced = open_loop(&workers, 1000, 3).await?;
        paced.sort();
        anyhow::Ok((latencies, wall, cpu, paced, transport_us))
    });
    drop(server);
    let (latencies, wall, cpu, paced, transport_us) = result?;
    let h = Harness::from_env();
    let floor = floor(&h, &dir, &attester)?;
    let _ = std::fs::remove_dir_all(&dir);

    let n = latencies.len() as f64;
    let per_activation_us = cpu.as_secs_f64() * 1e6 / n;
    let capacity = 2.0 * 1e6 / per_activation_us;
    let ratio = per_activation_us / floor.total();
    let (p50, p99) = (
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
    );
    let (paced50, paced99) = (ms(percentile(&paced, 0.5)), ms(percentile(&paced, 0.99)));
    println!(
        "\nactivation benchmark: simulated SGX evidence, {concurrency} concurrent clients, {seconds} s, \
         a new mTLS connection per activation"
    );
    println!(
        "  activations                          {n:.0} in {:.2} s = {:.0}/s (load generator on the same cores)",
        wall.as_secs_f64(),
        n / wall.as_secs_f64()
    );
    println!("  latency p50 / p99, closed loop       {p50:.2} / {p99:.2} ms");
    println!("  latency p50 / p99 at 1,000/s         {paced50:.2} / {paced99:.2} ms");
    println!(
        "  coordinator CPU per activation       {per_activation_us:.0} µs → capacity {capacity:.0}/s on 2 cores"
    );
    println!(
        "    of which transport                 {transport_us:.0} µs (new mTLS connection + GET /health: TCP, TLS, HTTP)"
    );
    println!("  floor, measured in this run:");
    println!(
        "    server side of the mTLS handshake  {:.0} µs",
        floor.handshake
    );
    println!(
        "    2 × ECDSA P-256 verify             {:.0} µs (cached verification floor)",
        floor.two_p256
    );
    println!(
        "    workload certificate (P-384 sign)  {:.0} µs",
        floor.issue
    );
    println!(
        "    total                              {:.0} µs",
        floor.total()
    );
    println!(
        "  our cached verification              {:.0} µs",
        floor.cached_verification
    );
    // The same floor with the handshake's kernel and HTTP share counted in: the transport
    // measured above replaces the in-memory handshake.
    let transport_floor = transport_us + floor.two_p256 + floor.issue;
    println!("  CPU per activation × floor           {ratio:.2}");
    println!(
        "  × floor, transport counted in        {:.2} (floor {transport_floor:.0} µs: a real connection, not the in-memory handshake)",
        per_activation_us / transport_floor
    );
    println!(
        "\ntargets: ≥ 3,500 activations/s server-side on 2 cores; CPU ≤ 1.3× floor; p99 ≤ 5 ms at 1,000/s"
    );
    println!(
        "{}",
        json!({
            "activations_per_s": n / wall.as_secs_f64(),
            "server_capacity_per_s": capacity,
            "cpu_us_per_activation": per_activation_us,
            "transport_us": transport_us,
            "floor_us": floor.total(),
            "cached_verification_us": floor.cached_verification,
            "ratio_to_floor": ratio,
            "ratio_to_floor_with_transport": per_activation_us / transport_floor,
            "p50_ms": p50,
            "p99_ms": p99,
            "p99_ms_at_1000_per_s": paced99,
        })
    );
    Ok(())
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
