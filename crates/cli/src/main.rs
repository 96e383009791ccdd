//! `cloister`: the single command line of cloister. Thin: argument parsing, file I/O and
//! output; all logic lives in the library crates.

mod cmd;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::output::Format;

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
    /// Simulate SGX, TDX and SNP evidence and verify it through the real verifiers.
    Quickstart(cmd::quickstart::QuickstartArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Evidence(c) => cmd::evidence::run(c, cli.output),
        Command::Platform(c) => cmd::platform::run(c, cli.output),
        Command::Quickstart(a) => cmd::quickstart::run(a, cli.output),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            output::print_usage_error(&err, cli.output);
            ExitCode::from(2)
        }
    }
}
