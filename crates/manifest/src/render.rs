//! Rendering a workload's parameters, and the dry run that validation performs.

use std::collections::BTreeMap;

use zeroize::Zeroizing;

use crate::error::ValidationErrors;
use crate::path_child;
use crate::schema::{FileSpec, Manifest, SecretKind, Workload};
use crate::template::{Reserved, SecretValue, Target, Template, TemplateError, Values};

/// A workload's parameters with every template filled in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RenderedParameters {
    /// File path → content.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Environment variable → value (UTF-8, no NUL).
    pub env: BTreeMap<String, String>,
    /// Arguments, verbatim.
    pub argv: Vec<String>,
}

impl Workload {
    /// Fill in the workload's files and environment from `values`.
    pub fn render(&self, values: &dyn Values) -> Result<RenderedParameters, TemplateError> {
        let params = &self.parameters;
        let mut files = BTreeMap::new();
        for (path, spec) in &params.files {
            let content =
                render_file(spec, values).map_err(|e| within(format!("file {path}"), e))?;
            files.insert(path.clone(), content.to_vec());
        }
        let mut env = BTreeMap::new();
        for (name, spec) in &params.env {
            let value =
                render_env(name, spec, values).map_err(|e| within(format!("env {name}"), e))?;
            env.insert(name.clone(), value);
        }
        Ok(RenderedParameters {
            files,
            env,
            argv: params.argv.clone(),
        })
    }
}

fn within(location: String, source: TemplateError) -> TemplateError {
    TemplateError::In {
        location,
        source: Box::new(source),
    }
}

fn render_file(spec: &FileSpec, values: &dyn Values) -> Result<Zeroizing<Vec<u8>>, TemplateError> {
    render_spec(spec, Target::File, values)
}

fn render_env(name: &str, spec: &FileSpec, values: &dyn Values) -> Result<String, TemplateError> {
    let bytes = render_spec(spec, Target::Env, values)?;
    match std::str::from_utf8(&bytes) {
        Ok(text) if !text.contains('\0') => Ok(text.to_owned()),
        _ => Err(TemplateError::EnvNotText {
            name: name.to_owned(),
        }),
    }
}

fn render_spec(
    spec: &FileSpec,
    target: Target,
    values: &dyn Values,
) -> Result<Zeroizing<Vec<u8>>, TemplateError> {
    if spec.no_templates {
        return Ok(Zeroizing::new(spec.data.clone()));
    }
    let template = Template::parse_bytes(&spec.data)?;
    template.check_target(target)?;
    template.render(values).map(Zeroizing::new)
}

impl Manifest {
    /// `workload`'s transparent-TLS rules: its `tls` tags resolved, in tag order. Rules of tags
    /// the manifest lacks, and ports that do not parse, are left out (validation reports both).
    pub fn tls_rules(&self, workload: &Workload) -> api::TransparentTls {
        let mut rules = api::TransparentTls::default();
        for tag in workload.tls.iter().filter_map(|name| self.tls.get(name)) {
            rules
                .outgoing
                .extend(tag.outgoing.iter().filter_map(|rule| {
                    let mut out = api::TlsOutgoing::default();
                    out.addr = rule.addr.clone();
                    out.port = crate::validate::parse_port(&rule.port)?;
                    Some(out)
                }));
            rules
                .incoming
                .extend(tag.incoming.iter().filter_map(|rule| {
                    let mut out = api::TlsIncoming::default();
                    out.port = crate::validate::parse_port(&rule.port)?;
                    out.cert = rule.cert.clone();
                    out.disable_client_auth = rule.disable_client_auth;
                    Some(out)
                }));
        }
        rules
    }

    /// Render every templated file and env value with dummy secrets (bytes 0x41), so that a bad
    /// template is refused when the manifest is set, not when a workload activates.
    pub fn dry_run(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        self.dry_run_into(&mut errors);
        errors.into_result()
    }

    pub(crate) fn dry_run_into(&self, errors: &mut ValidationErrors) {
        let values = DummyValues { manifest: self };
        for (workload_name, workload) in &self.workloads {
            let base = format!("{}.parameters", path_child("$.workloads", workload_name));
            for (path, spec) in &workload.parameters.files {
                if let Err(e) = render_file(spec, &values) {
                    errors.push(path_child(&format!("{base}.files"), path), e.to_string());
                }
            }
            for (name, spec) in &workload.parameters.env {
                if let Err(e) = render_env(name, spec, &values) {
                    errors.push(path_child(&format!("{base}.env"), name), e.to_string());
                }
            }
        }
    }
}

/// Stand-in values shaped like the manifest's secrets.
struct DummyValues<'m> {
    manifest: &'m Manifest,
}

const DUMMY: u8 = 0x41;

impl Values for DummyValues<'_> {
    fn secret(&self, name: &str, _previous: bool) -> Option<SecretValue> {
        let spec = self.manifest.secrets.get(name)?;
        Some(if spec.kind.is_certificate() {
            dummy_certificate(spec.kind)
        } else {
            // Capped: a dry run needs the shape, not a gigabyte for an absurd size.
            let len = spec.size.map_or(16, |bits| (bits / 8).clamp(1, 4096)) as usize;
            SecretValue::bytes(spec.kind, vec![DUMMY; len])
        })
    }

    fn reserved(&self, _which: Reserved) -> Option<SecretValue> {
        Some(dummy_certificate(SecretKind::CertEcdsa))
    }
}

fn dummy_certificate(kind: SecretKind) -> SecretValue {
    SecretValue::certificate(
        kind,
        vec![DUMMY; 64],
        Some(Zeroizing::new(vec![DUMMY; 32])),
        vec![DUMMY; 32],
    )
}
