//! Where images live, as skopeo names them: `docker://REGISTRY/REPO[:TAG|@DIGEST]` (a
//! registry) and `oci:DIR[:TAG]` (an OCI image layout). No I/O.

use std::path::PathBuf;

use crate::Reference;

/// Why an image name does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NameError(pub String);

/// An image's location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageName {
    /// In a registry.
    Registry(Reference),
    /// In an OCI image layout directory, under a tag (or its only image).
    Layout {
        /// The layout's directory.
        dir: PathBuf,
        /// The `org.opencontainers.image.ref.name` of the image.
        tag: Option<String>,
    },
}

impl std::fmt::Display for ImageName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Registry(reference) => write!(f, "docker://{reference}"),
            Self::Layout { dir, tag: None } => write!(f, "oci:{}", dir.display()),
            Self::Layout { dir, tag: Some(t) } => write!(f, "oci:{}:{t}", dir.display()),
        }
    }
}

impl ImageName {
    /// Parse `docker://…` or `oci:DIR[:TAG]`.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        if let Some(rest) = text.strip_prefix("oci:")
            && !rest.starts_with("//")
        {
            let (dir, tag) = match rest.split_once(':') {
                Some((dir, tag)) => (dir, Some(tag.to_string())),
                None => (rest, None),
            };
            if dir.is_empty() || tag.as_deref() == Some("") {
                return Err(NameError(format!(
                    "{text:?}: an OCI layout is named oci:DIRECTORY[:TAG]"
                )));
            }
            return Ok(Self::Layout {
                dir: dir.into(),
                tag,
            });
        }
        if text.starts_with("docker://") {
            return Reference::parse(text)
                .map(Self::Registry)
                .map_err(|e| NameError(e.to_string()));
        }
        Err(NameError(format!(
            "{text:?}: name an image docker://REGISTRY/REPOSITORY[:TAG] or oci:DIRECTORY[:TAG]"
        )))
    }
}
