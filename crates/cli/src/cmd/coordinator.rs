//! `cloister coordinator serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use attest::TeeKind;
use clap::{Args, Subcommand};

use crate::cmd::conn::runtime;
use crate::output::outln;

/// `coordinator` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum CoordinatorCommand {
    /// Run the coordinator.
    Serve(ServeArgs),
}

/// Arguments of `coordinator serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:4433")]
    listen: SocketAddr,
    /// Directory of the sealed state.
    #[arg(long, env = "CLOISTER_DATA_DIR", default_value = "cloister-data")]
    data_dir: PathBuf,
    /// Extra DNS names or IPs for the coordinator's certificate.
    #[arg(long = "dns-name")]
    dns_names: Vec<String>,
    /// Run on a simulated TEE and accept simulated evidence. Never in production.
    #[arg(long)]
    simulation: bool,
    /// The simulated platform's directory (shared with launchers on this machine).
    #[arg(long, env = "CLOISTER_SIM_DIR")]
    sim_dir: Option<PathBuf>,
    /// The TEE the simulated coordinator runs in.
    #[arg(long, default_value = "sgx")]
    sim_tee: TeeKind,
    /// Where DCAP collateral for SGX and TDX evidence comes from: Intel's PCS or a PCCS.
    #[arg(long, env = "CLOISTER_PCS_URL", default_value = pcs::INTEL_PCS)]
    pcs_url: String,
    /// A CA certificate (PEM or DER) to trust for the PCCS's (or KDS mirror's) HTTPS,
    /// besides the web PKI.
    #[arg(long = "pcs-ca")]
    pcs_cas: Vec<PathBuf>,
    /// Where AMD's ASK/ARK chains (for Azure SNP vTPM evidence) come from: AMD's KDS or a mirror.
    #[arg(long, env = "CLOISTER_KDS_URL", default_value = pcs::AMD_KDS)]
    kds_url: String,
    /// Keep the state in etcd, shared by every replica started with the same store:
    /// `etcd://host:port[,host:port…][/prefix]`. Without it, the state is a file in
    /// --data-dir.
    #[arg(long, env = "CLOISTER_STORE", value_name = "URL")]
    store: Option<String>,
    /// The CA certificate (PEM) of etcd's TLS; with it, the store is reached over TLS.
    #[arg(long, requires = "store")]
    etcd_ca: Option<PathBuf>,
    /// A client certificate (PEM) for etcd.
    #[arg(long, requires = "etcd_ca", requires = "etcd_key")]
    etcd_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, requires = "etcd_cert")]
    etcd_key: Option<PathBuf>,
    /// The URL other replicas reach this one at (default: https:// and the listening address).
    #[arg(long, requires = "store")]
    advertise: Option<String>,
    /// In simulation, the name of this simulated machine: its sealing key differs from other
    /// machines' (replicas then join by attestation, as on real hardware).
    #[arg(long, hide = true)]
    sim_machine: Option<String>,
    /// Connections served at once; more wait in the kernel's backlog. Keep it below the
    /// process's open-file limit (`ulimit -n`).
    #[arg(long, default_value_t = coordinator::Limits::default().max_connections)]
    max_connections: usize,
    /// Seconds a client has for its TLS handshake and for each request's headers, and that an
    /// idle keep-alive connection is kept; a request body and a stalled response get three
    /// times as long.
    #[arg(long, value_name = "SECONDS", default_value_t = coordinator::Limits::default().header_timeout.as_secs())]
    client_timeout: u64,
    /// The longest lifetime, in seconds, of an admin JWT for the key broker (`exp` − `iat`).
    #[arg(long, value_name = "SECONDS", default_value_t = coordinator::Limits::default().admin_token_lifetime.as_secs())]
    admin_token_lifetime: u64,
}

/// What callers may spend, from the flags.
fn limits(args: &ServeArgs) -> coordinator::Limits {
    let client = Duration::from_secs(args.client_timeout.max(1));
    coordinator::Limits {
        max_connections: args.max_connections,
        handshake_timeout: client,
        header_timeout: client,
        body_timeout: client * 3,
        write_stall_timeout: client * 3,
        admin_token_lifetime: Duration::from_secs(args.admin_token_lifetime),
        ..coordinator::Limits::default()
    }
}

/// The etcd store the flags name, if any.
fn etcd_location(args: &ServeArgs) -> Result<Option<coordinator::store::etcd::Location>> {
    let Some(url) = &args.store else {
        return Ok(None);
    };
    let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let tls = match &args.etcd_ca {
        Some(ca) => Some(coordinator::store::etcd::Tls {
            ca_pem: read(ca)?,
            identity: match (&args.etcd_cert, &args.etcd_key) {
                (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
                _ => None,
            },
        }),
        None => None,
    };
    Ok(Some(coordinator::store::etcd::Location::parse(url, tls)?))
}

/// Run a `coordinator` subcommand.
pub(crate) fn run(command: CoordinatorCommand) -> Result<ExitCode> {
    let CoordinatorCommand::Serve(args) = command;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CLOISTER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let limits = limits(&args);
    let etcd = etcd_location(&args)?;
    let config = coordinator::Config {
        data_dir: args.data_dir,
        dns_names: args.dns_names,
        simulation: args.simulation,
        sim_dir: args
            .sim_dir
            .unwrap_or_else(attest::sim::SimPlatform::default_dir),
        sim_tee: args.sim_tee,
        platform_root: "/".into(),
        pcs_url: args.pcs_url,
        pcs_roots: args
            .pcs_cas
            .iter()
            .map(|path| {
                let bytes = std::fs::read(path)
                    .with_context(|| format!("reading --pcs-ca {}", path.display()))?;
                attest::x509::Cert::from_der_or_pem(&bytes)
                    .map(attest::x509::Cert::into_der)
                    .with_context(|| format!("--pcs-ca {} is not a certificate", path.display()))
            })
            .collect::<Result<_>>()?,
        kds_url: args.kds_url,
        etcd,
        advertise: args.advertise.clone(),
        sim_machine: args.sim_machine.clone(),
        limits,
    };
    runtime()?.block_on(async {
        let running = coordinator::serve(&config, args.listen).await?;
        if config.simulation {
            eprintln!(
                "SIMULATION: the coordinator runs on a simulated {} platform and accepts simulated evidence",
                config.sim_tee
            );
        }
        outln!("listening on https://{}", running.addr);
        running.wait().await;
        Ok(ExitCode::SUCCESS)
    })
}
