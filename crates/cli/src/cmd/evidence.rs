//! `cloister evidence verify|inspect|simulate`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use attest::evidence::{Inputs, Outcome, Verifiers};
use attest::x509::Cert;
use attest::{Claims, Policy, TcbStatus, TeeKind, TrustAnchor};
use clap::{Args, Subcommand};
use serde::Serialize;
use time::OffsetDateTime;

use crate::output::{Format, field, out, outln, print_data};

/// Evidence subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum EvidenceCommand {
    /// Verify evidence against collateral and a trust anchor at an explicit time.
    Verify(VerifyArgs),
    /// Print every field of the evidence, decoded, without verifying anything.
    Inspect(InspectArgs),
    /// Produce real-format evidence signed under a simulated hierarchy, with what verifies it.
    Simulate(SimulateArgs),
}

/// Arguments of `evidence verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The evidence: a quote, report or CoCo evidence JSON (binary, hex or base64).
    #[arg(long)]
    evidence: PathBuf,
    /// Collateral files: combined collateral JSON or Intel PCS files (repeatable).
    #[arg(long)]
    collateral: Vec<PathBuf>,
    /// The SNP VCEK or VLEK certificate (DER or PEM).
    #[arg(long)]
    vek: Option<PathBuf>,
    /// The AMD chain (ASK or ASVK, then ARK; PEM), or extra Intel issuer chains.
    #[arg(long)]
    chain: Option<PathBuf>,
    /// The TEE kind; detected from the evidence when omitted.
    #[arg(long)]
    tee: Option<TeeKind>,
    /// Verification time, RFC 3339 (e.g. 2025-07-01T00:00:00Z). Never the wall clock.
    #[arg(long, value_parser = parse_time)]
    at: OffsetDateTime,
    /// Accept a TEE in debug mode.
    #[arg(long)]
    allow_debug: bool,
    /// Accept a TDX TD bound to a service TD.
    #[arg(long)]
    allow_service_td: bool,
    /// Do not require TD_ATTRIBUTES.SEPT_VE_DISABLE (Azure paravisor TDs do not set it).
    #[arg(long)]
    allow_sept_ve: bool,
    /// Accept only these TCB statuses (repeatable), e.g. UpToDate, SWHardeningNeeded.
    #[arg(long = "accept-tcb")]
    accept_tcb: Vec<TcbStatus>,
    /// The root to trust instead of Intel's or AMD's (PEM or DER). A simulation root
    /// enables simulation explicitly.
    #[arg(long)]
    trust_anchor: Option<PathBuf>,
    /// The nonce expected in a vTPM quote (hex).
    #[arg(long)]
    nonce: Option<String>,
    /// Fetch what the evidence lacks and no file gave: DCAP collateral from Intel's PCS (or
    /// `--pcs-url`), the VCEK and ASK/ARK chain from AMD's KDS (or `--kds-url`).
    #[arg(long)]
    fetch: bool,
    /// The PCS or PCCS to fetch DCAP collateral from (with `--fetch`).
    #[arg(long, env = "CLOISTER_PCS_URL", default_value = pcs::INTEL_PCS)]
    pcs_url: String,
    /// The KDS (or mirror) to fetch VCEKs and AMD chains from (with `--fetch`).
    #[arg(long, env = "CLOISTER_KDS_URL", default_value = pcs::AMD_KDS)]
    kds_url: String,
}

/// Arguments of `evidence inspect`.
#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// The evidence file (binary, hex, base64 or CoCo JSON).
    #[arg(long)]
    evidence: PathBuf,
    /// The TEE kind; detected when omitted.
    #[arg(long)]
    tee: Option<TeeKind>,
}

/// Arguments of `evidence simulate`.
#[derive(Debug, Args)]
pub(crate) struct SimulateArgs {
    /// Which TEE to simulate.
    #[arg(long, value_parser = ["sgx", "tdx", "snp", "az-snp-vtpm", "az-tdx-vtpm"])]
    tee: String,
    /// Report data to bind, hex, up to 64 bytes (zero-padded).
    #[arg(long, default_value = "")]
    report_data: String,
    /// Simulate a TEE in debug mode.
    #[arg(long)]
    debug: bool,
    /// The TCB level the simulated platform lands in (SGX/TDX), e.g. up-to-date, out-of-date,
    /// configuration-needed, sw-hardening-needed, revoked.
    #[arg(long, default_value = "up-to-date")]
    tcb: TcbStatus,
    /// Directory to write the evidence, collateral and anchor to.
    #[arg(long)]
    out: PathBuf,
}

/// Run an evidence subcommand.
pub(crate) fn run(cmd: EvidenceCommand, format: Format) -> Result<ExitCode> {
    match cmd {
        EvidenceCommand::Verify(a) => verify(a, format),
        EvidenceCommand::Inspect(a) => inspect(a, format),
        EvidenceCommand::Simulate(a) => simulate(a, format),
    }
}

fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).map_err(|e| {
        format!("{s:?} is not an RFC 3339 time ({e}); write e.g. 2025-07-01T00:00:00Z")
    })
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The JSON shape of `evidence verify -o json`.
#[derive(Debug, Serialize)]
struct VerifyReport {
    accepted: bool,
    tee: Option<TeeKind>,
    simulated: bool,
    tcb_status: Option<TcbStatus>,
    advisory_ids: Vec<String>,
    claims: Option<Claims>,
    error: Option<String>,
    error_kind: Option<String>,
    evidence_encoding: Option<String>,
    verified_at: String,
}

fn verify(args: VerifyArgs, format: Format) -> Result<ExitCode> {
    let evidence = read(&args.evidence)?;
    let collateral = args
        .collateral
        .iter()
        .map(|p| Ok((p.display().to_string(), read(p)?)))
        .collect::<Result<Vec<_>>>()?;
    let anchor = args.trust_anchor.as_deref().map(load_anchor).transpose()?;
    let nonce = args
        .nonce
        .as_deref()
        .map(|n| hex::decode(n).context("--nonce must be hex"))
        .transpose()?;
    let mut inputs = Inputs {
        tee: args.tee,
        collateral,
        vek: args.vek.as_deref().map(read).transpose()?,
        chain: args.chain.as_deref().map(read).transpose()?,
        nonce,
        dcap_collateral: None,
    };
    if args.fetch {
        let services = pcs::Services::new(&args.pcs_url, &args.kds_url, &[])?;
        crate::cmd::conn::runtime()?
            .block_on(services.complete(&evidence, &mut inputs))
            .context("fetching what the evidence lacks (drop --fetch to verify offline)")?;
    }
    let policy = Policy {
        allow_debug: args.allow_debug,
        allow_service_td: args.allow_service_td,
        require_sept_ve_disable: !args.allow_sept_ve,
        allow_simulation: anchor.as_ref().is_some_and(TrustAnchor::is_simulation),
        accepted_tcb_statuses: (!args.accept_tcb.is_empty())
            .then(|| args.accept_tcb.iter().copied().collect()),
        ..Policy::default()
    };
    let verifiers = match anchor {
        Some(anchor) => Verifiers::with_anchor(anchor),
        None => Verifiers::production(),
    };
    let outcome = verifiers.verify_and_appraise(&evidence, &inputs, &policy, args.at);
    let report = verify_report(&outcome, args.at);
    match format {
        Format::Json | Format::Yaml => print_data(format, &report),
        Format::Text => print_verify_text(&report),
    }
    Ok(if report.accepted {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn load_anchor(path: &Path) -> Result<TrustAnchor> {
    let bytes = read(path)?;
    let cert = Cert::from_der_or_pem(&bytes)
        .with_context(|| format!("{} is not a certificate", path.display()))?;
    let anchor = if cert.is_simulation() {
        TrustAnchor::simulation(&bytes)?
    } else {
        TrustAnchor::from_root(&bytes)?
    };
    Ok(anchor)
}

fn verify_report(outcome: &Outcome, at: OffsetDateTime) -> VerifyReport {
    let claims = outcome.claims.clone();
    VerifyReport {
        accepted: outcome.error.is_none() && claims.is_some(),
        tee: outcome.tee,
        simulated: claims.as_ref().is_some_and(|c| c.simulated),
        tcb_status: claims.as_ref().and_then(|c| c.tcb_status),
        advisory_ids: claims
            .as_ref()
            .map(|c| c.advisory_ids.clone())
            .unwrap_or_default(),
        error: outcome.error.as_ref().map(|e| e.to_string()),
        error_kind: outcome.error.as_ref().map(|e| e.kind().to_string()),
        evidence_encoding: outcome.encoding.map(|e| e.to_string()),
        verified_at: attest::x509::rfc3339(at),
        claims,
    }
}

fn print_verify_text(r: &VerifyReport) {
    let tee = r
        .tee
        .map_or("unknown evidence".to_string(), |t| t.to_string());
    let verdict = if r.accepted { "ACCEPTED" } else { "REJECTED" };
    let sim = if r.simulated {
        "  [SIMULATED: not hardware evidence]"
    } else {
        ""
    };
    outln!("{verdict}  {tee}{sim}");
    if let Some(e) = &r.error {
        field("reason", e);
    }
    field("verified at", &r.verified_at);
    if let Some(enc) = &r.evidence_encoding {
        field("evidence encoding", enc);
    }
    if let Some(c) = &r.claims {
        print_claims(c);
    }
}

/// Print the claims people look at first, one per line.
pub(crate) fn print_claims(c: &Claims) {
    use attest::Measurements;
    field(
        "TCB status",
        c.tcb_status.map_or("n/a".into(), |s| s.to_string()),
    );
    if !c.advisory_ids.is_empty() {
        field("advisories", c.advisory_ids.join(", "));
    }
    field("debug", c.debug);
    match &c.measurements {
        Measurements::Sgx(m) => {
            field("MRENCLAVE", hex::encode(m.mr_enclave));
            field("MRSIGNER", hex::encode(m.mr_signer));
            field(
                "ISVPRODID/ISVSVN",
                format!("{}/{}", m.isv_prod_id, m.isv_svn),
            );
        }
        Measurements::Tdx(m) => {
            field("MRTD", hex::encode(m.mr_td));
            for (i, r) in m.rtmr.iter().enumerate() {
                field(&format!("RTMR{i}"), hex::encode(r.0));
            }
            field("TD_ATTRIBUTES", hex::encode(m.td_attributes));
        }
        Measurements::Snp(m) => {
            field("MEASUREMENT", hex::encode(m.measurement));
            field("HOST_DATA", hex::encode(m.host_data));
            field("POLICY", format!("{:#x}", m.policy));
            field("VMPL", m.vmpl);
            let t = m.reported_tcb;
            field(
                "REPORTED_TCB",
                format!(
                    "bl {} tee {} snp {} ucode {}",
                    t.bootloader, t.tee, t.snp, t.microcode
                ),
            );
        }
        _ => {}
    }
    field("REPORT_DATA", hex::encode(c.report_data));
}

fn inspect(args: InspectArgs, format: Format) -> Result<ExitCode> {
    let bytes = read(&args.evidence)?;
    let inspected = attest::evidence::inspect(&bytes, args.tee)?;
    match format {
        Format::Json | Format::Yaml => print_data(format, &inspected),
        Format::Text => out!("{}", indented_text(&inspected)),
    }
    Ok(ExitCode::SUCCESS)
}

/// Render JSON as indented `key: value` lines, which read better than braces for people.
fn indented_text(value: &serde_json::Value) -> String {
    fn walk(v: &serde_json::Value, indent: usize, out: &mut String) {
        let pad = "  ".repeat(indent);
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    if v.is_object() || (v.is_array() && !is_scalar_array(v)) {
                        out.push_str(&format!("{pad}{k}:\n"));
                        walk(v, indent + 1, out);
                    } else {
                        out.push_str(&format!("{pad}{k}: {}\n", scalar(v)));
                    }
                }
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    out.push_str(&format!("{pad}-\n"));
                    walk(item, indent + 1, out);
                }
            }
            other => out.push_str(&format!("{pad}{}\n", scalar(other))),
        }
    }
    fn is_scalar_array(v: &serde_json::Value) -> bool {
        v.as_array()
            .is_some_and(|a| a.iter().all(|x| !x.is_object() && !x.is_array()))
    }
    fn scalar(v: &serde_json::Value) -> String {
        match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
    let mut out = String::new();
    walk(value, 0, &mut out);
    out
}

fn simulate(args: SimulateArgs, format: Format) -> Result<ExitCode> {
    let report_data = parse_report_data(&args.report_data)?;
    let tee: TeeKind = args.tee.parse().map_err(anyhow::Error::msg)?;
    let now = OffsetDateTime::now_utc();
    let options = attest::sim::SimOptions {
        debug: args.debug,
        tcb: args.tcb,
        ..attest::sim::SimOptions::default()
    };
    let sim = attest::sim::simulate(tee, &report_data, &options, now)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut written = Vec::new();
    for (name, bytes) in sim.files() {
        let path = args.out.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path.display().to_string());
    }
    let at = attest::x509::rfc3339(now);
    let command = sim.verify_command(&args.out, &at);
    match format {
        Format::Json | Format::Yaml => print_data(
            format,
            &serde_json::json!({
                "tee": tee,
                "simulated": true,
                "files": written,
                "verify_at": at,
                "verify_command": command,
            }),
        ),
        Format::Text => {
            outln!(
                "SIMULATED {tee} evidence (not hardware) written to {}",
                args.out.display()
            );
            for w in &written {
                outln!("  {w}");
            }
            outln!("verify it with:\n  {command}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Parse up to 64 bytes of hex, zero-padded to 64.
pub(crate) fn parse_report_data(text: &str) -> Result<[u8; 64]> {
    let bytes = hex::decode(text.trim_start_matches("0x"))
        .context("--report-data must be hex (up to 128 hex digits)")?;
    if bytes.len() > 64 {
        bail!(
            "--report-data is {} bytes; the hardware field holds 64",
            bytes.len()
        );
    }
    let mut out = [0u8; 64];
    out[..bytes.len()].copy_from_slice(&bytes);
    Ok(out)
}
