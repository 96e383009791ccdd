//! `bench activate`: activations against a coordinator in its own process, with the
//! coordinator's CPU time per activation next to the floor measured in the same run — the
//! server side of one mTLS handshake on a new connection (measured against the same server),
//! one cached evidence verification and one certificate signature.
//!
//! It runs in rounds (activations, then bare handshakes, then the primitives), and each
//! round's ratio is taken from that round alone, so a shared machine's drift cancels.
//!
//! `cargo run --release -p bench -- activate [CONCURRENCY (16)] [SECONDS (10)]`

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
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
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

/// The child process: a coordinator on simulated SGX, its state in `dir` or in `store` (etcd).
pub(crate) fn serve_child(dir: &Path, store: Option<&str>) -> Result<()> {
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
            etcd: store
                .map(|s| coordinator::store::etcd::Location::parse(s, None))
                .transpose()?,
            advertise: None,
            sim_machine: None,
            limits: coordinator::Limits::default(),
        };
        let running = coordinator::serve(&config, "127.0.0.1:0".parse()?).await?;
        println!("{}", running.addr);
        running.wait().await;
        Ok(())
    })
}

/// Start the coordinator in its own process. On a machine with two or more CPUs and `taskset`,
/// the coordinator runs on CPU 0 and this process (load generator and floor primitives) on
/// CPU 1, so neither pollutes the other's caches and the CPU per request is the server's own;
/// the second value says which way it ran. `BENCH_NO_PIN=1` lets both share the CPUs.
pub(crate) fn start_server(dir: &Path) -> Result<(Server, String, &'static str)> {
    start_server_on(dir, None)
}

/// A coordinator process on `store` (etcd), or on its file when `None` (then pinned, as
/// [`start_server`] says).
pub(crate) fn start_server_on(
    dir: &Path,
    store: Option<&str>,
) -> Result<(Server, String, &'static str)> {
    let exe = std::env::current_exe()?;
    let pinned = store.is_none()
        && std::env::var_os("BENCH_NO_PIN").is_none()
        && std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
        && pin_self_to_cpu(1);
    let mut command = if pinned {
        let mut taskset = Command::new("taskset");
        taskset.args(["-c", "0"]).arg(exe);
        taskset
    } else {
        Command::new(exe)
    };
    command.arg("serve-coordinator").arg(dir);
    if let Some(store) = store {
        command.arg(store);
    }
    let mut child = command.stdout(Stdio::piped()).spawn()?;
    let stdout = child.stdout.take().context("no stdout")?;
    let server = Server(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    if line.trim().is_empty() {
        bail!("the coordinator did not start");
    }
    let placement = if pinned {
        "coordinator on CPU 0, load generator on CPU 1"
    } else {
        "coordinator and load generator share the CPUs"
    };
    Ok((server, format!("https://{}", line.trim()), placement))
}

/// Pin every thread of this process to `cpu` with `taskset` (before the runtime starts, so
/// later threads inherit it); false when `taskset` is missing or refuses.
fn pin_self_to_cpu(cpu: usize) -> bool {
    Command::new("taskset")
        .args([
            "-a",
            "-p",
            "-c",
            &cpu.to_string(),
            &std::process::id().to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
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
        min_version: None,
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

/// One simulated workload: its key (as a TLS identity) and its activation request.
pub(crate) struct Worker {
    body: bytes::Bytes,
    tls: tokio_rustls::TlsConnector,
    addr: std::net::SocketAddr,
}

/// Checks the coordinator's chain against the pinned root once, then accepts only the same
/// chain; every handshake's own signature is still checked. The load generator stands in for
/// workloads on other machines: re-verifying the P-384 chain on every connection would put
/// their work on the coordinator's two cores and into its latency.
#[derive(Debug)]
struct ChainVerifiedOnce {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    verified: std::sync::OnceLock<Vec<Vec<u8>>>,
}

impl rustls::client::danger::ServerCertVerifier for ChainVerifiedOnce {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let chain: Vec<Vec<u8>> = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.to_vec())
            .collect();
        if self.verified.get() == Some(&chain) {
            return Ok(rustls::client::danger::ServerCertVerified::assertion());
        }
        let verified =
            self.webpki
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        let _ = self.verified.set(chain);
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// A workload's TLS client: trusts `root` (through `verifier`), presents `identity`, and
/// never resumes, as a fresh workload cannot.
fn connector(
    verifier: &Arc<ChainVerifiedOnce>,
    identity: &Identity,
) -> Result<tokio_rustls::TlsConnector> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::clone(verifier) as _)
        .with_client_auth_cert(
            identity
                .chain
                .iter()
                .cloned()
                .map(CertificateDer::from)
                .collect(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.key_pkcs8.to_vec())),
        )?;
    config.resumption = rustls::client::Resumption::disabled();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

pub(crate) fn workers(
    url: &str,
    root: &[u8],
    attester: &dyn Attester,
    workload: &str,
) -> Result<Vec<Arc<Worker>>> {
    let addr = url.trim_start_matches("https://").parse()?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(root.to_vec()))?;
    let verifier = Arc::new(ChainVerifiedOnce {
        webpki: rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        )
        .build()?,
        verified: std::sync::OnceLock::new(),
    });
    (0..KEYS)
        .map(|_| {
            let key = WorkloadKey::generate()?;
            let evidence = attester.evidence(&key.report_data())?;
            let identity = Identity {
                chain: vec![key.self_signed_der().to_vec()],
                key_pkcs8: key.pkcs8_der(),
            };
            let body = serde_json::to_vec(&api::ActivationRequest {
                workload: workload.into(),
                uuid: None,
                // A quote alone, as from hardware (the coordinator completes the collateral).
                evidence: api::EvidenceBundle {
                    collateral: None,
                    ..api::EvidenceBundle::from_evidence(&evidence)
                },
            })?;
            Ok(Arc::new(Worker {
                body: body.into(),
                tls: connector(&verifier, &identity)?,
                addr,
            }))
        })
        .collect()
}

/// What each request of a loop does.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Call {
    /// A full activation.
    Activate,
    /// A new mTLS connection, closed right after the handshake.
    Handshake,
}

async fn call(worker: &Worker, what: Call) -> Result<Duration> {
    Ok(timed_call(worker, what).await?.total)
}

/// Where one call's time went.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// From connect to the answer.
    pub(crate) total: Duration,
    /// Connect and TLS handshake.
    handshake: Duration,
    /// The coordinator's own time on the activation (its Server-Timing).
    server: Duration,
}

async fn timed_call(worker: &Worker, what: Call) -> Result<Timing> {
    let start = Instant::now();
    let tcp = tokio::net::TcpStream::connect(worker.addr).await?;
    tcp.set_nodelay(true)?;
    let name = rustls::pki_types::ServerName::IpAddress(worker.addr.ip().into());
    let mut tls = worker.tls.connect(name, tcp).await?;
    let handshake = start.elapsed();
    let server = match what {
        Call::Activate => {
            let (answer, server) = activate(tls, worker.body.clone()).await?;
            serde_json::from_slice::<api::ActivationResponse>(&answer)?;
            server
        }
        Call::Handshake => {
            tokio::io::AsyncWriteExt::shutdown(&mut tls).await?;
            Duration::ZERO
        }
    };
    Ok(Timing {
        total: start.elapsed(),
        handshake,
        server,
    })
}

/// `POST /activate` on an established connection; the answer's body and the coordinator's
/// Server-Timing for it.
async fn activate(
    tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    body: bytes::Bytes,
) -> Result<(bytes::Bytes, Duration)> {
    use http_body_util::BodyExt as _;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
    let driver = tokio::spawn(connection);
    let request = hyper::Request::post(format!("{}/activate", api::PREFIX))
        .header(hyper::header::HOST, "127.0.0.1")
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(http_body_util::Full::new(body))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let server = response
        .headers()
        .get("server-timing")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("dur=").nth(1))
        .and_then(|ms| ms.parse::<f64>().ok())
        .map_or(Duration::ZERO, |ms| Duration::from_secs_f64(ms / 1e3));
    let answer = response.into_body().collect().await?.to_bytes();
    drop(sender);
    let _ = driver.await;
    if !status.is_success() {
        bail!(
            "activation failed with {status}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    Ok((answer, server))
}

/// Closed loop: `concurrency` tasks activate back to back for `seconds`.
pub(crate) async fn closed_loop(
    workers: &[Arc<Worker>],
    what: Call,
    concurrency: usize,
    length: Duration,
) -> Result<Vec<Duration>> {
    let deadline = Instant::now() + length;
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
pub(crate) async fn open_loop(
    workers: &[Arc<Worker>],
    rate: u64,
    seconds: u64,
) -> Result<Vec<Timing>> {
    let mut interval = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::new();
    for i in 0..(rate * seconds) as usize {
        interval.tick().await;
        let worker = Arc::clone(&workers[i % workers.len()]);
        tasks.push(tokio::spawn(async move {
            timed_call(&worker, Call::Activate).await
        }));
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

/// Rounds of activations, handshakes and floor primitives; each round's ratio comes from what
/// was measured in it, so a shared machine's drift cancels within the round.
pub(crate) const ROUNDS: usize = 5;

/// What the floor's primitives need, made once and measured in every round, in this process.
struct FloorKit {
    verifiers: Verifiers,
    evidence: attest::attester::Evidence,
    inputs: attest::evidence::Inputs,
    p256: crate::floor::Signed,
    ca: coordinator::ca::Ca,
    key: WorkloadKey,
    now: OffsetDateTime,
}

/// The primitives of one round, in microseconds.
#[derive(Debug, Clone, Copy)]
struct Primitives {
    /// Two ECDSA P-256 verifications (quote, QE report): a cached verification's signatures.
    two_p256: f64,
    /// One workload certificate (a P-384 signature).
    issue: f64,
    /// The server side of one mTLS handshake, driven in memory.
    handshake_in_memory: f64,
    /// Our cached verification of the same evidence, collateral already parsed (as the
    /// coordinator's collateral service hands it over).
    cached_verification: f64,
}

impl FloorKit {
    fn new(dir: &Path, attester: &dyn Attester) -> Result<Self> {
        let now = OffsetDateTime::now_utc();
        let (dcap, snp) = SimPlatform::open(&dir.join("sim"), now)?.anchors(now)?;
        let key = WorkloadKey::generate()?;
        let evidence = attester.evidence(&key.report_data())?;
        // Collateral parsed once and handed over, as the coordinator's collateral service does.
        let mut inputs = evidence.verification_inputs();
        let collateral =
            attest::dcap::Collateral::from_files(&std::mem::take(&mut inputs.collateral))?;
        inputs.dcap_collateral = Some(Arc::new(collateral));
        Ok(Self {
            verifiers: Verifiers::with_anchors(dcap, snp),
            inputs,
            evidence,
            p256: crate::floor::p256()?,
            ca: coordinator::ca::Ca::generate(now)?,
            key,
            now,
        })
    }

    fn measure(&self, h: &Harness) -> Result<Primitives> {
        let cached = h.measure("our cached SGX verification", || {
            self.verifiers
                .verify(&self.evidence.bytes, &self.inputs, self.now)
                .map(|_| ())
        })?;
        let one_p256 = h.measure("floor: ECDSA P-256 verify", || self.p256.verify())?;
        let spki = self.key.spki_der();
        let issue = h.measure("floor: workload certificate (P-384 signature)", || {
            self.ca
                .issue_workload(
                    &spki,
                    "bench",
                    "00000000-0000-0000-0000-000000000000",
                    &[],
                    self.now,
                )
                .map(|_| ())
        })?;
        Ok(Primitives {
            two_p256: 2.0 * one_p256.micros(),
            issue: issue.micros(),
            handshake_in_memory: crate::tls_floor::server_handshake(h, &self.ca, &self.key)?,
            cached_verification: cached.micros(),
        })
    }
}

/// One round's figures, in microseconds of coordinator CPU.
#[derive(Debug, Clone, Copy)]
struct Round {
    per_activation: f64,
    /// The coordinator's CPU for one mTLS handshake on a new loopback connection (accept, TCP,
    /// TLS, close), measured against the running server.
    handshake: f64,
    primitives: Primitives,
}

impl Round {
    /// The issue's floor: the handshake, one cached verification and the certificate, each as
    /// the coordinator does it.
    fn floor(&self) -> f64 {
        self.handshake + self.primitives.cached_verification + self.primitives.issue
    }

    /// Stricter: the verification counted as its two signature checks alone.
    fn floor_with_bare_signatures(&self) -> f64 {
        self.handshake + self.primitives.two_p256 + self.primitives.issue
    }

    /// The handshake counted in memory, without the kernel's share.
    fn floor_in_memory(&self) -> f64 {
        self.primitives.handshake_in_memory
            + self.primitives.cached_verification
            + self.primitives.issue
    }
}

pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The coordinator's CPU per call of `what` over a closed loop of `length`, and the latencies.
async fn cpu_per_call(
    pid: u32,
    workers: &[Arc<Worker>],
    what: Call,
    concurrency: usize,
    length: Duration,
) -> Result<(f64, Vec<Duration>)> {
    let before = cpu_time(pid)?;
    let latencies = closed_loop(workers, what, concurrency, length).await?;
    let cpu = cpu_time(pid)? - before;
    Ok((
        cpu.as_secs_f64() * 1e6 / latencies.len().max(1) as f64,
        latencies,
    ))
}

/// Run the activation benchmark.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let concurrency: usize = args.first().map_or(Ok(16), |a| a.parse())?;
    let seconds: u64 = args.get(1).map_or(Ok(10), |a| a.parse())?;
    let dir: PathBuf = std::env::temp_dir().join(format!("cloister-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let now = OffsetDateTime::now_utc();
    let platform = SimPlatform::open(&dir.join("sim"), now)?;
    let attester = SimulatedAttester::on_platform(TeeKind::Sgx, &platform, now)?;
    let (server, url, placement) = start_server(&dir)?;
    let kit = FloorKit::new(&dir, &attester)?;
    let h = Harness {
        rounds: 3,
        round: Duration::from_millis(50),
    };
    let per_round = Duration::from_secs(seconds) / ROUNDS as u32;
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
        let workers = workers(&url, &root, &attester, "bench")?;
        closed_loop(
            &workers,
            Call::Activate,
            concurrency,
            Duration::from_secs(1),
        )
        .await?; // warm-up
        let pid = server.0.id();
        let mut rounds = Vec::new();
        let mut latencies = Vec::new();
        let mut active = Duration::ZERO;
        for _ in 0..ROUNDS {
            let started = Instant::now();
            let (per_activation, mut l) =
                cpu_per_call(pid, &workers, Call::Activate, concurrency, per_round).await?;
            active += started.elapsed();
            latencies.append(&mut l);
            let (handshake, _) =
                cpu_per_call(pid, &workers, Call::Handshake, concurrency, per_round / 2).await?;
            rounds.push(Round {
                per_activation,
                handshake,
                primitives: kit.measure(&h)?,
            });
        }
        latencies.sort();
        let paced = open_loop(&workers, 1000, 3).await?;
        let memory = memory_kib(server.0.id())?;
        anyhow::Ok((rounds, latencies, active, paced, memory))
    });
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    let (rounds, latencies, active, paced, memory) = result?;
    report(
        &rounds,
        &latencies,
        active,
        &paced,
        memory,
        concurrency,
        seconds,
        placement,
    );
    Ok(())
}

/// The coordinator's peak and current resident memory (VmHWM, VmRSS), KiB.
pub(crate) fn memory_kib(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmHWM:")?, field("VmRSS:")?))
}

#[allow(clippy::too_many_arguments)]
fn report(
    rounds: &[Round],
    latencies: &[Duration],
    active: Duration,
    paced: &[Timing],
    (peak_kib, rss_kib): (u64, u64),
    concurrency: usize,
    seconds: u64,
    placement: &str,
) {
    let of = |f: &dyn Fn(&Round) -> f64| median(rounds.iter().map(f).collect());
    let per_activation = of(&|r| r.per_activation);
    let capacity = 2.0 * 1e6 / per_activation;
    let ratio = of(&|r| r.per_activation / r.floor());
    let ratio_bare = of(&|r| r.per_activation / r.floor_with_bare_signatures());
    let ratio_in_memory = of(&|r| r.per_activation / r.floor_in_memory());
    let n = latencies.len() as f64;
    let (p50, p99) = (
        ms(percentile(latencies, 0.5)),
        ms(percentile(latencies, 0.99)),
    );
    let sorted = |f: fn(&Timing) -> Duration| {
        let mut v: Vec<Duration> = paced.iter().map(f).collect();
        v.sort();
        v
    };
    let (total, handshake) = (sorted(|t| t.total), sorted(|t| t.handshake));
    let request = sorted(|t| t.total.saturating_sub(t.handshake));
    let server = sorted(|t| t.server);
    let (paced50, paced99) = (ms(percentile(&total, 0.5)), ms(percentile(&total, 0.99)));
    println!(
        "\nactivation benchmark: simulated SGX evidence, {concurrency} concurrent clients, {seconds} s \
         in {ROUNDS} rounds, a new mTLS connection per activation; medians over the rounds\n  ({placement})"
    );
    println!(
        "  activations                          {n:.0} in {:.2} s = {:.0}/s (load generator on the same machine)",
        active.as_secs_f64(),
        n / active.as_secs_f64()
    );
    println!("  latency p50 / p99, closed loop       {p50:.2} / {p99:.2} ms");
    println!(
        "  latency p50 / p99 / max at 1,000/s   {paced50:.2} / {paced99:.2} / {:.2} ms",
        ms(percentile(&total, 1.0))
    );
    println!(
        "    of which connect + TLS handshake   p50 {:.2} / p99 {:.2} ms; request to answer p50 {:.2} / p99 {:.2} ms",
        ms(percentile(&handshake, 0.5)),
        ms(percentile(&handshake, 0.99)),
        ms(percentile(&request, 0.5)),
        ms(percentile(&request, 0.99))
    );
    println!(
        "    the coordinator's own work on it   p50 {:.2} / p99 {:.2} / max {:.2} ms (Server-Timing; the rest is waiting)",
        ms(percentile(&server, 0.5)),
        ms(percentile(&server, 0.99)),
        ms(percentile(&server, 1.0))
    );
    println!(
        "  coordinator memory                   peak {:.1} MiB, {:.1} MiB at the end",
        peak_kib as f64 / 1024.0,
        rss_kib as f64 / 1024.0
    );
    println!(
        "  coordinator CPU per activation       {per_activation:.0} µs → capacity {capacity:.0}/s on 2 cores"
    );
    println!("  floor, measured in each round:");
    println!(
        "    mTLS handshake, server side        {:.0} µs (new loopback connection: accept, TCP, TLS, close)",
        of(&|r| r.handshake)
    );
    println!(
        "      of which TLS alone               {:.0} µs (the same handshake in memory)",
        of(&|r| r.primitives.handshake_in_memory)
    );
    println!(
        "    cached verification                {:.0} µs (its 2 ECDSA P-256 verifies alone: {:.0} µs)",
        of(&|r| r.primitives.cached_verification),
        of(&|r| r.primitives.two_p256)
    );
    println!(
        "    workload certificate (P-384 sign)  {:.0} µs",
        of(&|r| r.primitives.issue)
    );
    println!(
        "    total                              {:.0} µs",
        of(&Round::floor)
    );
    let each: Vec<String> = rounds
        .iter()
        .map(|r| format!("{:.2}", r.per_activation / r.floor()))
        .collect();
    println!(
        "  CPU per activation × floor           {ratio:.2} (rounds: {})",
        each.join(", ")
    );
    println!(
        "  × floor with bare signatures         {ratio_bare:.2} (the verification as its 2 verifies)"
    );
    println!("  × floor without the kernel's share   {ratio_in_memory:.2} (in-memory handshake)");
    println!(
        "\ntargets: ≥ 3,500 activations/s server-side on 2 cores; CPU ≤ 1.3× floor; p99 ≤ 5 ms at 1,000/s"
    );
    println!(
        "{}",
        json!({
            "activations_per_s": n / active.as_secs_f64(),
            "server_capacity_per_s": capacity,
            "cpu_us_per_activation": per_activation,
            "handshake_us": of(&|r| r.handshake),
            "handshake_in_memory_us": of(&|r| r.primitives.handshake_in_memory),
            "floor_us": of(&Round::floor),
            "cached_verification_us": of(&|r| r.primitives.cached_verification),
            "ratio_to_floor": ratio,
            "ratio_to_floor_with_bare_signatures": ratio_bare,
            "ratio_to_in_memory_floor": ratio_in_memory,
            "p50_ms": p50,
            "p99_ms": p99,
            "p99_ms_at_1000_per_s": paced99,
            "peak_rss_mib": peak_kib as f64 / 1024.0,
        })
    );
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
