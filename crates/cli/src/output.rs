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
    /// The same data as YAML.
    Yaml,
}

/// Print `value` as JSON or YAML (text formats print JSON too: callers handle text first).
pub(crate) fn print_data<T: Serialize>(format: Format, value: &T) {
    if format == Format::Yaml {
        match serde_yaml_ng::to_string(value) {
            Ok(text) => out!("{text}"),
            Err(e) => eprintln!("error: cannot serialize output: {e}"),
        }
    } else {
        print_json(value);
    }
}

/// Print `value` as pretty JSON.
pub(crate) fn print_json<T: Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => outln!("{text}"),
        Err(e) => eprintln!("error: cannot serialize output: {e}"),
    }
}

/// An error and its causes, `: `-separated, each said once: a cause whose words its effect
/// already quotes (many errors embed their source's text) is not repeated.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    join_causes(std::iter::successors(Some(err), |e| e.source()))
}

fn join_causes<'a>(causes: impl Iterator<Item = &'a (dyn std::error::Error + 'static)>) -> String {
    let mut out = String::new();
    for cause in causes {
        let text = cause.to_string();
        if out.contains(text.as_str()) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// Report a usage or I/O error (exit status 2): JSON on stdout with `-o json`, text on stderr.
pub(crate) fn print_usage_error(err: &anyhow::Error, format: Format) {
    let message = join_causes(err.chain());
    match format {
        Format::Json | Format::Yaml => print_data(
            format,
            &serde_json::json!({
                "accepted": false,
                "error": message,
                "error_kind": "usage",
            }),
        ),
        Format::Text => eprintln!("error: {message}"),
    }
}

/// Write `label  value` lines aligned for reading.
pub(crate) fn field(label: &str, value: impl std::fmt::Display) {
    outln!("  {label:<18} {value}");
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_cause_is_said_once() {
        let inner = std::io::Error::other("connection refused");
        let err = anyhow::Error::new(inner)
            .context("error sending request for url (https://127.0.0.1:9/x): connection refused")
            .context("reaching the coordinator at https://127.0.0.1:9");
        let text = super::join_causes(err.chain());
        assert_eq!(text.matches("connection refused").count(), 1, "{text}");
        assert_eq!(text.matches("https://127.0.0.1:9").count(), 2, "{text}");
        assert!(text.starts_with("reaching the coordinator"), "{text}");
    }
}
