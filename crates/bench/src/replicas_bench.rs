//! `bench activate --store etcd`: three coordinator replicas on one real etcd (Debian's
//! `etcd`, started here) next to one coordinator on its redb file, measured in the same run:
//! coordinator CPU per unlimited activation (the replicas' CPU together over their
//! activations, against the single node's), limited activations (each one an etcd
//! transaction) paced at 1,000/s across the replicas, and the resident memory of a replica
//! that opens a state of 100,000 recorded activations.
//!
//! `cargo run --release -p bench -- activate --store etcd [SECONDS (6)]`

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use attest::TeeKind;
use attest::attester::SimulatedAttester;
use attest::sim::SimPlatform;
use launcher::client::Client;
use serde_json::json;
use time::OffsetDateTime;

use crate::activate::{
    Call, Server, Worker, attested_root, closed_loop, cpu_time, memory_kib, ms, open_loop,
    percentile, start_server_on, workers,
};

const REPLICAS: usize = 3;
const CONCURRENCY: usize = 16;
/// Recorded activations the memory figure is taken at.
const STATE_ACTIVATIONS: u64 = 100_000;

/// One etcd member on loopback, killed on drop.
struct Etcd(Child);

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_etcd(dir: &Path) -> Result<(Etcd, String)> {
    let (client, peer) = (free_port()?, free_port()?);
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let child = Command::new("etcd")
        .args(["--name", "m0", "--data-dir"])
        .arg(dir.join("etcd"))
        .args([
            "--listen-client-urls",
            &client_url,
            "--advertise-client-urls",
            &client_url,
        ])
        .args([
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
        ])
        .args(["--initial-cluster", &format!("m0={peer_url}")])
        .args(["--logger", "zap", "--log-level", "error"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting etcd (apt-get install etcd-server)")?;
    let etcd = Etcd(child);
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", client)).is_err() {
        if started.elapsed() > Duration::from_secs(20) {
            bail!("etcd did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((etcd, format!("etcd://127.0.0.1:{client}/bench")))
}

/// Coordinators' CPU per activation over a closed loop on `workers`.
async fn cpu_per_activation(
    pids: &[u32],
    workers: &[Arc<Worker>],
    length: Duration,
) -> Result<f64> {
    let before: Vec<Duration> = pids.iter().map(|p| cpu_time(*p)).collect::<Result<_>>()?;
    let done = closed_loop(workers, Call::Activate, CONCURRENCY, length).await?;
    let spent: Duration = pids
        .iter()
        .zip(&before)
        .map(|(p, b)| cpu_time(*p).map(|now| now - *b))
        .sum::<Result<Duration>>()?;
    Ok(spent.as_secs_f64() * 1e6 / done.len().max(1) as f64)
}

/// Run it.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let seconds: u64 = args.first().map_or(Ok(6), |a| a.parse())?;
    let dir: PathBuf =
        std::env::temp_dir().join(format!("cloister-bench-etcd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let result = measure(&dir, seconds);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn measure(dir: &Path, seconds: u64) -> Result<()> {
    let now = OffsetDateTime::now_utc();
    let platform = SimPlatform::open(&dir.join("sim"), now)?;
    let attester = SimulatedAttester::on_platform(TeeKind::Sgx, &platform, now)?;
    let (_etcd, store) = start_etcd(dir)?;
    let single_dir = dir.join("single");
    std::fs::create_dir_all(&single_dir)?;
    std::os::unix::fs::symlink(dir.join("sim"), single_dir.join("sim"))?;
    let (single, single_url, _) = start_server_on(&single_dir, None)?;
    let mut replicas: Vec<(Server, String)> = Vec::new();
    for n in 0..REPLICAS {
        let replica_dir = dir.join(format!("replica-{n}"));
        std::fs::create_dir_all(&replica_dir)?;
        std::os::unix::fs::symlink(dir.join("sim"), replica_dir.join("sim"))?;
        let (server, url, _) = start_server_on(&replica_dir, Some(&store))?;
        replicas.push((server, url));
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let mrenclave = hex::encode(attest::crypto::sha256(b"cloister simulated enclave"));
        let manifest = json!({
            "packages": { "bench": { "unique_id": mrenclave } },
            "workloads": {
                "bench": { "package": "bench" },
                "limited": { "package": "bench", "max_activations": 1_000_000_000u64 }
            }
        })
        .to_string();
        let single_root = attested_root(&single_url, &single_dir).await?;
        let _: Option<serde_json::Value> = Client::pinned(&single_url, &single_root, None)?
            .post("/manifest", manifest.clone().into_bytes())
            .await?;
        let root = attested_root(&replicas[0].1, &dir.join("replica-0")).await?;
        let _: Option<serde_json::Value> = Client::pinned(&replicas[0].1, &root, None)?
            .post("/manifest", manifest.into_bytes())
            .await?;
        // The other replicas take the manifest up from etcd.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let single_workers = workers(&single_url, &single_root, &attester, "bench")?;
        let mut unlimited = Vec::new();
        let mut limited = Vec::new();
        for (_, url) in &replicas {
            unlimited.extend(workers(url, &root, &attester, "bench")?);
            limited.extend(workers(url, &root, &attester, "limited")?);
        }
        // Interleave, so that consecutive calls go to different replicas.
        let spread = |w: &[Arc<Worker>]| -> Vec<Arc<Worker>> {
            let per = w.len() / REPLICAS;
            (0..w.len())
                .map(|i| Arc::clone(&w[(i % REPLICAS) * per + i / REPLICAS]))
                .collect()
        };
        let (unlimited, limited) = (spread(&unlimited), spread(&limited));
        closed_loop(
            &single_workers,
            Call::Activate,
            CONCURRENCY,
            Duration::from_secs(1),
        )
        .await?;
        closed_loop(
            &unlimited,
            Call::Activate,
            CONCURRENCY,
            Duration::from_secs(1),
        )
        .await?;
        let pids: Vec<u32> = replicas.iter().map(|(s, _)| s.0.id()).collect();
        let round = Duration::from_secs(seconds.max(3) / 3);
        let mut ratios = Vec::new();
        let (mut single_cpu, mut replica_cpu) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            let one = cpu_per_activation(&[single.0.id()], &single_workers, round).await?;
            let three = cpu_per_activation(&pids, &unlimited, round).await?;
            single_cpu.push(one);
            replica_cpu.push(three);
            ratios.push(three / one);
        }
        // Limited activations, paced at 1,000/s across the replicas.
        let started = Instant::now();
        let paced = open_loop(&limited, 1000, seconds.max(3)).await?;
        let elapsed = started.elapsed();
        let mut latencies: Vec<Duration> = paced.iter().map(|t| t.total).collect();
        latencies.sort();
        // A state of 100,000 recorded activations, then a replica that opens it.
        let recorded = fill_state(&unlimited).await?;
        let fresh_dir = dir.join("replica-fresh");
        std::fs::create_dir_all(&fresh_dir)?;
        std::os::unix::fs::symlink(dir.join("sim"), fresh_dir.join("sim"))?;
        let opened = Instant::now();
        let (fresh, _, _) = start_server_on(&fresh_dir, Some(&store))?;
        let open_time = opened.elapsed();
        let (fresh_peak, fresh_rss) = memory_kib(fresh.0.id())?;
        let (running_peak, running_rss) = memory_kib(pids[0])?;
        report(&Report {
            single: crate::activate::median(single_cpu),
            replicas: crate::activate::median(replica_cpu),
            ratios,
            limited: paced.len(),
            elapsed,
            p50: ms(percentile(&latencies, 0.5)),
            p99: ms(percentile(&latencies, 0.99)),
            recorded,
            open_time,
            fresh: (fresh_peak, fresh_rss),
            running: (running_peak, running_rss),
        });
        anyhow::Ok(())
    })
}

/// Activate until the state holds `STATE_ACTIVATIONS` activations; how many it holds.
async fn fill_state(workers: &[Arc<Worker>]) -> Result<u64> {
    let mut done = 0u64;
    let started = Instant::now();
    while done < STATE_ACTIVATIONS {
        done += closed_loop(
            workers,
            Call::Activate,
            CONCURRENCY * 2,
            Duration::from_secs(5),
        )
        .await?
        .len() as u64;
        eprintln!(
            "  filling the state: {done} activations ({:.0}/s)",
            done as f64 / started.elapsed().as_secs_f64()
        );
    }
    // Recorded activations are durable within the flush window.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(done)
}

struct Report {
    single: f64,
    replicas: f64,
    ratios: Vec<f64>,
    limited: usize,
    elapsed: Duration,
    p50: f64,
    p99: f64,
    recorded: u64,
    open_time: Duration,
    fresh: (u64, u64),
    running: (u64, u64),
}

fn report(r: &Report) {
    let mib = |kib: u64| kib as f64 / 1024.0;
    let rate = r.limited as f64 / r.elapsed.as_secs_f64();
    println!(
        "\nreplicas on etcd: {REPLICAS} coordinator replicas on one etcd member next to one coordinator on its file, \
         simulated SGX, a new mTLS connection per activation, all on this machine"
    );
    println!(
        "  coordinator CPU per unlimited activation   single {:.0} µs, replicas {:.0} µs → {:.2}× (rounds: {})",
        r.single,
        r.replicas,
        r.replicas / r.single,
        r.ratios
            .iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  limited activations paced at 1,000/s      {:.0}/s in total, p50 {:.2} ms, p99 {:.2} ms",
        rate, r.p50, r.p99
    );
    println!(
        "  a replica opening {} recorded activations: {:.1} s, RSS {:.1} MiB (peak {:.1}); a running replica RSS {:.1} MiB (peak {:.1})",
        r.recorded,
        r.open_time.as_secs_f64(),
        mib(r.fresh.1),
        mib(r.fresh.0),
        mib(r.running.1),
        mib(r.running.0)
    );
    println!(
        "\ntargets: CPU per unlimited activation ≤ 1.1× single; limited ≥ 1,000/s with p99 ≤ 20 ms; RSS ≤ 64 MiB at 100k activations"
    );
    println!(
        "{}",
        json!({
            "cpu_us_single": r.single,
            "cpu_us_replicas": r.replicas,
            "cpu_ratio": r.replicas / r.single,
            "limited_per_s": rate,
            "limited_p99_ms": r.p99,
            "recorded_activations": r.recorded,
            "fresh_replica_rss_mib": mib(r.fresh.1),
            "fresh_replica_peak_mib": mib(r.fresh.0),
            "running_replica_rss_mib": mib(r.running.1),
        })
    );
}
