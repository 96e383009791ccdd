//! `cloister keep`: WebAssembly workloads in an attested keep.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use keep::artifact::ArtifactKey;
use keep::{DirBind, KeepEngine, Kind, Loaded, ModuleSource};
use launcher::WorkloadKey;
use launcher::ttls::TlsIdentity;
use serde_json::json;

use crate::cmd::conn::runtime;
use crate::cmd::launch::{self, Target, TeeArgs};
use crate::output::Format;

/// The largest module or artifact a keep reads.
const MAX_MODULE_BYTES: u64 = 512 << 20;

/// `keep` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum KeepCommand {
    /// Attest the keep and the module, activate, then run the module (a WASI 0.2 command
    /// component or a WASI preview 1 module) with what the coordinator gave it.
    Run(RunArgs),
    /// Attest the keep and a wasi:http/proxy component, activate, then serve HTTPS with it:
    /// TLS ends in the keep, and each request gets a fresh instance.
    Serve(ServeArgs),
    /// Compile a module ahead of time for fast starts; the artifact is authenticated for this
    /// TEE and refused anywhere else.
    Compile(CompileArgs),
}

/// What `keep run` and `keep serve` share: the deployment, the workload, the module.
#[derive(Debug, Args)]
pub(crate) struct KeepArgs {
    /// The coordinator's URL.
    #[arg(long, env = "CLOISTER_COORDINATOR")]
    coordinator: String,
    /// The deployment root certificate the coordinator must present a chain to.
    #[arg(long, env = "CLOISTER_ROOT_CA")]
    root_ca: PathBuf,
    /// The workload type to activate as.
    #[arg(long, env = "CLOISTER_WORKLOAD")]
    workload: String,
    /// The instance UUID (keeps per-instance secrets across restarts).
    #[arg(long, env = "CLOISTER_UUID")]
    uuid: Option<String>,
    /// Mount a host directory the manifest allows: HOST:GUEST.
    #[arg(long = "dir", value_name = "HOST:GUEST")]
    dirs: Vec<DirBind>,
    /// A memory filesystem (tmpfs) for the workload's files [default: the first of
    /// $XDG_RUNTIME_DIR, /dev/shm, /run that is one].
    #[arg(long)]
    memory_dir: Option<PathBuf>,
    /// A registry that may be spoken to in plain HTTP (host:port; loopback ones always may).
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    insecure_registries: Vec<String>,
    #[command(flatten)]
    tee: TeeArgs,
    /// The module: a .wasm file, a `cloister keep compile` artifact, or an OCI artifact
    /// (`oci://registry/repository:tag`, one `application/wasm` layer, digest-checked).
    module: String,
}

/// Arguments of `keep run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    keep: KeepArgs,
    /// Arguments for the module (after `--`), unless the manifest sets argv.
    #[arg(last = true)]
    args: Vec<String>,
}

/// Arguments of `keep serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    keep: KeepArgs,
    /// Where to serve HTTPS.
    #[arg(long, default_value = "0.0.0.0:8443")]
    listen: SocketAddr,
}

/// Arguments of `keep compile`.
#[derive(Debug, Args)]
pub(crate) struct CompileArgs {
    /// The module to compile (.wasm).
    module: PathBuf,
    /// Where to write the artifact [default: the module's path with .cwasm].
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    tee: TeeArgs,
}

/// Run a `keep` subcommand.
pub(crate) fn run(command: KeepCommand, format: Format) -> Result<ExitCode> {
    init_logging();
    match command {
        KeepCommand::Run(args) => keep_run(args),
        KeepCommand::Serve(args) => keep_serve(args),
        KeepCommand::Compile(args) => compile(args, format),
    }
}

fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CLOISTER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
}

/// The module's bytes: read from a file, or pulled from a registry (digest-checked).
fn fetch_module(module: &str, insecure: &[String]) -> Result<(Vec<u8>, ModuleSource)> {
    if !(module.starts_with("oci://") || module.starts_with("docker://")) {
        let path = PathBuf::from(module);
        return Ok((read_module(&path)?, ModuleSource::File(path)));
    }
    let reference = image::Reference::parse(module)?;
    eprintln!("keep: pulling oci://{reference}");
    let registry = image::Registry::new(insecure)?;
    let pulled = runtime()?
        .block_on(registry.pull_layer(&reference, image::WASM_LAYER, MAX_MODULE_BYTES))
        .map_err(keep::KeepError::from)?;
    Ok((
        pulled.bytes,
        ModuleSource::Oci {
            reference,
            manifest_digest: pulled.manifest_digest,
        },
    ))
}

fn read_module(path: &Path) -> Result<Vec<u8>> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    anyhow::ensure!(
        size <= MAX_MODULE_BYTES,
        "{} holds {size} bytes; a keep reads modules of at most {MAX_MODULE_BYTES}",
        path.display()
    );
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn describe(loaded: &Loaded) -> String {
    let kind = match loaded.program.kind() {
        Kind::Module => "WASI preview 1 module",
        Kind::Component => "WASI 0.2 component",
    };
    let precompiled = if loaded.precompiled {
        ", precompiled"
    } else {
        ""
    };
    format!(
        "{kind}{precompiled}, sha256 {}",
        hex::encode(loaded.module_sha256)
    )
}

/// A module attested and activated: what the coordinator gave it, placed for the keep.
struct Activated {
    loaded: Loaded,
    activation: api::ActivationResponse,
    key: WorkloadKey,
    prepared: keep::Prepared,
}

/// Load the module, attest it with the keep, activate, and place the workload's files.
fn activate(engine: &KeepEngine, args: &KeepArgs, module_args: &[String]) -> Result<Activated> {
    if args.tee.simulated() {
        eprintln!(
            "keep: SIMULATION — the TEE is simulated; this keep protects nothing from the host"
        );
    }
    let (bytes, source) = fetch_module(&args.module, &args.insecure_registries)?;
    let what = source.to_string();
    let loaded = engine.load(&what, &bytes, || {
        let seed = args
            .tee
            .sealing_key()
            .map_err(|e| keep::KeepError::ArtifactRejected {
                reason: format!("no key to check it with ({e:#})"),
            })?;
        Ok(ArtifactKey::derive(&seed))
    })?;
    drop(bytes);
    eprintln!("keep: {what}: {}", describe(&loaded));
    let files = keep::MemoryDir::create(args.memory_dir.as_deref())?;
    let target = Target {
        tee: &args.tee,
        coordinator: &args.coordinator,
        root_ca: &args.root_ca,
        workload: &args.workload,
        uuid: args.uuid.as_deref(),
    };
    let (activation, key) = launch::activate(&target, Some(loaded.module_sha256))
        .with_context(|| format!("activating {what} as workload {}", args.workload))?;
    if let Some(spec) = &activation.wasm {
        keep::check_source(&args.workload, spec, &source)?;
    }
    let program = match &source {
        ModuleSource::File(path) => path
            .file_name()
            .map_or_else(|| what.clone(), |n| n.to_string_lossy().into_owned()),
        ModuleSource::Oci { reference, .. } => {
            let name = reference.repository.rsplit('/').next().unwrap_or("module");
            format!("{name}.wasm")
        }
    };
    let prepared = keep::prepare(
        &activation,
        &key,
        &args.workload,
        &program,
        module_args,
        &args.dirs,
        files,
    )?;
    Ok(Activated {
        loaded,
        activation,
        key,
        prepared,
    })
}

fn keep_run(args: RunArgs) -> Result<ExitCode> {
    let engine = KeepEngine::new()?;
    let activated = activate(&engine, &args.keep, &args.args)?;
    let exit =
        keep::run(&engine, &activated.loaded, &activated.prepared.config).with_context(|| {
            format!(
                "running {} as workload {}",
                args.keep.module, args.keep.workload
            )
        })?;
    drop(activated);
    Ok(ExitCode::from(u8::try_from(exit.code).unwrap_or(1)))
}

fn keep_serve(args: ServeArgs) -> Result<ExitCode> {
    let runtime = runtime()?;
    // Bound before attesting, so that a taken port fails before an activation is spent.
    let listener = runtime.block_on(keep::serve::bind(args.listen))?;
    let local = listener
        .local_addr()
        .context("reading the listening address")?;
    let engine = KeepEngine::for_serving()?;
    let activated = activate(&engine, &args.keep, &[])?;
    let identity = TlsIdentity::new(&activated.activation, &activated.key)?;
    let server = Arc::new(keep::serve::Server::new(
        &engine,
        &activated.loaded,
        activated.prepared.config.clone(),
    )?);
    println!("serving https://{local}");
    runtime.block_on(async {
        tokio::select! {
            () = server.serve(listener, identity) => {}
            _ = tokio::signal::ctrl_c() => eprintln!("keep: interrupted; stopping"),
        }
    });
    drop(activated);
    Ok(ExitCode::SUCCESS)
}

fn compile(args: CompileArgs, format: Format) -> Result<ExitCode> {
    let engine = KeepEngine::new()?;
    let wasm = read_module(&args.module)?;
    let what = args.module.display().to_string();
    let seed = args.tee.sealing_key().context(
        "deriving the key that authenticates precompiled code (a TEE without a sealing key, \
         such as TDX, runs the .wasm itself, compiled in memory)",
    )?;
    let key = ArtifactKey::derive(&seed);
    let artifact = engine.precompile(&what, &wasm, &key)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.module.with_extension("cwasm"));
    std::fs::write(&out, &artifact).with_context(|| format!("writing {}", out.display()))?;
    let digest = hex::encode(keep::module_digest(&wasm));
    let simulated = args.tee.simulated();
    if format == Format::Text {
        println!(
            "compiled {what} (sha256 {digest}) → {} ({} bytes), authenticated for this TEE{}",
            out.display(),
            artifact.len(),
            if simulated {
                " (SIMULATION: under the simulated platform's key)"
            } else {
                ""
            }
        );
    } else {
        crate::output::print_data(
            format,
            &json!({
                "module": what,
                "module_sha256": digest,
                "artifact": out.display().to_string(),
                "bytes": artifact.len(),
                "simulated": simulated,
            }),
        );
    }
    Ok(ExitCode::SUCCESS)
}
