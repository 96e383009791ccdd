//! `cloister launch`: attest, activate, set up, exec.

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use attest::attester::{Attester, SimMeasurements, SimulatedAttester};
use attest::{TcbStatus, TeeKind};
use clap::Args;
use launcher::WorkloadKey;
use launcher::client::certs_from_pem;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::cmd::conn::runtime;

/// Arguments of `launch`.
#[derive(Debug, Args)]
pub(crate) struct LaunchArgs {
    /// The coordinator's URL.
    #[arg(long, env = "CLOISTER_COORDINATOR")]
    coordinator: String,
    /// The workload type to activate as.
    #[arg(long, env = "CLOISTER_WORKLOAD")]
    workload: String,
    /// The instance UUID (keeps per-instance secrets across restarts).
    #[arg(long, env = "CLOISTER_UUID")]
    uuid: Option<String>,
    /// The deployment root certificate the coordinator must present a chain to.
    #[arg(long, env = "CLOISTER_ROOT_CA")]
    root_ca: PathBuf,
    /// Where credentials and relative manifest files are written.
    #[arg(long, default_value = "cloister-workload")]
    workdir: PathBuf,
    #[command(flatten)]
    tee: TeeArgs,
    /// The command to run, after `--`.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// The TEE a workload runs in: this machine's, or the simulated one.
#[derive(Debug, Args)]
pub(crate) struct TeeArgs {
    /// Use the simulated attester on this machine's simulated platform.
    #[arg(long)]
    simulation: bool,
    /// Simulated TEE kind.
    #[arg(long, default_value = "sgx")]
    sim_tee: TeeKind,
    /// Simulated MRENCLAVE (hex).
    #[arg(long)]
    sim_mrenclave: Option<String>,
    /// Simulate a debug TEE.
    #[arg(long)]
    sim_debug: bool,
    /// The TCB status of the simulated platform (sgx, tdx).
    #[arg(long, default_value = "UpToDate")]
    sim_tcb: TcbStatus,
}

impl TeeArgs {
    /// Whether the TEE is simulated.
    pub(crate) fn simulated(&self) -> bool {
        self.simulation
    }

    /// The attester: this machine's TEE, or the simulated one.
    pub(crate) fn attester(&self) -> Result<Box<dyn Attester>> {
        if !self.simulation {
            let detection = attest::attester::detect(std::path::Path::new("/"));
            return detection.attester().context(
                "no TEE attester on this machine; pass --simulation to use a simulated TEE",
            );
        }
        let now = OffsetDateTime::now_utc();
        let platform = sim_platform(now)?;
        let mut measurements = SimMeasurements::default();
        if let Some(hex_text) = &self.sim_mrenclave {
            measurements.sgx.mr_enclave = hex::decode(hex_text)
                .ok()
                .and_then(|b| b.try_into().ok())
                .context("--sim-mrenclave must be 32 bytes of hex")?;
        }
        Ok(Box::new(
            SimulatedAttester::on_platform(self.sim_tee, &platform, now)?
                .with_measurements(measurements)
                .with_debug(self.sim_debug)
                .with_tcb(self.sim_tcb),
        ))
    }

    /// A secret only this TEE derives (in simulation: the simulated platform's seed).
    pub(crate) fn sealing_key(&self) -> Result<Zeroizing<Vec<u8>>> {
        if self.simulation {
            let seed = sim_platform(OffsetDateTime::now_utc())?.sealing_seed();
            return Ok(Zeroizing::new(seed.to_vec()));
        }
        Ok(self.attester()?.sealing_key()?)
    }
}

fn sim_platform(now: OffsetDateTime) -> Result<attest::sim::SimPlatform> {
    Ok(attest::sim::SimPlatform::open(
        &attest::sim::SimPlatform::default_dir(),
        now,
    )?)
}

/// The deployment root in `path` (PEM), DER.
pub(crate) fn read_root(path: &std::path::Path) -> Result<Vec<u8>> {
    let root_pem = std::fs::read_to_string(path)
        .with_context(|| format!("reading the root certificate {}", path.display()))?;
    certs_from_pem("root certificate", &root_pem)?
        .into_iter()
        .next()
        .context("the root certificate file holds no certificate")
}

/// Where and as what a workload activates.
pub(crate) struct Target<'a> {
    pub(crate) tee: &'a TeeArgs,
    pub(crate) coordinator: &'a str,
    pub(crate) root_ca: &'a std::path::Path,
    pub(crate) workload: &'a str,
    pub(crate) uuid: Option<&'a str>,
}

/// Generate the workload's key, attest it (and the module a keep runs), and activate.
pub(crate) fn activate(
    target: &Target<'_>,
    module_sha256: Option<[u8; 32]>,
) -> Result<(api::ActivationResponse, WorkloadKey)> {
    let attester = target.tee.attester()?;
    let root = read_root(target.root_ca)?;
    let key = WorkloadKey::generate()?;
    let request = launcher::Request {
        coordinator: target.coordinator,
        root_der: &root,
        workload: target.workload,
        uuid: target.uuid,
        module_sha256,
    };
    let activation =
        runtime()?.block_on(launcher::activate(&request, attester.as_ref(), &key, &key))?;
    Ok((activation, key))
}

/// Run `launch`: on success this process becomes the workload.
pub(crate) fn run(args: LaunchArgs) -> Result<ExitCode> {
    let target = Target {
        tee: &args.tee,
        coordinator: &args.coordinator,
        root_ca: &args.root_ca,
        workload: &args.workload,
        uuid: args.uuid.as_deref(),
    };
    let (activation, key) = activate(&target, None)
        .with_context(|| format!("activating as workload {}", args.workload))?;
    let prepared = launcher::prepare(&activation, &key, &args.workload, &args.workdir)?;
    let argv = if prepared.argv.is_empty() {
        args.command.clone()
    } else {
        prepared.argv.clone()
    };
    let Some((program, rest)) = argv.split_first() else {
        bail!("no command to run");
    };
    let error = std::process::Command::new(program)
        .args(rest)
        .envs(&prepared.env)
        .exec();
    bail!("cannot run {program}: {error}")
}
