//! `cloister`: the single command line of cloister. Thin: argument parsing, file I/O and
//! output; all logic lives in the library crates.

mod cmd;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::output::Format;

/// mimalloc instead of the system allocator: a coordinator allocates on every request, and
/// glibc's malloc took about a tenth of its CPU per activation.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// cloister — confidential-computing control plane: evidence, attestation, workloads.
#[derive(Debug, Parser)]
#[command(name = "cloister", version, about, propagate_version = true)]
struct Cli {
    /// Output format: human-readable text or one JSON object.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Format::Text)]
    output: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Verify, inspect and simulate TEE evidence.
    #[command(subcommand)]
    Evidence(cmd::evidence::EvidenceCommand),
    /// Facts about this machine's TEE.
    #[command(subcommand)]
    Platform(cmd::platform::PlatformCommand),
    /// The whole flow on a simulated TEE: coordinator, verification, manifest, two workloads.
    Quickstart(cmd::quickstart::QuickstartArgs),
    /// Simulate SGX, TDX and SNP evidence and verify it through the real verifiers.
    EvidenceTour(cmd::tour::TourArgs),
    /// Run the coordinator.
    #[command(subcommand)]
    Coordinator(cmd::coordinator::CoordinatorCommand),
    /// Attest, activate with the coordinator, and exec a workload.
    Launch(cmd::launch::LaunchArgs),
    /// Run WebAssembly workloads in an attested keep.
    #[command(subcommand)]
    Keep(cmd::keep::KeepCommand),
    /// Confidential images: encrypt, pull (attested, checked, unpacked), inspect.
    #[command(subcommand)]
    Image(cmd::image::ImageCommand),
    /// Verify a coordinator's evidence and print the deployment's attestation statement.
    Verify(cmd::deploy::VerifyArgs),
    /// Set, get, validate or convert the manifest.
    #[command(subcommand)]
    Manifest(cmd::deploy::ManifestCommand),
    /// The coordinator's state.
    Status(cmd::conn::Conn),
    /// Upload a recovery share to a coordinator in recovery mode (after verifying it).
    Recover(cmd::recover::RecoverArgs),
    /// Read and verify the coordinator's hash-chained audit log (needs a manifest user's
    /// certificate).
    Audit(cmd::deploy::AuditArgs),
    /// Print one of the deployment's CA certificates.
    Certificate {
        /// Which certificate.
        #[arg(value_enum)]
        which: cmd::deploy::Which,
        #[command(flatten)]
        conn: cmd::conn::Conn,
    },
    /// Read or set secrets.
    #[command(subcommand)]
    Secret(cmd::deploy::SecretCommand),
    /// The guest side of the key-broker protocol (CoCo KBS 0.4.0).
    #[command(subcommand)]
    Kbs(cmd::kbs::KbsCommand),
    /// Example workloads the quickstart runs.
    #[command(subcommand, hide = true)]
    Example(cmd::example::ExampleCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Evidence(c) => cmd::evidence::run(c, cli.output),
        Command::Platform(c) => cmd::platform::run(c, cli.output),
        Command::Quickstart(a) => cmd::quickstart::run(a, cli.output),
        Command::EvidenceTour(a) => cmd::tour::run(a, cli.output),
        Command::Coordinator(c) => cmd::coordinator::run(c),
        Command::Launch(a) => cmd::launch::run(a),
        Command::Keep(c) => cmd::keep::run(c, cli.output),
        Command::Image(c) => cmd::image::run(c, cli.output),
        Command::Verify(a) => cmd::deploy::verify(a, cli.output),
        Command::Manifest(c) => cmd::deploy::manifest(c, cli.output),
        Command::Status(conn) => cmd::deploy::status(conn, cli.output),
        Command::Audit(a) => cmd::deploy::audit(a, cli.output),
        Command::Recover(a) => cmd::recover::recover(a, cli.output),
        Command::Certificate { which, conn } => cmd::deploy::certificate(which, conn),
        Command::Secret(c) => cmd::deploy::secret(c, cli.output),
        Command::Example(c) => cmd::example::run(c),
        Command::Kbs(c) => cmd::kbs::run(c, cli.output),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            output::print_usage_error(&err, cli.output);
            ExitCode::from(2)
        }
    }
}
