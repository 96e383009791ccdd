//! Parse and validation errors.

use std::fmt;

/// Why a manifest could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The input is empty or blank.
    #[error("the manifest is empty")]
    Empty,
    /// The input is larger than a manifest may be.
    #[error("the manifest is {size} bytes; at most {limit} are accepted")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Lists and mappings are nested deeper than a manifest may nest them.
    #[error("the manifest nests lists and mappings deeper than {limit} levels (line {line})")]
    TooDeep {
        /// The limit.
        limit: usize,
        /// Where the limit was passed.
        line: usize,
    },
    /// The document has more values than a manifest may have.
    #[error("the manifest has more than {limit} values (line {line})")]
    TooManyValues {
        /// The limit.
        limit: usize,
        /// Where the limit was passed.
        line: usize,
    },
    /// The YAML does not scan.
    #[error("the manifest is not valid YAML: {reason}")]
    YamlSyntax {
        /// What is wrong, and where.
        reason: String,
    },
    /// The input starts like JSON but is not valid JSON.
    #[error("the manifest is not valid JSON: {source}")]
    Json {
        /// The JSON error (with line and column).
        #[source]
        source: serde_json::Error,
    },
    /// The input is not valid YAML.
    #[error("the manifest is not valid YAML: {source}")]
    Yaml {
        /// The YAML error (with line and column).
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// A YAML construct with no JSON equivalent.
    #[error("the manifest uses YAML that has no JSON equivalent: {reason}")]
    YamlValue {
        /// What was found.
        reason: String,
    },
    /// The document is not a mapping at the top.
    #[error("the manifest must be a mapping (JSON object), found {found}")]
    NotAMapping {
        /// What the top-level value is.
        found: &'static str,
    },
    /// A value has the wrong type or form.
    #[error("{path}: {source}")]
    Schema {
        /// JSON path of the value, in canonical key names.
        path: String,
        /// What was wrong.
        #[source]
        source: serde_json::Error,
    },
    /// Writing canonical JSON failed.
    #[error("cannot write the manifest as JSON: {source}")]
    Serialize {
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// Writing canonical YAML failed.
    #[error("cannot write the manifest as YAML: {source}")]
    SerializeYaml {
        /// The cause.
        #[source]
        source: serde_yaml_ng::Error,
    },
}

/// One rule a manifest breaks, at its JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// JSON path, e.g. `$.workloads.frontend.package`.
    pub path: String,
    /// Which rule, and how to fix it.
    pub reason: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// Every rule a manifest breaks (never empty when returned as an error).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl ValidationErrors {
    /// Record one error.
    pub(crate) fn push(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.0.push(ValidationError {
            path: path.into(),
            reason: reason.into(),
        });
    }

    /// The paths, in order (handy for tests and for UIs that highlight fields).
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|e| e.path.as_str())
    }

    pub(crate) fn into_result(self) -> Result<(), ValidationErrors> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}
