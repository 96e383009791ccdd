//! `cloister platform check`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use crate::output::{Format, outln, print_data};

/// Platform subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum PlatformCommand {
    /// Say which attester this machine has, or why it has none.
    Check,
}

/// Run a platform subcommand.
pub(crate) fn run(cmd: PlatformCommand, format: Format) -> Result<ExitCode> {
    match cmd {
        PlatformCommand::Check => {
            let detection = attest::attester::detect(Path::new("/"));
            match format {
                Format::Json | Format::Yaml => print_data(format, &detection),
                Format::Text => outln!("{detection}"),
            }
            Ok(if detection.selected.is_some() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}
