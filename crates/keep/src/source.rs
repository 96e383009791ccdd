//! Where a module came from, and whether the manifest allows it: a workload whose `wasm`
//! section pins an OCI reference runs only a module pulled from that reference.

use std::path::PathBuf;

use crate::KeepError;

/// The origin of a module.
#[derive(Debug, Clone)]
pub enum ModuleSource {
    /// A file (a `.wasm` or a `keep compile` artifact).
    File(PathBuf),
    /// An OCI artifact.
    Oci {
        /// The reference pulled.
        reference: image::Reference,
        /// The digest of the manifest it resolved to.
        manifest_digest: String,
    },
}

impl std::fmt::Display for ModuleSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Oci {
                reference,
                manifest_digest,
            } => write!(f, "oci://{reference} ({manifest_digest})"),
        }
    }
}

/// Refuse a module whose origin the workload's `wasm.reference` does not allow: same registry
/// and repository, the same tag when it names one, the same manifest when it names a digest.
pub fn check_source(
    workload: &str,
    spec: &api::WasmSpec,
    source: &ModuleSource,
) -> Result<(), KeepError> {
    if spec.reference.is_empty() {
        return Ok(());
    }
    let refuse = |why: String| {
        KeepError::SourceNotAllowed(format!(
            "workload {workload} must run a module pulled from oci://{}: {why}",
            spec.reference
        ))
    };
    let pinned = image::Reference::parse(&spec.reference).map_err(|e| refuse(e.to_string()))?;
    let ModuleSource::Oci {
        reference,
        manifest_digest,
    } = source
    else {
        return Err(refuse(format!("{source} is a file")));
    };
    if (&pinned.registry, &pinned.repository) != (&reference.registry, &reference.repository) {
        return Err(refuse(format!("this one came from oci://{reference}")));
    }
    if let Some(tag) = &pinned.tag
        && pinned.digest.is_none()
        && reference.tag.as_ref() != Some(tag)
    {
        return Err(refuse(format!("this one came from oci://{reference}")));
    }
    if let Some(digest) = &pinned.digest
        && digest != manifest_digest
    {
        return Err(refuse(format!("this one is manifest {manifest_digest}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oci(text: &str, digest: &str) -> ModuleSource {
        ModuleSource::Oci {
            reference: image::Reference::parse(text).unwrap(),
            manifest_digest: digest.to_string(),
        }
    }

    #[test]
    fn a_pinned_reference_admits_only_its_own_pulls() {
        let d1 = format!("sha256:{}", "1".repeat(64));
        let d2 = format!("sha256:{}", "2".repeat(64));
        let mut spec = api::WasmSpec::default();
        assert!(check_source("w", &spec, &ModuleSource::File("a.wasm".into())).is_ok());
        spec.reference = "registry.example/app:1.0".into();
        assert!(check_source("w", &spec, &oci("registry.example/app:1.0", &d1)).is_ok());
        assert!(check_source("w", &spec, &oci("registry.example/app:2.0", &d1)).is_err());
        assert!(check_source("w", &spec, &oci("elsewhere.example/app:1.0", &d1)).is_err());
        let file = check_source("w", &spec, &ModuleSource::File("a.wasm".into())).unwrap_err();
        assert!(file.to_string().contains("is a file"), "{file}");
        spec.reference = format!("registry.example/app@{d1}");
        assert!(check_source("w", &spec, &oci("registry.example/app:1.0", &d1)).is_ok());
        assert!(check_source("w", &spec, &oci("registry.example/app:1.0", &d2)).is_err());
    }
}
