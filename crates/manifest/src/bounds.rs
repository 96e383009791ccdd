//! Bounds on a manifest document, checked on its bytes before a tree is built: size, nesting
//! depth and number of values. Anyone may upload the first manifest, so what parsing it costs
//! must not grow faster than these.
//!
//! JSON is scanned byte by byte (strings skipped); YAML through a streaming event parser that
//! stops at the first bound it passes, so a megabyte of `[` costs a pass over the bytes, not a
//! megabyte of events.

use crate::ManifestError;

/// The largest manifest accepted, in bytes.
pub const MAX_MANIFEST_BYTES: usize = 1 << 20;
/// The deepest nesting of lists and mappings accepted.
pub const MAX_DEPTH: usize = 64;
/// The most values (scalars, lists, mappings, aliases) a manifest may have.
pub const MAX_VALUES: usize = 100_000;

/// Nesting and values seen so far, refused past the bounds.
#[derive(Default)]
struct Tally {
    depth: usize,
    values: usize,
}

impl Tally {
    /// A list or mapping opens at `line`.
    fn open(&mut self, line: usize) -> Result<(), ManifestError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ManifestError::TooDeep {
                limit: MAX_DEPTH,
                line,
            });
        }
        self.value(line)
    }

    fn close(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// A value starts at `line`.
    fn value(&mut self, line: usize) -> Result<(), ManifestError> {
        self.values += 1;
        if self.values > MAX_VALUES {
            return Err(ManifestError::TooManyValues {
                limit: MAX_VALUES,
                line,
            });
        }
        Ok(())
    }
}

/// Check a JSON document's bounds. Lists and mappings count at their bracket, their members
/// at the comma before them (all but the first): about one per value.
pub(crate) fn check_json(bytes: &[u8]) -> Result<(), ManifestError> {
    check_size(bytes)?;
    let (mut tally, mut line) = (Tally::default(), 1usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in bytes {
        if b == b'\n' {
            line += 1;
        }
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => tally.open(line)?,
            b']' | b'}' => tally.close(),
            b',' => tally.value(line)?,
            _ => {}
        }
    }
    Ok(())
}

/// Check a YAML document's bounds (and that it scans).
pub(crate) fn check_yaml(bytes: &[u8]) -> Result<(), ManifestError> {
    use saphyr_parser::{Event, Parser};
    check_size(bytes)?;
    let text = std::str::from_utf8(bytes).map_err(|e| ManifestError::YamlSyntax {
        reason: format!("it is not UTF-8 ({e})"),
    })?;
    let mut tally = Tally::default();
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| ManifestError::YamlSyntax {
            reason: e.to_string(),
        })?;
        let line = span.start.line();
        match event {
            Event::SequenceStart(..) | Event::MappingStart(..) => tally.open(line)?,
            Event::SequenceEnd | Event::MappingEnd => tally.close(),
            Event::Scalar(..) | Event::Alias(_) => tally.value(line)?,
            _ => {}
        }
    }
    Ok(())
}

fn check_size(bytes: &[u8]) -> Result<(), ManifestError> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge {
            size: bytes.len(),
            limit: MAX_MANIFEST_BYTES,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn json_strings_do_not_count_as_structure() {
        let nested_in_a_string = format!(r#"{{"a": "{}\"]]"}}"#, "[".repeat(1000));
        check_json(nested_in_a_string.as_bytes()).unwrap();
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(matches!(
            check_json(deep.as_bytes()),
            Err(ManifestError::TooDeep { .. })
        ));
        let at_limit = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        check_json(at_limit.as_bytes()).unwrap();
    }

    #[test]
    fn yaml_block_and_flow_nesting_both_count() {
        let block: String = (0..=MAX_DEPTH)
            .map(|i| format!("{}- \n", "  ".repeat(i)))
            .collect();
        assert!(matches!(
            check_yaml(block.as_bytes()),
            Err(ManifestError::TooDeep { .. })
        ));
        let compact = format!("{}x\n", "- ".repeat(MAX_DEPTH + 1));
        assert!(matches!(
            check_yaml(compact.as_bytes()),
            Err(ManifestError::TooDeep { .. })
        ));
        let policy =
            "kbs:\n  resource_policy: |\n    package policy\n    allow if { [[[[[[1]]]]]] }\n";
        check_yaml(policy.as_bytes()).unwrap();
    }

    #[test]
    fn too_many_values_are_refused_in_either_form() {
        let json = format!("[{}1]", "1,".repeat(MAX_VALUES));
        assert!(matches!(
            check_json(json.as_bytes()),
            Err(ManifestError::TooManyValues { .. })
        ));
        let yaml = format!("[{}1]", "1,".repeat(MAX_VALUES));
        assert!(matches!(
            check_yaml(yaml.as_bytes()),
            Err(ManifestError::TooManyValues { .. })
        ));
    }
}
