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
    /// Run in an image pulled by `cloister image pull --dest DIR`: the workload's files go to
    /// `/cloister` in its root, the command defaults to the image's entrypoint and command,
    /// and the environment is the image's with the manifest's over it (needs root, for
    /// chroot).
    #[arg(long, value_name = "DIR")]
    bundle: Option<PathBuf>,
    #[command(flatten)]
    tee: TeeArgs,
    /// The command to run, after `--` (optional with --bundle).
    #[arg(last = true, required_unless_present = "bundle")]
    command: Vec<String>,
}

/// Where the workload's files go inside a bundle's root, and what its `CLOISTER_*` paths say.
const BUNDLE_FILES: &str = "/cloister";

/// What a pulled image says about running it.
struct ImageDefaults {
    argv: Vec<String>,
    env: Vec<(String, String)>,
}

fn image_defaults(bundle: &std::path::Path) -> Result<ImageDefaults> {
    let path = bundle.join(image::pull::CONFIG_FILE);
    let text = std::fs::read(&path).with_context(|| {
        format!(
            "reading {} (pull the image with `cloister image pull --dest`)",
            path.display()
        )
    })?;
    let config: serde_json::Value =
        serde_json::from_slice(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let strings = |key: &str| -> Vec<String> {
        config["config"][key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut argv = strings("Entrypoint");
    argv.extend(strings("Cmd"));
    let env = strings("Env")
        .into_iter()
        .filter_map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    Ok(ImageDefaults { argv, env })
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
    let Some(bundle) = &args.bundle else {
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
    };
    // In the image's root: the files inside it, its defaults under the manifest's.
    let rootfs = bundle.join("rootfs");
    let defaults = image_defaults(bundle)?;
    let rendered = launcher::render(
        &activation,
        &key,
        &args.workload,
        std::path::Path::new(BUNDLE_FILES),
    )?;
    launcher::write_tree(
        &rootfs.join(BUNDLE_FILES.trim_start_matches('/')),
        &rendered.files,
    )?;
    let argv = [&rendered.prepared.argv, &args.command, &defaults.argv]
        .into_iter()
        .find(|argv| !argv.is_empty())
        .context("no command to run: the manifest, the command line and the image name none")?;
    // The workload's environment replaces ours, PATH too: find chroot with ours.
    let chroot = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("chroot"))
        .find(|path| path.is_file())
        .context("chroot (coreutils) is not on PATH")?;
    let error = std::process::Command::new(chroot)
        .arg(&rootfs)
        .args(argv)
        .env_clear()
        .envs(defaults.env)
        .envs(&rendered.prepared.env)
        .exec();
    bail!(
        "cannot run {} in {}: {error} (chroot needs root)",
        argv[0],
        rootfs.display()
    )
}
