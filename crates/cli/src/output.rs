//! Output helpers: every command prints for people by default and one JSON object with `-o json`.

use serde::Serialize;

/// `println!` that ignores write errors: a closed pipe (`cloister ... | head`) must end output
/// quietly, not panic.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `print!` that ignores write errors.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($arg)*);
    }};
}

pub(crate) use {out, outln};

/// How a command prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// Human-readable text.
    Text,
    /// One JSON object on stdout.
    Json,
}

/// Print `value` as pretty JSON.
pub(crate) fn print_json<T: Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => outln!("{text}"),
        Err(e) => eprintln!("error: cannot serialize output: {e}"),
    }
}

/// Report a usage or I/O error (exit status 2): JSON on stdout with `-o json`, text on stderr.
pub(crate) fn print_usage_error(err: &anyhow::Error, format: Format) {
    match format {
        Format::Json => print_json(&serde_json::json!({
            "accepted": false,
            "error": format!("{err:#}"),
            "error_kind": "usage",
        })),
        Format::Text => eprintln!("error: {err:#}"),
    }
}

/// Write `label  value` lines aligned for reading.
pub(crate) fn field(label: &str, value: impl std::fmt::Display) {
    outln!("  {label:<18} {value}");
}
