//! The template subset MarbleRun manifests use: `{{ encoder .Path }}` actions in text.
//!
//! This is a tiny hand-written parser for a fixed grammar, not Go's `text/template`: one action
//! is one encoder applied to one path (`{{ pem .Secrets.web.Cert }}`, also written
//! `{{ .Secrets.web.Cert | pem }}`), with Go's `{{- ` / ` -}}` whitespace trimming and `{{/* */}}`
//! comments. Everything else is text, copied byte for byte.

use std::fmt;

use base64::Engine as _;
use zeroize::Zeroizing;

use crate::schema::SecretKind;

/// Which part of a secret a path selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Field {
    /// The certificate (DER).
    Cert,
    /// The private key (PKCS#8 DER).
    Private,
    /// The public key (SPKI DER), or the key bytes of a symmetric/plain secret.
    Public,
}

impl Field {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "Cert" => Some(Self::Cert),
            "Private" => Some(Self::Private),
            "Public" => Some(Self::Public),
            _ => None,
        }
    }

    /// The template spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cert => "Cert",
            Self::Private => "Private",
            Self::Public => "Public",
        }
    }
}

/// Secrets the coordinator provides to every workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reserved {
    /// The root that workload certificates chain to (MarbleRun's Marble Root).
    RootCa,
    /// The workload's own certificate and key (MarbleRun: `MarbleCert`).
    WorkloadCert,
    /// The coordinator's root certificate.
    CoordinatorRoot,
    /// The coordinator's intermediate certificate.
    CoordinatorIntermediate,
}

impl Reserved {
    fn parse(namespace: &str, name: &str) -> Option<Self> {
        match (namespace, name) {
            (_, "RootCA") => Some(Self::RootCa),
            ("MarbleRun", "MarbleCert") | ("Cloister", "WorkloadCert") => Some(Self::WorkloadCert),
            (_, "CoordinatorRoot") => Some(Self::CoordinatorRoot),
            (_, "CoordinatorIntermediate") => Some(Self::CoordinatorIntermediate),
            _ => None,
        }
    }

    /// The cloister template spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RootCa => "RootCA",
            Self::WorkloadCert => "WorkloadCert",
            Self::CoordinatorRoot => "CoordinatorRoot",
            Self::CoordinatorIntermediate => "CoordinatorIntermediate",
        }
    }
}

/// What a template action refers to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reference {
    /// A manifest secret (`.Secrets.name[.Field]`, or `.Previous.Secrets...`).
    Secret {
        /// The secret's name in the manifest.
        name: String,
        /// The selected part; `None` means the whole secret (its public part).
        field: Option<Field>,
        /// The value from before the last root-secret rotation.
        previous: bool,
    },
    /// A coordinator-provided secret (`.Cloister.X.Field` or `.MarbleRun.X.Field`).
    Reserved {
        /// Which one.
        name: Reserved,
        /// The selected part.
        field: Field,
    },
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Secret {
                name,
                field,
                previous,
            } => {
                let prefix = if *previous { ".Previous" } else { "" };
                write!(f, "{prefix}.Secrets.{name}")?;
                match field {
                    Some(field) => write!(f, ".{}", field.as_str()),
                    None => Ok(()),
                }
            }
            Self::Reserved { name, field } => {
                write!(f, ".Cloister.{}.{}", name.as_str(), field.as_str())
            }
        }
    }
}

/// How an action writes the bytes it selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Encoder {
    /// PEM, labelled by the field (CERTIFICATE, PRIVATE KEY, PUBLIC KEY).
    Pem,
    /// Lowercase hex.
    Hex,
    /// The bytes themselves.
    Raw,
    /// Standard base64.
    Base64,
    /// The bytes as text (plain secrets only, no NUL).
    String,
}

impl Encoder {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "pem" => Some(Self::Pem),
            "hex" => Some(Self::Hex),
            "raw" => Some(Self::Raw),
            "base64" => Some(Self::Base64),
            "string" => Some(Self::String),
            _ => None,
        }
    }

    /// The template spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pem => "pem",
            Self::Hex => "hex",
            Self::Raw => "raw",
            Self::Base64 => "base64",
            Self::String => "string",
        }
    }

    fn allowed_in(self, target: Target) -> bool {
        // MarbleRun has no `string` for files; `raw` in env is ours, guarded by the NUL check.
        !(self == Self::String && target == Target::File)
    }
}

impl fmt::Display for Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a template's output goes (the allowed encoders differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Target {
    /// A file: any bytes.
    File,
    /// An environment variable: UTF-8 text without NUL.
    Env,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::File => "files",
            Self::Env => "env",
        })
    }
}

/// One secret's material, as the coordinator hands it to rendering.
#[derive(Clone)]
#[non_exhaustive]
pub struct SecretValue {
    /// The secret's kind (reserved secrets are certificates).
    pub kind: SecretKind,
    /// The certificate, DER (certificate secrets).
    pub cert_der: Option<Vec<u8>>,
    /// The private key, PKCS#8 DER (certificate secrets).
    pub private_pkcs8: Option<Zeroizing<Vec<u8>>>,
    /// SPKI DER for certificates; the key bytes for symmetric and plain secrets.
    pub public: Vec<u8>,
}

impl SecretValue {
    /// A certificate secret.
    pub fn certificate(
        kind: SecretKind,
        cert_der: Vec<u8>,
        private_pkcs8: Option<Zeroizing<Vec<u8>>>,
        spki_der: Vec<u8>,
    ) -> Self {
        Self {
            kind,
            cert_der: Some(cert_der),
            private_pkcs8,
            public: spki_der,
        }
    }

    /// A symmetric or plain secret: just bytes.
    pub fn bytes(kind: SecretKind, key: Vec<u8>) -> Self {
        Self {
            kind,
            cert_der: None,
            private_pkcs8: None,
            public: key,
        }
    }
}

impl fmt::Debug for SecretValue {
    // Never print key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretValue")
            .field("kind", &self.kind)
            .field("cert_der", &self.cert_der.as_ref().map(Vec::len))
            .field(
                "private_pkcs8",
                &self.private_pkcs8.as_ref().map(|_| "<redacted>"),
            )
            .field("public_len", &self.public.len())
            .finish()
    }
}

/// What the coordinator supplies at render time.
pub trait Values {
    /// A manifest secret's value (`previous`: from before the last root-secret rotation).
    fn secret(&self, name: &str, previous: bool) -> Option<SecretValue>;
    /// A reserved secret's value.
    fn reserved(&self, which: Reserved) -> Option<SecretValue>;
}

/// Why a template does not parse or render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// `{{` without a matching `}}`.
    #[error("byte {offset}: `{{{{` is never closed with `}}}}`")]
    Unclosed {
        /// Where the action starts.
        offset: usize,
    },
    /// The inside of an action is not UTF-8.
    #[error("byte {offset}: the action is not UTF-8 text")]
    NotUtf8 {
        /// Where the action starts.
        offset: usize,
    },
    /// The action is not `encoder .Path`.
    #[error("byte {offset}: `{{{{{action}}}}}` is not `{{{{ encoder .Path }}}}`")]
    Syntax {
        /// Where the action starts.
        offset: usize,
        /// The action's text.
        action: String,
    },
    /// The encoder is not one of pem, hex, raw, base64, string.
    #[error("byte {offset}: unknown function {name:?} (use pem, hex, raw, base64 or string)")]
    UnknownFunction {
        /// Where the action starts.
        offset: usize,
        /// The name used.
        name: String,
    },
    /// The path does not name a secret.
    #[error("byte {offset}: {path}: {reason}")]
    BadPath {
        /// Where the action starts.
        offset: usize,
        /// The path as written.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The encoder cannot be used for this target (`string` in files).
    #[error("`{encoder}` cannot be used in {target}")]
    NotAllowed {
        /// The encoder.
        encoder: Encoder,
        /// Files or env.
        target: Target,
    },
    /// The referenced secret does not exist.
    #[error("{reference} refers to a secret that is not in the manifest")]
    UnknownSecret {
        /// The reference.
        reference: Reference,
    },
    /// The coordinator did not provide a reserved secret.
    #[error("{reference} is not available")]
    MissingReserved {
        /// The reference.
        reference: Reference,
    },
    /// The secret has no such part (e.g. `.Cert` of a symmetric key).
    #[error("{reference}: a {kind} secret has no {field:?} part")]
    MissingField {
        /// The reference.
        reference: Reference,
        /// The secret's kind.
        kind: SecretKind,
        /// The missing part.
        field: Field,
    },
    /// `string` on a secret that is not `plain`.
    #[error(
        "`string` works only on plain secrets; {reference} is a {kind} secret (use hex or base64)"
    )]
    StringNeedsPlain {
        /// The reference.
        reference: Reference,
        /// The secret's kind.
        kind: SecretKind,
    },
    /// `pem` on a secret that is not a certificate.
    #[error(
        "`pem` works only on certificate secrets; {reference} is a {kind} secret (use hex or base64)"
    )]
    PemNeedsCertificate {
        /// The reference.
        reference: Reference,
        /// The secret's kind.
        kind: SecretKind,
    },
    /// `string` on a value containing NUL.
    #[error("{reference} contains a NUL byte and cannot be written as a string")]
    ContainsNul {
        /// The reference.
        reference: Reference,
    },
    /// An environment value is not UTF-8 or contains NUL.
    #[error("the value must be UTF-8 text without NUL bytes")]
    EnvNotText {
        /// The variable.
        name: String,
    },
    /// Rendering one parameter failed.
    #[error("{location}: {source}")]
    In {
        /// `file <path>` or `env <name>`.
        location: String,
        /// The cause.
        #[source]
        source: Box<TemplateError>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Action {
    encoder: Encoder,
    reference: Reference,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Text(Vec<u8>),
    Action(Action),
}

/// A parsed template, reusable for many renders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    segments: Vec<Segment>,
}

impl Template {
    /// Parse template text.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        Self::parse_bytes(text.as_bytes())
    }

    /// Parse a template whose text parts may be any bytes (file data decoded from base64).
    pub fn parse_bytes(bytes: &[u8]) -> Result<Template, TemplateError> {
        let mut segments = Vec::new();
        let mut text = Vec::new();
        let mut pos = 0;
        while let Some(open) = find(bytes, pos, b"{{") {
            text.extend_from_slice(&bytes[pos..open]);
            let delimited = delimit(bytes, open)?;
            if delimited.trim_before {
                trim_end(&mut text);
            }
            let inner = std::str::from_utf8(&bytes[delimited.inner.clone()])
                .map_err(|_| TemplateError::NotUtf8 { offset: open })?;
            if let Some(action) = parse_action(inner, open)? {
                if !text.is_empty() {
                    segments.push(Segment::Text(std::mem::take(&mut text)));
                }
                segments.push(Segment::Action(action));
            }
            pos = delimited.after;
            if delimited.trim_after {
                while bytes.get(pos).is_some_and(u8::is_ascii_whitespace) {
                    pos += 1;
                }
            }
        }
        text.extend_from_slice(&bytes[pos..]);
        if !text.is_empty() {
            segments.push(Segment::Text(text));
        }
        Ok(Template { segments })
    }

    /// Every secret the template refers to, in order.
    pub fn references(&self) -> impl Iterator<Item = &Reference> {
        self.actions().map(|a| &a.reference)
    }

    /// Check that every encoder may be used for `target` (`string` is for env only).
    pub fn check_target(&self, target: Target) -> Result<(), TemplateError> {
        match self.actions().find(|a| !a.encoder.allowed_in(target)) {
            Some(a) => Err(TemplateError::NotAllowed {
                encoder: a.encoder,
                target,
            }),
            None => Ok(()),
        }
    }

    /// Fill in every action from `values`.
    pub fn render(&self, values: &dyn Values) -> Result<Vec<u8>, TemplateError> {
        let mut out = Vec::new();
        for segment in &self.segments {
            match segment {
                Segment::Text(text) => out.extend_from_slice(text),
                Segment::Action(action) => {
                    let value = resolve(&action.reference, values)?;
                    let encoded = encode(action, &value)?;
                    out.extend_from_slice(&encoded);
                }
            }
        }
        Ok(out)
    }

    fn actions(&self) -> impl Iterator<Item = &Action> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Action(a) => Some(a),
            Segment::Text(_) => None,
        })
    }
}

struct Delimited {
    inner: std::ops::Range<usize>,
    after: usize,
    trim_before: bool,
    trim_after: bool,
}

/// Find the action starting at `open` and its trim markers (`{{- ` and ` -}}`, as in Go, need
/// the space so that `{{-3}}` stays distinguishable).
fn delimit(bytes: &[u8], open: usize) -> Result<Delimited, TemplateError> {
    let mut start = open + 2;
    let trim_before = bytes.get(start) == Some(&b'-')
        && bytes.get(start + 1).is_some_and(u8::is_ascii_whitespace);
    if trim_before {
        start += 1;
    }
    let close = find(bytes, start, b"}}").ok_or(TemplateError::Unclosed { offset: open })?;
    let trim_after =
        close >= start + 2 && bytes[close - 1] == b'-' && bytes[close - 2].is_ascii_whitespace();
    let end = if trim_after { close - 1 } else { close };
    Ok(Delimited {
        inner: start..end,
        after: close + 2,
        trim_before,
        trim_after,
    })
}

fn find(haystack: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

fn trim_end(text: &mut Vec<u8>) {
    while text.last().is_some_and(u8::is_ascii_whitespace) {
        text.pop();
    }
}

/// `encoder .Path` or `.Path | encoder`; `None` for a comment.
fn parse_action(inner: &str, offset: usize) -> Result<Option<Action>, TemplateError> {
    let trimmed = inner.trim();
    if trimmed.starts_with("/*") && trimmed.ends_with("*/") && trimmed.len() >= 4 {
        return Ok(None);
    }
    let tokens: Vec<&str> = trimmed.split_ascii_whitespace().collect();
    let (function, path) = match tokens.as_slice() {
        [function, path] => (*function, *path),
        [path, "|", function] => (*function, *path),
        _ => {
            return Err(TemplateError::Syntax {
                offset,
                action: inner.to_owned(),
            });
        }
    };
    let encoder = Encoder::parse(function).ok_or_else(|| TemplateError::UnknownFunction {
        offset,
        name: function.to_owned(),
    })?;
    let reference = parse_reference(path, offset)?;
    Ok(Some(Action { encoder, reference }))
}

fn parse_reference(path: &str, offset: usize) -> Result<Reference, TemplateError> {
    let bad = |reason| TemplateError::BadPath {
        offset,
        path: path.to_owned(),
        reason,
    };
    let rest = path
        .strip_prefix('.')
        .ok_or_else(|| bad("a path starts with `.`"))?;
    let parts: Vec<&str> = rest.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(bad("empty path component"));
    }
    match parts.as_slice() {
        ["Secrets", name, field @ ..] => {
            secret_reference(name, field, false).ok_or_else(|| bad(FIELD_HINT))
        }
        ["Previous", "Secrets", name, field @ ..] => {
            secret_reference(name, field, true).ok_or_else(|| bad(FIELD_HINT))
        }
        [namespace @ ("MarbleRun" | "Cloister"), which, field @ ..] => {
            reserved_reference(namespace, which, field).map_err(bad)
        }
        _ => Err(bad(
            "expected .Secrets.<name>, .Previous.Secrets.<name>, .Cloister.<reserved> or .MarbleRun.<reserved>",
        )),
    }
}

const FIELD_HINT: &str = "after the secret name only .Cert, .Private or .Public may follow";

fn secret_reference(name: &str, field: &[&str], previous: bool) -> Option<Reference> {
    let field = match field {
        [] => None,
        [one] => Some(Field::parse(one)?),
        _ => return None,
    };
    Some(Reference::Secret {
        name: name.to_owned(),
        field,
        previous,
    })
}

fn reserved_reference(
    namespace: &str,
    which: &str,
    field: &[&str],
) -> Result<Reference, &'static str> {
    let name = Reserved::parse(namespace, which).ok_or(
        "unknown reserved secret (RootCA, CoordinatorRoot, CoordinatorIntermediate, and MarbleCert under .MarbleRun or WorkloadCert under .Cloister)",
    )?;
    let field = match field {
        [one] => Field::parse(one).ok_or(FIELD_HINT)?,
        [] => return Err("a reserved secret needs .Cert, .Private or .Public"),
        _ => return Err(FIELD_HINT),
    };
    if field == Field::Private && name != Reserved::WorkloadCert {
        return Err("only the workload certificate's private key is handed out");
    }
    Ok(Reference::Reserved { name, field })
}

fn resolve(reference: &Reference, values: &dyn Values) -> Result<SecretValue, TemplateError> {
    let found = match reference {
        Reference::Secret { name, previous, .. } => values.secret(name, *previous),
        Reference::Reserved { name, .. } => values.reserved(*name),
    };
    found.ok_or_else(|| match reference {
        Reference::Secret { .. } => TemplateError::UnknownSecret {
            reference: reference.clone(),
        },
        Reference::Reserved { .. } => TemplateError::MissingReserved {
            reference: reference.clone(),
        },
    })
}

fn field_of(reference: &Reference) -> Option<Field> {
    match reference {
        Reference::Secret { field, .. } => *field,
        Reference::Reserved { field, .. } => Some(*field),
    }
}

/// The bytes a reference selects: the whole secret means its public part (MarbleRun).
fn select<'v>(reference: &Reference, value: &'v SecretValue) -> Result<&'v [u8], TemplateError> {
    let missing = |field| TemplateError::MissingField {
        reference: reference.clone(),
        kind: value.kind,
        field,
    };
    match field_of(reference) {
        Some(Field::Cert) => value
            .cert_der
            .as_deref()
            .ok_or_else(|| missing(Field::Cert)),
        Some(Field::Private) => value
            .private_pkcs8
            .as_ref()
            .map(|k| k.as_slice())
            .ok_or_else(|| missing(Field::Private)),
        Some(Field::Public) | None => Ok(&value.public),
    }
}

fn encode(action: &Action, value: &SecretValue) -> Result<Zeroizing<Vec<u8>>, TemplateError> {
    let reference = &action.reference;
    let bytes = select(reference, value)?;
    let out = match action.encoder {
        Encoder::Raw => bytes.to_vec(),
        Encoder::Hex => hex::encode(bytes).into_bytes(),
        Encoder::Base64 => base64::engine::general_purpose::STANDARD
            .encode(bytes)
            .into_bytes(),
        Encoder::String => {
            if value.kind != SecretKind::Plain {
                return Err(TemplateError::StringNeedsPlain {
                    reference: reference.clone(),
                    kind: value.kind,
                });
            }
            if bytes.contains(&0) {
                return Err(TemplateError::ContainsNul {
                    reference: reference.clone(),
                });
            }
            bytes.to_vec()
        }
        Encoder::Pem => {
            if !value.kind.is_certificate() {
                return Err(TemplateError::PemNeedsCertificate {
                    reference: reference.clone(),
                    kind: value.kind,
                });
            }
            pem(pem_label(field_of(reference)), bytes).into_bytes()
        }
    };
    Ok(Zeroizing::new(out))
}

fn pem_label(field: Option<Field>) -> &'static str {
    match field {
        Some(Field::Cert) => "CERTIFICATE",
        Some(Field::Private) => "PRIVATE KEY",
        Some(Field::Public) | None => "PUBLIC KEY",
    }
}

/// RFC 7468 text: base64 in 64-character lines, ending with a newline (as Go writes it).
fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
