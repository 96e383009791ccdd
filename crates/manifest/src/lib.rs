//! The cloister deployment manifest: which workloads may run (their measurements), which secrets
//! they get, and who may change the deployment.
//!
//! * [`Manifest::parse`] reads JSON or YAML, in cloister's snake_case or MarbleRun's PascalCase
//!   (keys fold case-insensitively, ignoring `_` and `-`), and reports every ignored key as a
//!   [`Warning`].
//! * [`Manifest::validate`] collects every problem, each at its JSON path, and dry-runs every
//!   template.
//! * [`Template`] is the small Go-template subset for secrets in files and environment values;
//!   [`Workload::render`] fills a workload's parameters from [`Values`] the coordinator supplies.
//! * [`Package::appraise`] matches verified evidence claims against a package and lists every
//!   mismatch.
//!
//! No I/O happens here: callers hand in bytes and get values back.
#![forbid(unsafe_code)]

mod access;
mod appraise;
mod bounds;
mod error;
mod hex;
mod normalize;
mod render;
mod schema;
mod template;
mod validate;

pub use access::{Action, Resource, ResourceType};
pub use appraise::Mismatch;
pub use bounds::{MAX_DEPTH, MAX_MANIFEST_BYTES, MAX_VALUES};
pub use error::{ManifestError, ValidationError, ValidationErrors};
pub use hex::{Hex, Hex8, Hex16, Hex32, Hex48};
pub use render::RenderedParameters;
pub use schema::{
    CertTemplate, Config, Encoding, FileSpec, Kbs, KbsResource, Manifest, Package, PackageTee,
    Parameters, Role, SecretKind, SecretSpec, Subject, TlsIncoming, TlsOutgoing, TlsTag, User,
    Workload,
};
pub use template::{
    Encoder, Field, Reference, Reserved, SecretValue, Target, Template, TemplateError, Values,
};
pub use validate::is_kbs_path;

/// The document format a manifest was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

/// Something in the document that was accepted but ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// JSON path of the key, e.g. `$.packages.web.Foo`.
    pub path: String,
    /// What happened.
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// A parsed manifest and what parsing noticed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Parsed {
    /// The manifest, in canonical form.
    pub manifest: Manifest,
    /// Keys that were ignored.
    pub warnings: Vec<Warning>,
    /// The input format.
    pub format: Format,
}

impl Manifest {
    /// Parse a JSON or YAML manifest (detected from the first non-blank character), within
    /// [`MAX_MANIFEST_BYTES`], [`MAX_DEPTH`] and [`MAX_VALUES`] (checked before a tree is
    /// built).
    ///
    /// This checks the shape only; call [`Manifest::validate`] for the rules.
    pub fn parse(bytes: &[u8]) -> Result<Parsed, ManifestError> {
        let (doc, format) = read_document(bytes)?;
        if !doc.is_object() {
            return Err(ManifestError::NotAMapping {
                found: value_kind(&doc),
            });
        }
        let mut warnings = Vec::new();
        let doc = normalize::normalize_manifest(doc, &mut warnings);
        let manifest = serde_path_to_error::deserialize(doc).map_err(|e| {
            let path = json_path_of(e.path());
            ManifestError::Schema {
                path,
                source: e.into_inner(),
            }
        })?;
        Ok(Parsed {
            manifest,
            warnings,
            format,
        })
    }

    /// Parse any accepted input and write it back as canonical JSON (`cloister manifest convert`).
    pub fn convert(bytes: &[u8]) -> Result<String, ManifestError> {
        Self::parse(bytes)?.manifest.to_json()
    }

    /// The canonical (snake_case) JSON form, pretty-printed.
    pub fn to_json(&self) -> Result<String, ManifestError> {
        serde_json::to_string_pretty(self).map_err(|source| ManifestError::Serialize { source })
    }

    /// The canonical (snake_case) YAML form.
    pub fn to_yaml(&self) -> Result<String, ManifestError> {
        serde_yaml_ng::to_string(self).map_err(|source| ManifestError::SerializeYaml { source })
    }
}

fn read_document(bytes: &[u8]) -> Result<(serde_json::Value, Format), ManifestError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => Err(ManifestError::Empty),
        Some(b'{') => {
            bounds::check_json(bytes)?;
            serde_json::from_slice(bytes)
                .map(|v| (v, Format::Json))
                .map_err(|source| ManifestError::Json { source })
        }
        Some(_) => {
            bounds::check_yaml(bytes)?;
            let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_slice(bytes)
                .map_err(|source| ManifestError::Yaml { source })?;
            yaml_to_json(yaml).map(|v| (v, Format::Yaml))
        }
    }
}

/// YAML allows non-string keys and tags; JSON (and our schema) does not. Scalar keys become
/// their text, so `pcrs: {0: ...}` works; anything else is refused.
fn yaml_to_json(value: serde_yaml_ng::Value) -> Result<serde_json::Value, ManifestError> {
    use serde_json::Value as J;
    use serde_yaml_ng::Value as Y;
    Ok(match value {
        Y::Null => J::Null,
        Y::Bool(b) => J::Bool(b),
        Y::Number(n) => yaml_number(&n)?,
        Y::String(s) => J::String(s),
        Y::Sequence(items) => J::Array(
            items
                .into_iter()
                .map(yaml_to_json)
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                out.insert(yaml_key(k)?, yaml_to_json(v)?);
            }
            J::Object(out)
        }
        Y::Tagged(tagged) => yaml_to_json(tagged.value)?,
    })
}

fn yaml_number(n: &serde_yaml_ng::Number) -> Result<serde_json::Value, ManifestError> {
    if let Some(u) = n.as_u64() {
        Ok(u.into())
    } else if let Some(i) = n.as_i64() {
        Ok(i.into())
    } else {
        n.as_f64()
            .and_then(serde_json::Number::from_f64)
            .map(serde_json::Value::Number)
            .ok_or_else(|| ManifestError::YamlValue {
                reason: format!("number {n} has no JSON equivalent"),
            })
    }
}

fn yaml_key(key: serde_yaml_ng::Value) -> Result<String, ManifestError> {
    use serde_yaml_ng::Value as Y;
    match key {
        Y::String(s) => Ok(s),
        Y::Number(n) => Ok(n.to_string()),
        Y::Bool(b) => Ok(b.to_string()),
        Y::Null => Ok(String::new()),
        _ => Err(ManifestError::YamlValue {
            reason: "mapping keys must be scalars".to_owned(),
        }),
    }
}

fn value_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "a mapping",
    }
}

fn json_path_of(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = "$".to_owned();
    for segment in path.iter() {
        out = match segment {
            Segment::Seq { index } => format!("{out}[{index}]"),
            Segment::Map { key } | Segment::Enum { variant: key } => path_child(&out, key),
            Segment::Unknown => format!("{out}.?"),
        };
    }
    out
}

/// `parent.key`, or `parent["key"]` when the key is not a plain identifier (file paths).
pub(crate) fn path_child(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain {
        format!("{parent}.{key}")
    } else {
        format!("{parent}[{}]", serde_json::Value::String(key.to_owned()))
    }
}
