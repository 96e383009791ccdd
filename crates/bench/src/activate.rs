//! `bench activate`: activations against a coordinator in its own process, with the
//! coordinator's CPU time per activation next to the floor measured in the same run — the
//! server side of one mTLS handshake on a new connection (measured against the same server),
//! one cached evidence verification and one certificate signature.
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

/// One simulated workload: its key (as a TLS identity) and its activation request.
struct Worker {
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

fn workers(url: &str, root: &[u8], attester: &dyn Attester) -> Result<Vec<Arc<Worker>>> {
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
                workload: "bench".into(),
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
enum Call {
    /// A full activation.
    Activate,
    /// A new mTLS connection, closed right after the handshake.
    Handshake,
}

async fn call(worker: &Worker, what: Call) -> Result<Duration> {
    let start = Instant::now();
    let tcp = tokio::net::TcpStream::connect(worker.addr).await?;
    tcp.set_nodelay(true)?;
    let name = rustls::pki_types::ServerName::IpAddress(worker.addr.ip().into());
    let mut tls = worker.tls.connect(name, tcp).await?;
    match what {
        Call::Activate => {
            let answer = activate(tls, worker.body.clone()).await?;
            serde_json::from_slice::<api::ActivationResponse>(&answer)?;
        }
        Call::Handshake => tokio::io::AsyncWriteExt::shutdown(&mut tls).await?,
    }
    Ok(start.elapsed())
}

/// `POST /activate` on an established connection; the answer's body.
async fn activate(
    tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    body: bytes::Bytes,
) -> Result<bytes::Bytes> {
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
    let answer = response.into_body().collect().await?.to_bytes();
    drop(sender);
    let _ = driver.await;
    if !status.is_success() {
        bail!(
            "activation failed with {status}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    Ok(answer)
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
    /// The coordinator's CPU for one mTLS handshake on a new loopback connection (accept,
    /// TCP, TLS, close), measured against the running server.
    handshake: f64,
    /// The TLS part of that alone, driven in memory.
    handshake_in_memory: f64,
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

    fn total_in_memory(&self) -> f64 {
        self.handshake_in_memory + self.two_p256 + self.issue
    }
}

fn floor(h: &Harness, dir: &Path, attester: &dyn Attester, handshake: f64) -> Result<Floor> {
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
        handshake,
        handshake_in_memory: crate::tls_floor::server_handshake(h, &ca, &key)?,
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
        let handshakes = closed_loop(&workers, Call::Handshake, concurrency, 2)
            .await?
            .len();
        let handshake_cpu = cpu_time(pid)? - cpu_before;
        let cpu_before = cpu_time(pid)?;
        let started = Instant::now();
        let mut latencies = closed_loop(&workers, Call::Activate, concurrency, seconds).await?;
        let wall = started.elapsed();
        let cpu = cpu_time(pid)? - cpu_before;
        latencies.sort();
        let handshake_us = handshake_cpu.as_secs_f64() * 1e6 / handshakes as f64;
        let mut paced = open_loop(&workers, 1000, 3).await?;
        paced.sort();
        anyhow::Ok((latencies, wall, cpu, paced, handshake_us))
    });
    drop(server);
    let (latencies, wall, cpu, paced, handshake_us) = result?;
    let h = Harness::from_env();
    let floor = floor(&h, &dir, &attester, handshake_us)?;
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
    println!("  floor, measured in this run:");
    println!(
        "    mTLS handshake, server side        {:.0} µs (new loopback connection: accept, TCP, TLS, close)",
        floor.handshake
    );
    println!(
        "      of which TLS alone               {:.0} µs (the same handshake in memory)",
        floor.handshake_in_memory
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
    let ratio_in_memory = per_activation_us / floor.total_in_memory();
    println!("  CPU per activation × floor           {ratio:.2}");
    println!(
        "  × floor without the kernel's share   {ratio_in_memory:.2} (in-memory handshake: {:.0} µs)",
        floor.total_in_memory()
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
            "handshake_us": floor.handshake,
            "handshake_in_memory_us": floor.handshake_in_memory,
            "floor_us": floor.total(),
            "cached_verification_us": floor.cached_verification,
            "ratio_to_floor": ratio,
            "ratio_to_in_memory_floor": ratio_in_memory,
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
